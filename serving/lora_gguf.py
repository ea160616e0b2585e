"""PEFT LoRA adapter -> GGUF LoRA file, for llama.cpp; checked against the base GGUF it will be applied to.

llama.cpp applies a GGUF LoRA (``general.type = adapter``, ``adapter.type = lora``, ``adapter.lora.alpha``) to a
base model at load time. Each adapted weight ``W`` (ggml shape ``[n_in, n_out]``) gets ``W.lora_a`` (``[n_in, r]``)
and ``W.lora_b`` (``[r, n_out]``): numpy shapes ``(r, n_in)`` and ``(n_out, r)``, which are PEFT's ``lora_A`` and
``lora_B`` weights as they are. The scale is alpha / r, as in PEFT. The conversion runs once per adapter content
and is cached by digest.

An adapter trained by ``medcouncil finetune`` records its base model's digest in ``run.json``; serving it on
another model is refused. A PEFT adapter from elsewhere is checked by tensor names and shapes against the base.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

from medcouncil.serving.common.errors import ConfigError, ModelPathError
from medcouncil.serving.common.paths import cache_dir

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")
HF_TO_GGUF = {
    "q_proj": "attn_q",
    "k_proj": "attn_k",
    "v_proj": "attn_v",
    "o_proj": "attn_output",
    "gate_proj": "ffn_gate",
    "up_proj": "ffn_up",
    "down_proj": "ffn_down",
}
"""Decoder-layer linear names, transformers -> llama.cpp (``blk.N.<name>.weight``)."""
_LORA_KEY = re.compile(r"layers\.(\d+)\.(?:self_attn|mlp)\.(\w+)\.lora_([AB])(?:\.default)?\.weight$")


def _weights_file(adapter: Path) -> Path:
    for name in ADAPTER_WEIGHTS:
        if (adapter / name).is_file():
            return adapter / name
    raise ModelPathError(f"{adapter}: not a PEFT adapter folder (no {' or '.join(ADAPTER_WEIGHTS)})")


def adapter_digest(adapter: Path) -> str:
    """sha256 over the adapter's config and weights: the cache key of its GGUF."""
    from medcouncil.serving.model_file import sha256_file

    if not (adapter / ADAPTER_CONFIG).is_file():
        raise ModelPathError(f"{adapter}: not a PEFT adapter folder (no {ADAPTER_CONFIG})")
    digest = hashlib.sha256()
    for path in (adapter / ADAPTER_CONFIG, _weights_file(adapter)):
        digest.update(f"{path.name}:{sha256_file(path)}\n".encode())
    return digest.hexdigest()


def recorded_base_digest(adapter: Path) -> str | None:
    """The base model digest that ``medcouncil finetune`` wrote in the adapter's run card, if any."""
    card = adapter / "run.json"
    if not card.is_file():
        return None
    try:
        digest = json.loads(card.read_text(encoding="utf-8"))["base"]["digest"]
    except (ValueError, KeyError, TypeError, OSError):
        return None
    return str(digest)


def check_base(name: str, adapter: Path, served_digest: str) -> bool:
    """Refuse an adapter trained on another base; False when the adapter records no base (not checked).

    Raises:
        ConfigError: the adapter's run card names another base model digest.
    """
    recorded = recorded_base_digest(adapter)
    if recorded is None:
        return False
    if recorded != served_digest:
        raise ConfigError(
            f"LoRA adapter {name!r} ({adapter}) was trained on base {recorded[:16]}, not on the "
            f"served model {served_digest[:16]}: serve it with its own base (its run.json)"
        )
    return True


def _load_tensors(path: Path) -> dict[str, Any]:
    if path.suffix == ".safetensors":
        from safetensors.numpy import load_file

        return dict(load_file(str(path)))
    import torch

    return {k: v.float().numpy() for k, v in torch.load(path, map_location="cpu", weights_only=True).items()}


def _base_shapes(base_gguf: Path) -> tuple[str, dict[str, tuple[int, ...]]]:
    from gguf import GGUFReader

    reader = GGUFReader(str(base_gguf))
    field = reader.fields.get("general.architecture")
    arch = bytes(field.parts[field.data[0]]).decode() if field is not None else ""
    return arch, {t.name: tuple(int(x) for x in t.shape) for t in reader.tensors}


def convert(adapter: Path, base_gguf: Path, out: Path) -> Path:
    """Write ``out``: the adapter as a GGUF LoRA for ``base_gguf``.

    Raises:
        ModelPathError: not an adapter folder.
        ConfigError: an adapted layer llama.cpp cannot take, or shapes that do not fit the base.
    """
    import numpy as np
    from gguf import GGUFWriter

    if not (adapter / ADAPTER_CONFIG).is_file():
        raise ModelPathError(f"{adapter}: not a PEFT adapter folder (no {ADAPTER_CONFIG})")
    config = json.loads((adapter / ADAPTER_CONFIG).read_text(encoding="utf-8"))
    if config.get("use_dora") or config.get("use_rslora"):
        raise ConfigError(f"{adapter}: DoRA / rsLoRA adapters cannot be served by llama.cpp: use --engine vllm")
    alpha = float(config.get("lora_alpha") or config.get("r") or 1)
    arch, shapes = _base_shapes(base_gguf)
    tensors = _load_tensors(_weights_file(adapter))
    pairs: dict[str, dict[str, Any]] = {}
    for key, value in tensors.items():
        match = _LORA_KEY.search(key)
        if match is None or match.group(2) not in HF_TO_GGUF:
            raise ConfigError(
                f"{adapter}: tensor {key} is not a decoder linear layer llama.cpp can adapt ({', '.join(HF_TO_GGUF)})"
            )
        layer, module, part = match.groups()
        base_name = f"blk.{layer}.{HF_TO_GGUF[module]}.weight"
        pairs.setdefault(base_name, {})[part] = np.ascontiguousarray(value, dtype=np.float32)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    writer = GGUFWriter(str(partial), arch)
    writer.add_type("adapter")
    writer.add_string("adapter.type", "lora")
    writer.add_float32("adapter.lora.alpha", alpha)
    for base_name, parts in sorted(pairs.items()):
        if set(parts) != {"A", "B"}:
            raise ConfigError(f"{adapter}: {base_name} has lora_{''.join(parts)} only")
        a, b = parts["A"], parts["B"]
        n_in_out = shapes.get(base_name)
        if n_in_out is None:
            raise ConfigError(f"{adapter}: the base {base_gguf.name} has no tensor {base_name}: another model?")
        if (a.shape[1], b.shape[0]) != n_in_out[:2] or a.shape[0] != b.shape[1]:
            raise ConfigError(
                f"{adapter}: {base_name} shapes A{a.shape} B{b.shape} do not fit the base's "
                f"{list(n_in_out)}: the adapter was trained on another model"
            )
        writer.add_tensor(f"{base_name}.lora_a", a)
        writer.add_tensor(f"{base_name}.lora_b", b)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    os.replace(partial, out)
    return out


def gguf_lora(name: str, adapter: Path, base_gguf: Path, base_digest: str) -> Path:
    """The cached GGUF LoRA of ``adapter`` for ``base_gguf`` (converted on first use), after the base check."""
    adapter = adapter.expanduser()
    if not adapter.exists():
        raise ModelPathError(f"LoRA adapter {name!r} not found: {adapter}")
    if adapter.is_file() and adapter.suffix == ".gguf":
        return adapter  # already a GGUF LoRA
    check_base(name, adapter, base_digest)
    key = hashlib.sha256(f"{adapter_digest(adapter)}:{base_digest}".encode()).hexdigest()[:16]
    target = cache_dir() / "lora" / f"{adapter.resolve().name}-{key}.gguf"
    if target.is_file():
        return target
    return convert(adapter, base_gguf, target)

"""The model being tuned: resolving the base (HF folder, hub id, GGUF), its digest, PEFT wrapping, and the loss.

The loss runs the decoder over every position but sends only the positions that carry a label through the LM head.
Gemma 3's vocabulary has 262k entries, so the head dominates a small model's compute: on the 2-core reference
machine Gemma 3 270M with LoRA trains at ~55 tok/s with logits at every position and ~170 tok/s this way.
"""

from __future__ import annotations

import os
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from medcouncil.serving.common.errors import ConfigError, ModelPathError, first_line
from medcouncil.serving.health import hub_reachable
from medcouncil.serving.model_file import EMBEDDED_MODEL_NAME, embedded_gguf, folder_digest, sha256_file
from medcouncil.serving.training.config import FinetuneConfig
from medcouncil.serving.training.data import IGNORE


@dataclass(frozen=True)
class BaseModelInfo:
    """The base model as the run card records it; ``digest`` is what a served model is checked against."""

    name: str
    kind: str
    """``gguf`` (converted once to ``folder``), ``folder`` or ``hub``."""
    source: str
    folder: str
    """What transformers loads: a local folder or a hub id."""
    digest: str


def resolve_base(base: str | None) -> BaseModelInfo:
    """Where the base model is and its digest; a GGUF is dequantised once into an HF folder in the cache.

    Raises:
        ModelPathError: a local path that does not exist.
        ServerStartError: the GGUF conversion failed.
    """
    from medcouncil.serving.convert import converted_folder

    if base is None:
        gguf = embedded_gguf()
        folder = converted_folder(gguf, sys.executable)
        return BaseModelInfo(EMBEDDED_MODEL_NAME, "gguf", str(gguf), str(folder), sha256_file(gguf))
    path = Path(base).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise ModelPathError(f"base model not found: {base}")
        folder = converted_folder(path, sys.executable)
        return BaseModelInfo(path.stem, "gguf", str(path.resolve()), str(folder), sha256_file(path))
    if path.is_dir():
        return BaseModelInfo(
            path.resolve().name, "folder", str(path.resolve()), str(path.resolve()), folder_digest(path)
        )
    if base.startswith(("/", ".", "~")) or base.count("/") > 1:
        raise ModelPathError(f"base model not found: {base}")
    return BaseModelInfo(base.rsplit("/", 1)[-1], "hub", base, base, f"hub:{base}")


def _load_error(info: BaseModelInfo, error: Exception) -> ConfigError:
    return ConfigError(f"cannot load base model {info.source}: {first_line(error)}")


def load_tokenizer(info: BaseModelInfo) -> Any:
    """The base's tokenizer, with medcouncil's Gemma template when it carries none."""
    from transformers import AutoTokenizer

    from medcouncil.serving.config import GEMMA_TEMPLATE

    try:
        tokenizer = AutoTokenizer.from_pretrained(info.folder, local_files_only=not hub_reachable())
    except (OSError, ValueError, KeyError) as error:
        raise _load_error(info, error) from error
    if not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = GEMMA_TEMPLATE.read_text(encoding="utf-8")
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(info: BaseModelInfo, config: FinetuneConfig) -> nn.Module:
    """The base model, wrapped for the method: LoRA / QLoRA adapters, or every weight trainable (full).

    Raises:
        ConfigError: QLoRA without CUDA or bitsandbytes; a base that transformers cannot load; target modules
            that match no layer.
    """
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
    dtype = torch.bfloat16 if config.dtype == "bfloat16" else torch.float32
    kwargs: dict[str, Any] = {"dtype": dtype, "local_files_only": not hub_reachable()}
    if config.method == "qlora":
        if not torch.cuda.is_available():
            raise ConfigError(
                "--method qlora needs a CUDA GPU (bitsandbytes 4-bit); none is available here: use --method lora"
            )
        try:
            from transformers import BitsAndBytesConfig
        except ImportError as error:  # pragma: no cover - depends on the install
            raise ConfigError("--method qlora needs bitsandbytes: pip install bitsandbytes") from error
        kwargs["quantization_config"] = BitsAndBytesConfig(  # type: ignore[no-untyped-call]
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_compute_dtype=torch.bfloat16,
            bnb_4bit_use_double_quant=True,
        )
    try:
        model = AutoModelForCausalLM.from_pretrained(info.folder, **kwargs)
    except (OSError, ValueError, KeyError, RuntimeError, ImportError) as error:
        raise _load_error(info, error) from error
    if config.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})  # type: ignore[no-untyped-call]
        model.config.use_cache = False
    if config.method == "full":
        return model  # type: ignore[no-any-return]
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    if config.method == "qlora":
        model = prepare_model_for_kbit_training(  # type: ignore[no-untyped-call]
            model, use_gradient_checkpointing=config.gradient_checkpointing
        )
    names = {name.rsplit(".", 1)[-1] for name, module in model.named_modules() if isinstance(module, nn.Linear)}
    missing = [t for t in config.target_modules if t not in names]
    if missing:
        raise ConfigError(
            f"target modules {missing} match no linear layer of {info.name} (it has {', '.join(sorted(names))})"
        )
    lora = LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=list(config.target_modules),
        task_type="CAUSAL_LM",
        bias="none",
    )
    return get_peft_model(model, lora)  # type: ignore[no-any-return]


def set_threads(threads: int | None) -> None:
    torch.set_num_threads(threads or os.cpu_count() or 1)


class LabelledLoss(nn.Module):
    """Summed cross-entropy over labelled positions, computing logits only there.

    ``forward`` returns (loss sum, labelled token count), so gradient accumulation can average over every token
    of an optimizer step whatever the micro-batches hold.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        wrapped: Any = model
        core: Any = wrapped.get_base_model() if hasattr(wrapped, "get_base_model") else wrapped
        self.decoder: nn.Module = core.get_decoder()
        self.head: nn.Module = core.get_output_embeddings()
        self.softcap: float | None = getattr(core.config, "final_logit_softcapping", None)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = self.decoder(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).last_hidden_state
        targets = labels[:, 1:]
        keep = targets != IGNORE
        chosen = hidden[:, :-1][keep]
        logits = self.head(chosen).float()
        if self.softcap:
            logits = torch.tanh(logits / self.softcap) * self.softcap
        loss = nn.functional.cross_entropy(logits, targets[keep], reduction="sum")
        return loss, keep.sum()


def token_logps(
    model: nn.Module, ids: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor, temperature: float = 1.0
) -> torch.Tensor:
    """Log-probability of each labelled token ([rows, positions]; 0 where unlabelled) of a PEFT-wrapped model at
    ``temperature`` (GRPO's sampling temperature; 1 for DPO), logits at labels only; positions count from each
    row's first real token, as ``generate`` counts them under left padding."""
    wrapped: Any = model
    core: Any = wrapped.get_base_model()
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    hidden = core.get_decoder()(
        input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=False
    ).last_hidden_state
    targets = labels[:, 1:]
    keep = targets != IGNORE
    logits = core.get_output_embeddings()(hidden[:, :-1][keep]).float()
    if softcap := getattr(core.config, "final_logit_softcapping", None):
        logits = torch.tanh(logits / softcap) * softcap
    logits = logits / temperature
    picked = torch.log_softmax(logits, dim=-1).gather(1, targets[keep].unsqueeze(1)).squeeze(1)
    out = torch.zeros(targets.shape, dtype=picked.dtype, device=picked.device)
    out[keep] = picked
    return out


def full_logits_loss(
    model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The same loss through the model's own forward (logits at every position): the benchmark's reference."""
    logits = model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits[:, :-1].float()
    targets = labels[:, 1:]
    keep = targets != IGNORE
    loss = nn.functional.cross_entropy(logits[keep], targets[keep], reduction="sum")
    return loss, keep.sum()

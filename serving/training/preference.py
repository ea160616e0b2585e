"""Direct preference optimisation (Rafailov et al., 2023) in medcouncil's own training loop.

A :class:`PreferenceExample` is a prompt (chat messages) with a chosen and a rejected answer. Each is rendered as
``finetune`` renders a chat example (the loss on the answer's tokens only), and the loss of a pair is

    -log σ(β [(log π(chosen) − log π_ref(chosen)) − (log π(rejected) − log π_ref(rejected))])

with log π the summed log-probability of the answer's tokens. The reference π_ref is the same model with its LoRA
adapter switched off (PEFT's ``disable_adapter``), so no second copy of the weights is loaded; hence DPO needs a
LoRA method. The loop, its checkpoints, Ctrl-C and ``--resume`` are :class:`train.Trainer`'s: only the unit of
data (a pair), its batches, the loss and the held-out loss differ. Our loop rather than TRL's ``DPOTrainer``: TRL
brings the Hugging Face Trainer's own loop, checkpoints and resume semantics, and the adapters must keep the run
card, data fingerprint and resume guarantees every other adapter of this project has.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator
from torch import nn

from medcouncil.serving.common.errors import ConfigError
from medcouncil.serving.common.jsonl import BadLine, first_object, iter_jsonl
from medcouncil.serving.training.data import ChatExample, Message, Tokenized, first_error, split_eval, tokenize
from medcouncil.serving.training.model import token_logps
from medcouncil.serving.training.train import Batch, Trainer, collate

DEFAULT_BETA = 0.1
"""DPO's β: how far the policy may move from the reference (the paper's default)."""


class PreferenceExample(BaseModel):
    """A prompt and two answers to it, the chosen one preferred."""

    model_config = ConfigDict(frozen=True)

    prompt: tuple[Message, ...]
    chosen: str
    rejected: str
    source: str = ""
    question: str = ""
    """The text checked against the evaluation sets (empty: the prompt's last user turn)."""

    @model_validator(mode="after")
    def _two_answers(self) -> PreferenceExample:
        if not self.prompt or self.prompt[-1].role != "user":
            raise ValueError("prompt: must end with a user turn")
        if not self.chosen.strip() or not self.rejected.strip():
            raise ValueError("chosen, rejected: both answers are needed")
        if self.chosen.strip() == self.rejected.strip():
            raise ValueError("chosen and rejected are the same answer: nothing to prefer")
        return self

    def examples(self) -> tuple[ChatExample, ChatExample]:
        """The chosen and the rejected conversation."""
        return (
            ChatExample(messages=(*self.prompt, Message(role="assistant", content=self.chosen)), source=self.source),
            ChatExample(messages=(*self.prompt, Message(role="assistant", content=self.rejected)), source=self.source),
        )


def record_to_preference(record: Any, where: str) -> PreferenceExample:
    """``{"prompt": text or messages, "chosen": text, "rejected": text}`` (TRL's field names)."""
    if not isinstance(record, dict):
        raise ValueError(f"expected an object, got {type(record).__name__}")
    prompt = record["prompt"]
    messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
    return PreferenceExample.model_validate(
        {"prompt": messages, "chosen": record["chosen"], "rejected": record["rejected"], "source": where}
    )


def is_preference_jsonl(path: Path) -> bool:
    """Whether the file's first object has ``chosen`` and ``rejected``."""
    record = first_object(path)
    return record is not None and "chosen" in record and "rejected" in record


def read_preferences(path: Path) -> list[PreferenceExample]:
    """Raises: ConfigError: unreadable file, or a bad line (``FILE:LINE: reason``)."""
    pairs: list[PreferenceExample] = []
    try:
        lines = list(iter_jsonl(path))
    except OSError as error:
        raise ConfigError(f"{path}: cannot read preference pairs ({error.strerror or error})") from error
    for number, record in lines:
        where = f"{path}:{number}"
        if isinstance(record, BadLine):
            raise ConfigError(str(record))
        try:
            pairs.append(record_to_preference(record, where))
        except ValidationError as error:
            raise ConfigError(f"{where}: {first_error(error)}") from None
        except (KeyError, ValueError, TypeError) as error:
            reason = f"missing field {error}" if isinstance(error, KeyError) else str(error)
            raise ConfigError(f"{where}: {reason}") from None
    if not pairs:
        raise ConfigError(f"{path}: no preference pairs")
    return pairs


def preference_fingerprint(pairs: Sequence[PreferenceExample]) -> str:
    digest = hashlib.sha256()
    for pair in pairs:
        record = [[m.model_dump() for m in pair.prompt], pair.chosen, pair.rejected]
        digest.update(json.dumps(record, ensure_ascii=False).encode() + b"\n")
    return digest.hexdigest()


def collate_pairs(pairs: Sequence[tuple[Tokenized, Tokenized]], pad_id: int) -> Batch:
    """Every chosen sequence, then every rejected one, padded together."""
    rows = collate([p[0] for p in pairs] + [p[1] for p in pairs], pad_id)
    return Batch(rows.input_ids, rows.attention_mask, rows.labels, count=len(pairs))


class PreferenceLoss(nn.Module):
    """DPO's summed loss over a batch's pairs; ``forward`` returns (loss sum, pairs) like ``LabelledLoss``."""

    def __init__(self, model: nn.Module, beta: float = DEFAULT_BETA) -> None:
        super().__init__()
        if not hasattr(model, "disable_adapter"):
            raise ConfigError("DPO needs a LoRA adapter: its reference is the base with the adapter switched off")
        self.model, self.beta = model, beta

    def sequence_logps(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor
    ) -> torch.Tensor:
        """Each row's summed log-probability of its labelled tokens (logits computed at those positions only)."""
        return token_logps(self.model, input_ids, attention_mask, labels).sum(dim=1)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        pairs = input_ids.shape[0] // 2
        policy = self.sequence_logps(input_ids, attention_mask, labels)
        with torch.no_grad(), self.model.disable_adapter():  # type: ignore[operator]
            reference = self.sequence_logps(input_ids, attention_mask, labels)
        margin = (policy[:pairs] - reference[:pairs]) - (policy[pairs:] - reference[pairs:])
        loss = -nn.functional.logsigmoid(self.beta * margin).sum()
        return loss, torch.tensor(pairs)


class PreferenceTrainer(Trainer):
    """``finetune --method dpo``: the training loop on preference pairs."""

    def _tokenized(self, tokenizer: Any) -> list[Any]:
        limit = self.config.max_seq_len
        return [tuple(tokenize(tokenizer, e, limit) for e in pair.examples()) for pair in self.examples]

    def _flat(self, units: Sequence[Any]) -> list[Tokenized]:
        return [sequence for pair in units for sequence in pair]

    def _collate(self, units: Sequence[Any], pad_id: int) -> Batch:
        return collate_pairs(units, pad_id)

    def _loss(self, model: nn.Module) -> nn.Module:
        return PreferenceLoss(model, self.config.beta)

    def _fingerprint(self) -> str:
        return preference_fingerprint(self.examples)

    def _split(self) -> tuple[list[int], list[int]]:
        """Held out by prompt, not by pair: an arena run gives several pairs per question, and a question on both
        sides would make the held-out loss a training loss."""
        prompts = list(dict.fromkeys(pair.prompt for pair in self.examples))
        _, held = split_eval(prompts, self.config.eval_fraction, self.config.seed)
        held_prompts = {prompts[i] for i in held}
        train = [n for n, pair in enumerate(self.examples) if pair.prompt not in held_prompts]
        return train, [n for n, pair in enumerate(self.examples) if pair.prompt in held_prompts]

    def _eval_loss(self, loss_fn: Any, items: Sequence[Any], pad_id: int, device: Any) -> float:
        """Mean DPO loss per held-out pair."""
        total, count = 0.0, 0
        loss_fn.eval()
        with torch.no_grad():
            for start in range(0, len(items), self.config.batch_size):
                batch = collate_pairs(items[start : start + self.config.batch_size], pad_id)
                loss, n = loss_fn(batch.input_ids.to(device), batch.attention_mask.to(device), batch.labels.to(device))
                total, count = total + float(loss), count + int(n)
        loss_fn.train()
        return total / max(count, 1)

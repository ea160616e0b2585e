"""A model's quality while it trains, in process: held-out loss, and multiple-choice accuracy from the complete
probabilities of each option's answer.

The probe renders each question with the chat template (the engine's own rendering), appends each candidate
answer (an option's letter, as the constrained choice at run time reads it) and scores the candidate's tokens;
the candidates' probabilities are normalised over the item's options, so every option gets a probability and the
answer is the most probable one. Nothing is sampled: the same weights give the same accuracy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field

from medcouncil.serving.training.data import ChatExample, Message, Tokenized, tokenize


class ProbeItem(BaseModel):
    """One multiple-choice question as the single model sees it, its candidate answers and the gold one."""

    model_config = ConfigDict(frozen=True)

    id: str
    messages: tuple[Message, ...]
    """The conversation up to the answer (the user turn: the single-model question)."""
    candidates: tuple[str, ...] = Field(min_length=2)
    """What the model would write first for each option (its letter)."""
    gold: int = Field(ge=0)


class ProbeResult(BaseModel):
    items: int
    correct: int
    accuracy: float
    mean_gold_probability: float


def held_out_loss(loss_fn: Any, items: Sequence[Tokenized], pad_id: int, batch_size: int, device: Any) -> float:
    """Mean loss per labelled token over ``items`` (``loss_fn``: :class:`model.LabelledLoss`), in eval mode; the
    loss function is left in training mode."""
    from medcouncil.serving.training.train import collate

    total, count = 0.0, 0
    loss_fn.eval()
    with torch.no_grad():
        for start in range(0, len(items), batch_size):
            batch = collate(items[start : start + batch_size], pad_id)
            loss, n = loss_fn(batch.input_ids.to(device), batch.attention_mask.to(device), batch.labels.to(device))
            total, count = total + float(loss), count + int(n)
    loss_fn.train()
    return total / max(count, 1)


def tokenize_all(tokenizer: Any, examples: Sequence[ChatExample], max_len: int) -> list[Tokenized]:
    return [tokenize(tokenizer, example, max_len) for example in examples]


def _logprobs(model: Any, ids: list[int], device: Any) -> torch.Tensor:
    """Log-probabilities of the next token at every position of ``ids``."""
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids], device=device), use_cache=False).logits[0].float()
    softcap = getattr(getattr(model, "config", None), "final_logit_softcapping", None)
    if softcap:
        logits = torch.tanh(logits / softcap) * softcap
    return torch.log_softmax(logits, dim=-1)


def candidate_scores(model: Any, prompt_ids: list[int], candidates: Sequence[list[int]], device: Any) -> list[float]:
    """Each candidate's summed log-probability after the prompt: one forward pass when every candidate is one token
    (option letters), one per candidate otherwise."""
    if all(len(tokens) == 1 for tokens in candidates):
        last = _logprobs(model, prompt_ids, device)[-1]
        return [float(last[tokens[0]]) for tokens in candidates]
    scores = []
    for tokens in candidates:
        logprobs = _logprobs(model, prompt_ids + tokens, device)
        start = len(prompt_ids)
        scores.append(float(sum(logprobs[start - 1 + k, token] for k, token in enumerate(tokens))))
    return scores


def probe_accuracy(model: Any, tokenizer: Any, items: Sequence[ProbeItem], max_len: int, device: Any) -> ProbeResult:
    """Accuracy of the most probable candidate, and the mean normalised probability of the gold one."""
    correct, gold_probability = 0, 0.0
    was_training = model.training
    model.eval()
    for item in items:
        prompt = tokenizer.apply_chat_template(
            [m.model_dump() for m in item.messages], tokenize=False, add_generation_prompt=True
        )
        prompt_ids = list(tokenizer(str(prompt), add_special_tokens=False)["input_ids"])[-max_len:]
        candidates = [list(tokenizer(c, add_special_tokens=False)["input_ids"]) for c in item.candidates]
        scores = candidate_scores(model, prompt_ids, candidates, device)
        top = max(scores)
        weights = [math.exp(score - top) for score in scores]
        correct += int(scores.index(top) == item.gold)
        gold_probability += weights[item.gold] / sum(weights)
    model.train(was_training)
    n = len(items)
    return ProbeResult(
        items=n,
        correct=correct,
        accuracy=correct / n if n else 0.0,
        mean_gold_probability=gold_probability / n if n else 0.0,
    )

"""Group relative policy optimisation (Shao et al., 2024) with verifiable rewards, in medcouncil's own loop.

Each optimizer step takes a batch of prompts; for each prompt the policy samples a group of ``group_size``
completions, a reward function scores them (on MCQA: the gold letter in the final answer line, plus a reward for
the role's shape: ``scenarios/training/rewards.py``), and each completion's advantage is its reward standardised
within its group. The loss of a completion o of a prompt, averaged over its tokens t, is

    −A · π(o_t) / sg[π(o_t)] + kl_weight · (π_ref(o_t)/π(o_t) − log(π_ref(o_t)/π(o_t)) − 1)

(one policy update per group, so the ratio is 1 and its gradient is A ∇log π; the KL term is the k3 estimator).
The reference is the model with its LoRA adapter off, as for DPO. Sampling draws from torch's RNG, which the
checkpoint restores: a resumed run samples what the uninterrupted one would have.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict
from torch import nn

from medcouncil.serving.common.errors import ConfigError
from medcouncil.serving.training.data import IGNORE, ChatExample, Message, Tokenized, tokenize
from medcouncil.serving.training.model import token_logps
from medcouncil.serving.training.train import Batch, Trainer

EVAL_PROMPTS = 16
"""Held-out prompts the eval samples (a group each): the eval must not cost more than the training it checks."""


class RewardExample(BaseModel):
    """A prompt whose completions can be scored: a multiple-choice item's gold letter and options."""

    model_config = ConfigDict(frozen=True)

    prompt: tuple[Message, ...]
    answer: str
    options: dict[str, str]
    source: str = ""


Reward = Callable[[str, RewardExample], float]
"""A completion's text and its example → its reward."""


def prompt_ids(tokenizer: Any, example: RewardExample, max_len: int) -> list[int]:
    """The prompt rendered with an open assistant turn (what generation continues), cut from the left."""
    probe = ChatExample(messages=(*example.prompt, Message(role="assistant", content="x")))
    tokenized = tokenize(tokenizer, probe, max_len + 8)
    start = next(i for i, label in enumerate(tokenized.labels) if label != IGNORE)
    return tokenized.input_ids[:start][-max_len:]


class GroupLoss(nn.Module):
    """GRPO's summed loss over a batch's completions; ``forward`` returns (loss sum, completions).

    The batch's rows are the prompts (left-padded, ``input_ids``/``attention_mask``) and ``labels[:, 0]`` the
    example's index, by which the reward function finds its example."""

    def __init__(
        self,
        model: nn.Module,
        examples: Sequence[RewardExample],
        reward: Reward,
        tokenizer: Any,
        group_size: int,
        kl_weight: float,
        max_new_tokens: int,
        temperature: float,
    ) -> None:
        super().__init__()
        if not hasattr(model, "disable_adapter"):
            raise ConfigError("GRPO needs a LoRA adapter: its reference is the base with the adapter switched off")
        self.model, self.examples, self.reward, self.tokenizer = model, examples, reward, tokenizer
        self.group_size, self.kl_weight = group_size, kl_weight
        self.max_new_tokens, self.temperature = max_new_tokens, temperature
        self.generated = 0
        """Completion tokens sampled so far (the generation throughput of a run)."""
        self.rewards: list[float] = []
        """Every completion's reward so far, in order."""

    def _stops(self) -> list[int]:
        tokenizer = self.tokenizer
        stops = {int(tokenizer.eos_token_id)}
        turn_end = tokenizer.convert_tokens_to_ids("<end_of_turn>")
        if isinstance(turn_end, int) and turn_end != tokenizer.unk_token_id:
            stops.add(turn_end)
        return sorted(stops)

    def rollout(
        self, ids: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor, record: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor, list[float]]:
        """``group_size`` completions per prompt (adapter on, dropout off), which tokens of them count (up to and
        with the first stop token), and their rewards."""
        wrapped: Any = self.model
        training = wrapped.training
        wrapped.eval()
        stops = self._stops()
        with torch.no_grad():
            out = wrapped.generate(
                input_ids=ids.repeat_interleave(self.group_size, 0),
                attention_mask=mask.repeat_interleave(self.group_size, 0),
                do_sample=True,
                temperature=self.temperature,
                top_k=0,
                top_p=1.0,
                max_new_tokens=self.max_new_tokens,
                eos_token_id=stops,
                pad_token_id=self.tokenizer.pad_token_id,
            )
        wrapped.train(training)
        completions = torch.as_tensor(out[:, ids.shape[1] :])
        keep = torch.ones_like(completions, dtype=torch.bool)
        rewards = []
        for row in range(completions.shape[0]):
            tokens = completions[row].tolist()
            end = next((i + 1 for i, t in enumerate(tokens) if t in stops), len(tokens))
            keep[row, end:] = False
            text = self.tokenizer.decode(tokens[:end], skip_special_tokens=True)
            rewards.append(float(self.reward(text, self.examples[int(labels[row // self.group_size, 0])])))
        if record:
            self.generated += int(keep.sum())
            self.rewards += rewards
        return completions, keep, rewards

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        completions, keep, rewards = self.rollout(input_ids, attention_mask, labels)
        pad = int(self.tokenizer.pad_token_id)
        scores = torch.tensor(rewards).view(-1, self.group_size)
        advantages = ((scores - scores.mean(1, keepdim=True)) / (scores.std(1, keepdim=True) + 1e-4)).view(-1)
        prompts = input_ids.repeat_interleave(self.group_size, 0)
        ids = torch.cat([prompts, torch.where(keep, completions, torch.full_like(completions, pad))], dim=1)
        mask = torch.cat([attention_mask.repeat_interleave(self.group_size, 0), keep.long()], dim=1)
        targets = torch.full_like(ids, IGNORE)
        targets[:, prompts.shape[1] :] = torch.where(keep, completions, torch.full_like(completions, IGNORE))
        policy = token_logps(self.model, ids, mask, targets, self.temperature)
        with torch.no_grad(), self.model.disable_adapter():  # type: ignore[operator]
            reference = token_logps(self.model, ids, mask, targets, self.temperature)
        counted = (targets[:, 1:] != IGNORE).float()
        delta = reference - policy
        per_token = -advantages.unsqueeze(1) * torch.exp(policy - policy.detach()) + self.kl_weight * (
            torch.exp(delta) - delta - 1
        )
        per_sequence = (per_token * counted).sum(1) / counted.sum(1).clamp(min=1)
        return per_sequence.sum(), torch.tensor(completions.shape[0])


def collate_prompts(items: Sequence[tuple[int, list[int]]], pad_id: int, group_size: int = 1) -> Batch:
    """Left-padded prompts (generation continues at the right edge); ``labels[:, 0]``: each example's index; the
    batch counts ``group_size`` completions per prompt."""
    width = max(len(ids) for _, ids in items)
    ids = torch.full((len(items), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(items), width), dtype=torch.long)
    labels = torch.full((len(items), 1), IGNORE, dtype=torch.long)
    for row, (index, prompt) in enumerate(items):
        ids[row, width - len(prompt) :] = torch.tensor(prompt)
        mask[row, width - len(prompt) :] = 1
        labels[row, 0] = index
    return Batch(ids, mask, labels, count=len(items) * group_size)


class GroupTrainer(Trainer):
    """``finetune --method grpo``: the training loop on prompts with a reward."""

    def __init__(self, *args: Any, reward: Reward, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.reward = reward
        self.tokenizer: Any = None
        self.loss: GroupLoss | None = None

    def _tokenized(self, tokenizer: Any) -> list[Any]:
        self.tokenizer = tokenizer
        limit = self.config.max_seq_len
        return [(n, prompt_ids(tokenizer, e, limit)) for n, e in enumerate(self.examples)]

    def _flat(self, units: Sequence[Any]) -> list[Tokenized]:
        return [Tokenized(ids, [IGNORE] * len(ids), False) for _, ids in units]

    def _collate(self, units: Sequence[Any], pad_id: int) -> Batch:
        return collate_prompts(units, pad_id, self.config.group_size)

    def _loss(self, model: nn.Module) -> nn.Module:
        config = self.config
        self.loss = GroupLoss(
            model, self.examples, self.reward, self.tokenizer, config.group_size, config.kl_weight,
            config.max_new_tokens, config.temperature,
        )  # fmt: skip
        return self.loss

    def _fingerprint(self) -> str:
        import hashlib

        digest = hashlib.sha256()
        for example in self.examples:
            digest.update(example.model_dump_json().encode() + b"\n")
        return digest.hexdigest()

    def _eval_loss(self, loss_fn: Any, items: Sequence[Any], pad_id: int, device: Any) -> float:
        """1 − the mean reward of completions sampled on (at most :data:`EVAL_PROMPTS` of) the held-out prompts,
        on a random stream of their own: the eval never changes what training samples."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.config.seed)
            rewards = self._held_out_rewards(items[:EVAL_PROMPTS], pad_id, device)
        return 1.0 - sum(rewards) / max(len(rewards), 1)

    def _held_out_rewards(self, items: Sequence[Any], pad_id: int, device: Any) -> list[float]:
        assert self.loss is not None
        rewards: list[float] = []
        for start in range(0, len(items), self.config.batch_size):
            batch = collate_prompts(items[start : start + self.config.batch_size], pad_id)
            rewards += self.loss.rollout(
                batch.input_ids.to(device), batch.attention_mask.to(device), batch.labels, False
            )[2]
        return rewards

"""A client's share of a round: the global adapter in, ``local_steps`` optimizer steps on the client's own data,
the trained adapter out.

It is ``finetune``'s training (the same model loading, chat rendering, labelled-only loss and token-averaged
gradient accumulation), restarted each round from the global tensors with a fresh AdamW at the round's learning
rate. The data order is the client's seeded epoch order continued across rounds, so round r trains on the
micro-batches an uninterrupted local run would have seen at those steps. FedProx adds ``μ/2‖w − w_global‖²``.
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from medcouncil.serving.training import checkpoint
from medcouncil.serving.training.aggregate import proximal_term
from medcouncil.serving.training.config import FinetuneConfig
from medcouncil.serving.training.data import ChatExample, fingerprint, tokenize
from medcouncil.serving.training.model import BaseModelInfo, LabelledLoss, load_model, load_tokenizer, set_threads
from medcouncil.serving.training.train import collate, micro_batches


@dataclass(frozen=True)
class LocalResult:
    """What a client sends back: its adapter, its FedAvg weight and what the round cost it."""

    tensors: dict[str, torch.Tensor]
    examples: int
    """Training examples the client holds (FedAvg's weight)."""
    loss: float
    """Mean loss per labelled token over the round's steps."""
    first_loss: float
    steps: int
    tokens: int
    seconds: float


class LocalTrainer:
    """One client's model and data, kept between rounds where the engine keeps the process (simulation)."""

    def __init__(self, config: FinetuneConfig, base: BaseModelInfo, examples: Sequence[ChatExample]) -> None:
        set_threads(config.threads)
        torch.manual_seed(config.seed)
        self.config, self.base = config, base
        self.tokenizer = load_tokenizer(base)
        self.pad_id = int(self.tokenizer.pad_token_id)
        self.tokenized = [tokenize(self.tokenizer, example, config.max_seq_len) for example in examples]
        self.model = load_model(base, config)
        self.loss_fn = LabelledLoss(self.model)
        self.examples = len(examples)
        self.fingerprint = fingerprint(examples)

    def trainable(self) -> dict[str, torch.Tensor]:
        return checkpoint.trainable_state(self.model)

    def run_round(
        self, global_tensors: Mapping[str, torch.Tensor], server_round: int, steps: int, lr: float, mu: float
    ) -> LocalResult:
        """Train ``steps`` optimizer steps from ``global_tensors``; ``server_round`` (1-based) places them in the
        client's data order."""
        config = self.config
        checkpoint.apply(self.model, {"model": dict(global_tensors)})
        anchor = {name: tensor.detach().clone() for name, tensor in global_tensors.items()}
        params = {name: p for name, p in self.model.named_parameters() if p.requires_grad}
        optimizer = torch.optim.AdamW(list(params.values()), lr=lr, weight_decay=config.weight_decay)
        torch.manual_seed(config.seed * 7919 + server_round)
        random.seed(config.seed * 7919 + server_round)
        per_step = config.accumulation(1)
        done = (server_round - 1) * steps * per_step
        plan = micro_batches(range(len(self.tokenized)), config, done + steps * per_step)[done:]
        self.loss_fn.train()
        losses: list[float] = []
        tokens, started = 0, time.monotonic()
        for step in range(steps):
            batches = [
                collate([self.tokenized[i] for i in ids], self.pad_id) for ids in plan[step * per_step :][:per_step]
            ]
            labelled = max(1, sum(batch.labelled for batch in batches))
            step_loss = 0.0
            for batch in batches:
                loss_sum, _ = self.loss_fn(batch.input_ids, batch.attention_mask, batch.labels)
                (loss_sum / labelled).backward()
                step_loss += float(loss_sum.detach()) / labelled
                tokens += batch.tokens
            if mu > 0:
                proximal_term(params, anchor, mu).backward()  # type: ignore[no-untyped-call]
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(step_loss)
        return LocalResult(
            tensors=self.trainable(),
            examples=self.examples,
            loss=sum(losses) / len(losses),
            first_loss=losses[0],
            steps=steps,
            tokens=tokens,
            seconds=time.monotonic() - started,
        )

"""Federated aggregation of adapter tensors: what a server does with the clients' LoRA weights, and what it costs.

Only the trainable tensors travel (a LoRA adapter: a few MB against the whole model's hundreds); the server's
FedAvg is the example-weighted mean of each tensor (McMahan et al., 2017), and FedProx adds to each client's loss
the proximal term ``μ/2 · ‖w − w_global‖²`` over those same tensors (Li et al., 2020), which keeps a client on
skewed data from drifting far from the global adapter.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from medcouncil.serving.common.errors import MedcouncilError


class AggregationError(MedcouncilError):
    """Client updates that cannot be averaged (no update, no examples, tensors that do not match)."""


@dataclass(frozen=True)
class ClientUpdate:
    """One client's trained tensors after a round, and how many examples it trained on (its FedAvg weight)."""

    client: str
    tensors: Mapping[str, torch.Tensor]
    examples: int


def fedavg(updates: Sequence[ClientUpdate]) -> dict[str, torch.Tensor]:
    """The example-weighted mean of every tensor: Σ nₖ·wₖ / Σ nₖ, computed in float64 and returned in each
    tensor's own dtype.

    Raises:
        AggregationError: no update, a client with no example, or a client whose tensor names or shapes differ
            from the first client's (named).
    """
    if not updates:
        raise AggregationError("FedAvg: no client update to aggregate")
    for update in updates:
        if update.examples <= 0:
            raise AggregationError(f"FedAvg: client {update.client} trained on {update.examples} examples")
    first = updates[0]
    for update in updates[1:]:
        if set(update.tensors) != set(first.tensors):
            odd = sorted(set(update.tensors) ^ set(first.tensors))[:3]
            raise AggregationError(
                f"FedAvg: client {update.client}'s tensors differ from client {first.client}'s ({', '.join(odd)})"
            )
        for name, tensor in update.tensors.items():
            if tensor.shape != first.tensors[name].shape:
                raise AggregationError(
                    f"FedAvg: client {update.client}'s {name} has shape {tuple(tensor.shape)}, "
                    f"client {first.client}'s {tuple(first.tensors[name].shape)}"
                )
    total = sum(update.examples for update in updates)
    averaged: dict[str, torch.Tensor] = {}
    for name, reference in first.tensors.items():
        accumulator = torch.zeros(reference.shape, dtype=torch.float64)
        for update in updates:
            accumulator += update.tensors[name].detach().to(torch.float64) * (update.examples / total)
        averaged[name] = accumulator.to(reference.dtype)
    return averaged


def proximal_term(
    params: Mapping[str, torch.Tensor], global_tensors: Mapping[str, torch.Tensor], mu: float
) -> torch.Tensor:
    """FedProx's ``μ/2 · Σ ‖w − w_global‖²`` over the tensors the server sent (differentiable in ``params``).

    Raises:
        AggregationError: a global tensor the model does not have.
    """
    missing = sorted(set(global_tensors) - set(params))
    if missing:
        raise AggregationError(f"FedProx: the model has no tensor {missing[0]} of the global adapter")
    if mu == 0.0 or not global_tensors:
        return torch.zeros(())
    squared = [
        (params[name] - reference.to(params[name].device, params[name].dtype)).pow(2).sum()
        for name, reference in global_tensors.items()
    ]
    return torch.stack(squared).sum() * (mu / 2.0)


def tensor_bytes(tensors: Mapping[str, torch.Tensor]) -> int:
    """The bytes of ``tensors`` as sent (their elements in their own dtype, no framing)."""
    return sum(tensor.numel() * tensor.element_size() for tensor in tensors.values())

"""Partitions that look like hospitals: one dataset's (or several datasets') items split across federated clients.

Every scheme is seeded and deterministic; every item lands on exactly one client; a client left with no item is an
error naming it (a hospital with nothing to train on cannot take part in a round).

- ``iid``: a seeded shuffle dealt round-robin (each client a fair sample of the whole);
- ``dataset``: each client one source dataset (``metadata["dataset"]``): as many sources as clients;
- ``subject``: whole subjects (``metadata["subset"]``: MedMCQA and MMLU subjects, MedQA steps) dealt to clients,
  largest first to the client with the fewest items, so each subject lives at one hospital;
- ``dirichlet``: per subject (or per gold letter, ``by="letter"``), the items are split in proportions drawn from a
  symmetric Dirichlet(α): α small gives each client a few subjects (strong skew), α large approaches ``iid``.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from medcouncil.scenarios.datasets.samples import Sample
from medcouncil.serving.common.errors import ConfigError

Scheme = Literal["iid", "dataset", "subject", "dirichlet"]
SCHEMES: tuple[Scheme, ...] = ("iid", "dataset", "subject", "dirichlet")
UNKNOWN = "(none)"
"""The subject or dataset of an item whose metadata names none."""


class PartitionConfig(BaseModel):
    """How the training items are split across federated clients (``finetune --federated``; YAML accepted)."""

    model_config = ConfigDict(extra="forbid")  # ``alfa:`` is an error, not alpha's default

    scheme: Scheme = "iid"
    clients: int = Field(default=3, ge=1)
    alpha: float = Field(default=0.5, gt=0.0)
    """Dirichlet concentration (``dirichlet`` only): 0.1 strong skew, 100 near-IID."""
    by: Literal["subject", "letter"] = "subject"
    """What ``dirichlet`` skews: the subject mix or the gold-letter mix of each client."""
    seed: int = 0


class ClientSummary(BaseModel):
    """What one client holds (the partition report's row): counts only, never the items' text."""

    client: int
    items: int
    datasets: dict[str, int]
    subjects: dict[str, int]
    letters: dict[str, int]


class PartitionReport(BaseModel):
    """The partition as printed and saved beside a federated run."""

    config: PartitionConfig
    clients: list[ClientSummary]


def subject_of(sample: Sample) -> str:
    return sample.metadata.get("subset") or UNKNOWN


def dataset_of(sample: Sample) -> str:
    return sample.metadata.get("dataset") or UNKNOWN


def _groups(samples: Sequence[Sample], key: Callable[[Sample], str]) -> dict[str, list[int]]:
    groups: dict[str, list[int]] = defaultdict(list)
    for index, sample in enumerate(samples):
        groups[key(sample)].append(index)
    return dict(sorted(groups.items()))


def _iid(count: int, clients: int, rng: random.Random) -> list[list[int]]:
    order = list(range(count))
    rng.shuffle(order)
    return [sorted(order[client::clients]) for client in range(clients)]


def _by_dataset(samples: Sequence[Sample], clients: int) -> list[list[int]]:
    groups = _groups(samples, dataset_of)
    if len(groups) != clients:
        names = ", ".join(f"{name} ({len(items)})" for name, items in groups.items())
        raise ConfigError(
            f"partition 'dataset' gives each client one source: {clients} clients, {len(groups)} sources ({names})"
        )
    return list(groups.values())


def _by_subject(samples: Sequence[Sample], clients: int) -> list[list[int]]:
    groups = _groups(samples, subject_of)
    if len(groups) < clients:
        names = ", ".join(f"{name} ({len(items)})" for name, items in groups.items())
        hint = ": the items name no subject (metadata 'subset')" if set(groups) == {UNKNOWN} else ""
        raise ConfigError(f"partition 'subject': {len(groups)} subjects for {clients} clients ({names}){hint}")
    parts: list[list[int]] = [[] for _ in range(clients)]
    # Largest subject first, to the client holding fewest items (ties: the lower client number).
    for _, items in sorted(groups.items(), key=lambda group: (-len(group[1]), group[0])):
        min(parts, key=len).extend(items)
    return [sorted(part) for part in parts]


def dirichlet_shares(clients: int, alpha: float, rng: random.Random) -> list[float]:
    """One draw from a symmetric Dirichlet(α) over ``clients`` (normalised Gamma(α, 1) draws)."""
    draws = [rng.gammavariate(alpha, 1.0) for _ in range(clients)]
    total = sum(draws)
    return [draw / total for draw in draws] if total > 0 else [1.0 / clients] * clients


def _dirichlet(samples: Sequence[Sample], config: PartitionConfig, rng: random.Random) -> list[list[int]]:
    key = subject_of if config.by == "subject" else (lambda sample: sample.answer)
    parts: list[list[int]] = [[] for _ in range(config.clients)]
    for _, items in _groups(samples, key).items():
        rng.shuffle(items)
        shares = dirichlet_shares(config.clients, config.alpha, rng)
        # Cumulative cut points: every item of the group goes to exactly one client.
        start, cumulative = 0, 0.0
        for client, share in enumerate(shares):
            cumulative += share
            end = len(items) if client == config.clients - 1 else round(cumulative * len(items))
            parts[client].extend(items[start:end])
            start = end
    return [sorted(part) for part in parts]


def partition(samples: Sequence[Sample], config: PartitionConfig) -> list[list[Sample]]:
    """``samples`` split into ``config.clients`` lists by ``config.scheme`` (see the module's text)."""
    if not samples:
        raise ConfigError("partition: no items to split")
    rng = random.Random(config.seed)
    if config.scheme == "iid":
        indices = _iid(len(samples), config.clients, rng)
    elif config.scheme == "dataset":
        indices = _by_dataset(samples, config.clients)
    elif config.scheme == "subject":
        indices = _by_subject(samples, config.clients)
    else:
        indices = _dirichlet(samples, config, rng)
    empty = [str(client) for client, items in enumerate(indices) if not items]
    if empty:
        raise ConfigError(
            f"partition '{config.scheme}' left client {', '.join(empty)} with no item "
            f"({len(samples)} items, {config.clients} clients): use fewer clients or another scheme"
        )
    return [[samples[index] for index in items] for items in indices]


def report(parts: Sequence[Sequence[Sample]], config: PartitionConfig) -> PartitionReport:
    """Items, datasets, subjects and gold letters per client."""
    rows = [
        ClientSummary(
            client=client,
            items=len(items),
            datasets=dict(Counter(dataset_of(sample) for sample in items).most_common()),
            subjects=dict(Counter(subject_of(sample) for sample in items).most_common()),
            letters=dict(sorted(Counter(sample.answer for sample in items).items())),
        )
        for client, items in enumerate(parts)
    ]
    return PartitionReport(config=config, clients=rows)

"""A federation's data: datasets → decontaminated items → partitions (one per client) → each client's chat JSONL,
the server's held-out examples and its MCQA probe, and the partition report; then the plan the Flower apps run.

Each client trains on its items rendered exactly as ``finetune --data DATASET`` renders them (the single-model
question and its answer line). A share of every client's items (``eval_fraction``) is held out of its training
file: the union of those slices is the server's held-out set and, unless a probe dataset is given, its MCQA probe.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from medcouncil.scenarios.datasets.samples import Sample
from medcouncil.scenarios.training.examples import record_to_example
from medcouncil.scenarios.training.partition import PartitionConfig, PartitionReport, partition, report
from medcouncil.serving.common.errors import ConfigError
from medcouncil.serving.common.yamlfile import load_with_overrides
from medcouncil.serving.training.config import FinetuneConfig
from medcouncil.serving.training.data import ChatExample, fingerprint
from medcouncil.serving.training.evaluate import ProbeItem
from medcouncil.serving.training.federated.config import ClientData, FederationConfig, FederationPlan

CLIENTS = "clients"
PARTITION = "partition.json"


class FederateConfig(BaseModel):
    """``medcouncil federate``'s settings (``--config fed.yaml``: these keys; flags override them)."""

    model_config = ConfigDict(extra="forbid")

    data: list[str] = Field(default_factory=list)
    """Datasets (as ``bench --dataset``) pooled and partitioned across the simulated / local clients."""
    limit: int | None = Field(default=None, ge=1)
    """Each dataset's first N items."""
    subset: str | None = None
    data_dir: Path | None = None
    out: Path = Path("adapters/federated")
    """The run folder: adapter, ``run.json``, ``report.html``, ``rounds/`` checkpoints, client data, logs."""
    decontaminate: bool = True
    """Drop items found in the local evaluation sets (as ``data build``)."""
    eval_fraction: float = Field(default=0.1, ge=0, lt=1)
    """Share of each client's items held out of its training file (the server's held-out set and probe)."""
    probe: str | None = None
    """A dataset for the per-round MCQA probe instead of the held-out items (e.g. the first 50 of a test file)."""
    probe_limit: int = Field(default=50, ge=0)
    partition: PartitionConfig = Field(default_factory=PartitionConfig)
    federation: FederationConfig = Field(default_factory=FederationConfig)
    train: FinetuneConfig = Field(default_factory=FinetuneConfig)
    """The clients' training settings (as ``finetune``'s; ``max_steps``/``epochs``/``out``/``data`` unused)."""

    @classmethod
    def load(cls, path: Path | None = None, **overrides: object) -> FederateConfig:
        return load_with_overrides(cls, path, overrides, "federate config")


def probe_items(samples: Sequence[Sample]) -> list[ProbeItem]:
    """Each item as the single model's question; the candidates are its option letters."""
    letters = [list(s.options) for s in samples]
    return [
        ProbeItem(
            id=sample.id,
            messages=record_to_example(sample).messages[:1],
            candidates=tuple(options),
            gold=options.index(sample.answer),
        )
        for sample, options in zip(samples, letters, strict=True)
    ]


def _write_jsonl(path: Path, rows: Sequence[str]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(f"{row}\n" for row in rows), encoding="utf-8")
    tmp.replace(path)


def _chat_row(example: ChatExample) -> str:
    return json.dumps(
        {"messages": [m.model_dump() for m in example.messages], "id": example.source}, ensure_ascii=False
    )


def split_held_out(items: Sequence[Sample], fraction: float, seed: int) -> tuple[list[Sample], list[Sample]]:
    """(training, held-out) of one client's items: a seeded share held out, at least one item left to train."""
    order = list(items)
    random.Random(seed).shuffle(order)
    held = min(len(order) - 1, round(fraction * len(order))) if fraction > 0 else 0
    return order[held:], order[:held]


def build_plan(
    config: FederateConfig, samples: Sequence[Sample], source: str, probe: Sequence[Sample] = ()
) -> tuple[FederationPlan, PartitionReport]:
    """Write each client's training file, the held-out set, the probe and the partition report under
    ``config.out``; return the plan (saved as ``federation.json``) and the report.

    Raises:
        ConfigError: a partition that leaves a client without an item (named).
    """
    parts = partition(samples, config.partition)
    partition_report = report(parts, config.partition)
    out = config.out
    (out / CLIENTS).mkdir(parents=True, exist_ok=True)
    clients: list[ClientData] = []
    held_out: list[Sample] = []
    for index, items in enumerate(parts):
        train, held = split_held_out(items, config.eval_fraction, config.partition.seed * 1009 + index)
        examples = [record_to_example(sample) for sample in train]
        name = f"client-{index}"
        path = out / CLIENTS / f"{name}.jsonl"
        _write_jsonl(path, [_chat_row(example) for example in examples])
        subjects = ", ".join(partition_report.clients[index].subjects)
        clients.append(
            ClientData(
                name=name,
                path=str(path.resolve()),
                source=f"{source} · {config.partition.scheme} partition, client {index} ({subjects})",
                examples=len(examples),
                fingerprint=fingerprint(examples),
            )
        )
        held_out += held
    eval_path = probe_path = None
    if held_out:
        eval_path = out / CLIENTS / "held-out.jsonl"
        _write_jsonl(eval_path, [_chat_row(record_to_example(sample)) for sample in held_out])
    probe_samples = list(probe) or held_out
    if probe_samples and config.probe_limit:
        probe_path = out / CLIENTS / "probe.jsonl"
        _write_jsonl(probe_path, [item.model_dump_json() for item in probe_items(probe_samples[: config.probe_limit])])
    (out / PARTITION).write_text(partition_report.model_dump_json(indent=2), encoding="utf-8")
    plan = FederationPlan(
        out=out.resolve(),
        train=config.train.model_copy(update={"out": out.resolve(), "data": None}),
        federation=config.federation,
        clients=clients,
        eval_path=str(eval_path.resolve()) if eval_path else None,
        probe_path=str(probe_path.resolve()) if probe_path else None,
        data_source=f"{source} ({config.partition.scheme} partition over {len(clients)} clients)",
    )
    plan.save()
    return plan, partition_report


def remote_plan(config: FederateConfig, probe: Sequence[Sample]) -> FederationPlan:
    """The plan of a run on a remote SuperLink whose SuperNodes bring their own data: no client files here; the
    server's held-out set and probe are the probe dataset's items.

    Raises:
        ConfigError: no probe dataset (the server would have nothing to score the global adapter on).
    """
    if not probe:
        raise ConfigError(
            "--superlink with no --data: give --probe DATASET, the items the server scores the global adapter on"
        )
    out = config.out
    (out / CLIENTS).mkdir(parents=True, exist_ok=True)
    eval_path = out / CLIENTS / "held-out.jsonl"
    _write_jsonl(eval_path, [_chat_row(record_to_example(sample)) for sample in probe])
    probe_path = out / CLIENTS / "probe.jsonl"
    _write_jsonl(probe_path, [item.model_dump_json() for item in probe_items(list(probe)[: config.probe_limit])])
    plan = FederationPlan(
        out=out.resolve(),
        train=config.train.model_copy(update={"out": out.resolve(), "data": None}),
        federation=config.federation,
        eval_path=str(eval_path.resolve()),
        probe_path=str(probe_path.resolve()),
        data_source=f"the SuperNodes' own data (SuperLink {config.federation.superlink})",
    )
    plan.save()
    return plan

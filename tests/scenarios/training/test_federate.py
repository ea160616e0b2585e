"""A federation's data on disk: each client's training file, the held-out set and probe, the partition report and
the plan; and bench's training-leak check on a federated run card."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medcouncil.scenarios.datasets.registry import load_dataset
from medcouncil.scenarios.datasets.samples import Sample
from medcouncil.scenarios.training.federate import FederateConfig, build_plan, probe_items
from medcouncil.scenarios.training.leakage import check
from medcouncil.scenarios.training.partition import PartitionConfig
from medcouncil.serving.training.data import read_chat_jsonl
from medcouncil.serving.training.evaluate import ProbeItem
from medcouncil.serving.training.federated.config import PLAN, FederationPlan
from tests.conftest import SHARED

pytestmark = pytest.mark.skipif(not (SHARED / "data").is_dir(), reason="../shared/data is not beside the project")


def medmcqa_by_subject(limit: int = 90) -> list[Sample]:
    samples, _ = load_dataset(str(SHARED / "data" / "raw" / "medmcqa_dev.jsonl"))
    return samples[:limit]


def test_each_client_gets_its_own_file_and_the_held_out_items_train_nowhere(tmp_path: Path) -> None:
    samples = medmcqa_by_subject()
    config = FederateConfig(
        out=tmp_path / "run", eval_fraction=0.2, partition=PartitionConfig(scheme="subject", clients=3)
    )
    plan, report = build_plan(config, samples, "medmcqa_dev.jsonl")
    assert FederationPlan.load(tmp_path / "run" / PLAN) == plan
    assert json.loads((tmp_path / "run" / "partition.json").read_text())["clients"] == [
        row.model_dump() for row in report.clients
    ]
    trained: list[str] = []
    for client, row in zip(plan.clients, report.clients, strict=True):
        examples = read_chat_jsonl(Path(client.path))
        assert len(examples) == client.examples == row.items - round(0.2 * row.items)
        assert client.source.startswith("medmcqa_dev.jsonl · subject partition, client")
        trained += [e.messages[0].content for e in examples]
    held = read_chat_jsonl(Path(plan.eval_path or ""))
    assert len(trained) + len(held) == len(samples) and len(set(trained)) == len(trained)
    assert not {e.messages[0].content for e in held} & set(trained)
    probe = [ProbeItem.model_validate_json(line) for line in Path(plan.probe_path or "").read_text().splitlines()]
    assert [p.messages[0].content for p in probe] == [e.messages[0].content for e in held][: len(probe)]
    assert plan.train.out == (tmp_path / "run").resolve() and plan.train.data is None


def test_a_probe_item_is_the_single_question_with_its_letters() -> None:
    sample = Sample(id="q1", question="Which organ pumps blood?", options={"A": "Liver", "B": "Heart"}, answer="B")
    (probe,) = probe_items([sample])
    assert probe.candidates == ("A", "B") and probe.gold == 1
    assert "⟪Which organ pumps blood?⟫" in probe.messages[0].content and probe.messages[0].role == "user"


def test_the_leak_check_reads_every_federated_clients_data(tmp_path: Path) -> None:
    samples = medmcqa_by_subject(30)
    plan, _ = build_plan(
        FederateConfig(out=tmp_path / "run", eval_fraction=0.0, partition=PartitionConfig(clients=2)),
        samples,
        "medmcqa_dev.jsonl",
    )
    card = {
        "config": plan.train.model_dump(mode="json"),
        "federation": {"clients": [c.model_dump() for c in plan.clients]},
    }
    (tmp_path / "run" / "run.json").write_text(json.dumps(card))
    result = check(
        tmp_path / "run", [*samples[:5], Sample(id="new", question="Unseen?", options={"A": "x", "B": "y"}, answer="A")]
    )
    assert result.overlapping == 5 and result.checked == 6 and "2 federated clients" in result.data
    Path(plan.clients[1].path).unlink()  # a deployed SuperNode's data is on its own host
    missing = check(tmp_path / "run", samples[:5])
    assert "federated clients' data not on this machine" in missing.note and "client-1.jsonl" in missing.note


def test_a_remote_federation_plans_no_client_data_and_needs_a_probe(tmp_path: Path) -> None:
    from medcouncil.scenarios.training.federate import remote_plan
    from medcouncil.serving.common.errors import ConfigError
    from medcouncil.serving.training.federated.config import FederationConfig

    config = FederateConfig(
        out=tmp_path / "run", federation=FederationConfig(engine="deployment", superlink="10.0.0.1:9093")
    )
    with pytest.raises(ConfigError, match="give --probe DATASET"):
        remote_plan(config, [])
    probe = medmcqa_by_subject(5)
    plan = remote_plan(config, probe)
    assert plan.clients == [] and FederationPlan.load(tmp_path / "run" / PLAN) == plan
    assert len(read_chat_jsonl(Path(plan.eval_path or ""))) == 5 and "SuperLink 10.0.0.1:9093" in plan.data_source

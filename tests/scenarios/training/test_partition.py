"""Partitions across federated clients: every item once, each scheme's shape, skew by α, clear errors."""

from __future__ import annotations

import pytest

from medcouncil.scenarios.datasets.registry import load_dataset
from medcouncil.scenarios.datasets.samples import Sample
from medcouncil.scenarios.training.partition import PartitionConfig, dirichlet_shares, partition, report
from medcouncil.serving.common.errors import ConfigError
from tests.conftest import SHARED


def item(index: int, subject: str, dataset: str = "medmcqa", answer: str = "A") -> Sample:
    return Sample(
        id=f"{dataset}-{index}",
        question=f"Question {index}?",
        options={"A": "a", "B": "b", "C": "c", "D": "d"},
        answer=answer,
        metadata={"dataset": dataset, "subset": subject},
    )


SUBJECTS = {"Anatomy": 40, "Pharmacology": 25, "Surgery": 20, "Medicine": 10, "Dental": 5}
ITEMS = [item(i, s, answer="ABCD"[i % 4]) for s, n in SUBJECTS.items() for i in range(n)]


def ids(parts: list[list[Sample]]) -> list[str]:
    return sorted(sample.id + sample.metadata["subset"] for part in parts for sample in part)


@pytest.mark.parametrize("scheme", ["iid", "subject", "dirichlet"])
def test_every_item_lands_on_exactly_one_client_the_same_way_for_a_seed(scheme: str) -> None:
    config = PartitionConfig(scheme=scheme, clients=3, seed=7)  # type: ignore[arg-type]
    parts = partition(ITEMS, config)
    assert len(parts) == 3 and ids(parts) == ids([ITEMS])
    assert parts == partition(ITEMS, config)  # deterministic


def test_iid_deals_even_shares_and_subject_keeps_each_subject_at_one_hospital() -> None:
    assert [len(part) for part in partition(ITEMS, PartitionConfig(scheme="iid", clients=3))] == [34, 33, 33]
    parts = partition(ITEMS, PartitionConfig(scheme="subject", clients=3))
    homes = {s: {c for c, part in enumerate(parts) for x in part if x.metadata["subset"] == s} for s in SUBJECTS}
    assert all(len(clients) == 1 for clients in homes.values())
    assert [len(part) for part in parts] == [40, 30, 30]  # largest first, each to the emptiest client


def test_dirichlet_alpha_sets_the_skew() -> None:
    def spread(alpha: float) -> float:
        """Mean over clients of the share of its largest subject: 1.0 is one subject per client."""
        parts = partition(ITEMS, PartitionConfig(scheme="dirichlet", clients=3, alpha=alpha, seed=1))
        top = [max(report([part], PartitionConfig()).clients[0].subjects.values()) / len(part) for part in parts]
        return sum(top) / len(top)

    assert spread(0.05) > 0.8 and spread(1000.0) < 0.5
    shares = dirichlet_shares(4, 0.5, __import__("random").Random(3))
    assert len(shares) == 4 and abs(sum(shares) - 1.0) < 1e-9
    letters = partition(ITEMS, PartitionConfig(scheme="dirichlet", by="letter", clients=2, alpha=0.05, seed=2))
    assert ids(letters) == ids([ITEMS])


def test_by_dataset_gives_each_client_one_source_or_says_why_not() -> None:
    mixed = [item(i, "x", "medqa") for i in range(4)] + [item(i, "y", "mmlu") for i in range(6)]
    parts = partition(mixed, PartitionConfig(scheme="dataset", clients=2))
    assert [{x.metadata["dataset"] for x in part} for part in parts] == [{"medqa"}, {"mmlu"}]
    with pytest.raises(ConfigError, match=r"3 clients, 2 sources \(medqa \(4\), mmlu \(6\)\)"):
        partition(mixed, PartitionConfig(scheme="dataset", clients=3))


def test_an_empty_client_or_no_items_is_a_one_line_error() -> None:
    with pytest.raises(ConfigError, match="left client 2 with no item"):
        partition(ITEMS[:2], PartitionConfig(scheme="iid", clients=3))
    with pytest.raises(ConfigError, match="no items"):
        partition([], PartitionConfig())
    with pytest.raises(ConfigError, match="5 subjects for 6 clients"):  # five subjects cannot fill six hospitals
        partition(ITEMS, PartitionConfig(scheme="subject", clients=6))


def test_the_report_counts_items_subjects_and_letters_per_client() -> None:
    config = PartitionConfig(scheme="subject", clients=2)
    rows = report(partition(ITEMS, config), config).clients
    assert [row.items for row in rows] == [50, 50]
    assert rows[0].subjects == {"Anatomy": 40, "Medicine": 10} and rows[0].datasets == {"medmcqa": 50}
    assert sum(rows[0].letters.values()) == 50 and set(rows[0].letters) == set("ABCD")


@pytest.mark.skipif(not (SHARED / "data").is_dir(), reason="../shared/data is not beside the project")
def test_real_medmcqa_and_mmlu_subjects_split_into_hospitals() -> None:
    medmcqa, _ = load_dataset(str(SHARED / "data" / "raw" / "medmcqa_dev.jsonl"))  # has subject_name
    mmlu, _ = load_dataset(str(SHARED / "data" / "mcqa" / "mmlu.test.jsonl"))
    config = PartitionConfig(scheme="subject", clients=3)
    rows = report(partition(medmcqa, config), config).clients
    assert sum(row.items for row in rows) == len(medmcqa) and all(len(row.subjects) >= 2 for row in rows)
    # the MedMCQA test file of the shared MCQA set names no subject: one "subject", so one hospital only
    flat, _ = load_dataset(str(SHARED / "data" / "mcqa" / "medmcqa.test.jsonl"))
    with pytest.raises(ConfigError, match=r"1 subjects for 3 clients \(\(none\) \(2816\)\): the items name no"):
        partition(flat, config)
    together = PartitionConfig(scheme="dataset", clients=2)
    assert [row.datasets for row in report(partition(medmcqa + mmlu, together), together).clients] == [
        {"medmcqa": len(medmcqa)},
        {"mmlu": len(mmlu)},
    ]

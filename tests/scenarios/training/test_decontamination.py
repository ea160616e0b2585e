"""Training items found in evaluation sets are dropped: exact copies (after normalisation) and near-duplicates
(the knowledge base's embedder), with the real MiniLM model; and the shared MedMCQA dev/test overlap."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medcouncil.scenarios.datasets.registry import load_dataset
from medcouncil.scenarios.datasets.samples import Sample
from medcouncil.scenarios.training.decontamination import (
    EvalItem,
    decontaminate,
    local_eval_sets,
    normalise_text,
    summarise,
)
from medcouncil.tools.embeddings import build_embedder
from tests.conftest import SHARED

OPTIONS = {"A": "a", "B": "b"}
ALCOHOLIC_EVAL = (
    "Chronic alcoholic comes with pain epigastrium and recurrent vomiting. On examination guarding in "
    "upper epigastrium. Chest X-ray normal. What to do next?"
)
ALCOHOLIC_TRAIN = (
    "A chronic alcoholic patient came to emergency with severe pain in epigastrium and multiple "
    "of vomiting. On examination, guarding was present in upper epigastrium. Chest X-ray was normal. "
    "What is the next step?"
)
EVALS = [
    EvalItem(source="test-set", id="e1", question="Which of the following does golgi tendon organ detect?"),
    EvalItem(source="test-set", id="e2", question=ALCOHOLIC_EVAL),
]
TRAIN = [
    Sample(id="copy", question="  WHICH of the following does Golgi tendon-organ detect ", options=OPTIONS, answer="A"),
    Sample(id="reworded", question=ALCOHOLIC_TRAIN, options=OPTIONS, answer="A"),
    Sample(id="other", question="Which nerve supplies the deltoid muscle?", options=OPTIONS, answer="A"),
]


def test_normalisation_ignores_case_spacing_punctuation_and_width() -> None:
    assert normalise_text("  Golgi tendon-organ,  DETECTS？ ") == normalise_text("golgi tendon organ detects")


def test_exact_copies_only_without_an_embedder() -> None:
    clean, overlaps = decontaminate(TRAIN, EVALS, None)
    assert [s.id for s in clean] == ["reworded", "other"]
    assert [(o.train_id, o.kind, o.eval_id) for o in overlaps] == [("copy", "exact", "e1")]


def test_near_duplicates_with_the_real_embedder() -> None:
    clean, overlaps = decontaminate(TRAIN, EVALS, build_embedder())
    assert [s.id for s in clean] == ["other"]
    near = next(o for o in overlaps if o.train_id == "reworded")
    assert near.kind == "near" and near.eval_id == "e2" and near.similarity >= 0.9
    assert summarise(overlaps) == {"by_kind": {"exact": 1, "near": 1}, "by_eval_set": {"test-set": 2}}


@pytest.mark.skipif(not (SHARED / "data").is_dir(), reason="../shared/data is not beside the project")
def test_shared_medmcqa_dev_overlaps_the_test_file(tmp_path: Path) -> None:
    train, _ = load_dataset(str(SHARED / "data" / "raw" / "medmcqa_dev.jsonl"))
    evals = local_eval_sets(SHARED / "data")
    assert {item.source for item in evals} >= {"medqa", "medmcqa", "mmlu", "pubmedqa"}
    clean, overlaps = decontaminate(train, evals, None)
    by_set = summarise(overlaps)["by_eval_set"]
    assert len(train) == 4183 and by_set["medmcqa"] == 2816
    assert len(clean) == 4183 - len(overlaps)


class Counting:
    """An embedder that counts the texts it encodes."""

    name = "counting"

    def __init__(self) -> None:
        self.encoded = 0

    def encode(self, texts: list[str]) -> np.ndarray:
        self.encoded += len(texts)
        return np.array([[float(len(t)), 1.0] for t in texts], dtype=np.float32)


def test_decontamination_encodes_the_evaluation_sets_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from medcouncil.scenarios.training.decontamination import EvalItem, find_overlaps

    monkeypatch.setenv("MEDCOUNCIL_HOME", str(tmp_path))
    evals = [EvalItem(source="set", id=str(i), question="q" * (i + 1)) for i in range(5)]
    inner = Counting()
    find_overlaps([("t1", "other question")], evals, inner)
    assert inner.encoded == 1 + 5
    find_overlaps([("t2", "another one")], evals, inner)
    assert inner.encoded == 6 + 1  # only the training question

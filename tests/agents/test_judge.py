"""Judging a committed diagnosis: letter, exact, alias, embedding (calibrated on real diagnoses), judge model."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from medcouncil.agents.cases import ClinicalCase, Finding
from medcouncil.agents.judge import SIMILARITY_THRESHOLD, judge, normalise
from medcouncil.scenarios.episodes.load import load_cases
from medcouncil.serving.replay import ReplayModel
from medcouncil.tools.embeddings import build_embedder
from tests.conftest import SHARED

CASE = ClinicalCase(
    id="1",
    objective="Diagnose.",
    opening="A woman with diplopia.",
    diagnosis="Myasthenia gravis",
    aliases=("MG",),
    patient=(Finding(name="History", result="Worse in the evening."),),
)


def verdict(diagnosis: str, **kwargs: object):  # type: ignore[no-untyped-def]
    return asyncio.run(judge(CASE, diagnosis, **kwargs))  # type: ignore[arg-type]


def test_normalised_exact_and_alias_matches() -> None:
    assert normalise("Final diagnosis: The Myasthenia-Gravis.") == "myasthenia gravis"
    assert verdict("DIAGNOSIS: myasthenia gravis").method == "exact"
    assert verdict("Myasthenia gravis, generalised").correct  # contains it, not much longer
    assert not verdict("Not myasthenia gravis but a brainstem stroke with diplopia").correct
    alias = verdict("mg")
    assert alias.correct and alias.method == "alias" and "'MG'" in alias.reason
    assert verdict("").reason == "no diagnosis given"


def test_options_are_judged_by_letter() -> None:
    case = CASE.model_copy(update={"options": {"A": "Myasthenia gravis", "B": "Stroke"}, "answer": "A"})
    assert asyncio.run(judge(case, "whatever", "A")).correct
    wrong = asyncio.run(judge(case, "Myasthenia gravis", "B"))
    assert not wrong.correct and wrong.method == "letter" and wrong.reason == "chose B, the correct option is A"
    assert asyncio.run(judge(case, "x", None)).reason == "no option chosen"


def test_the_judge_model_decides_last_with_a_constrained_answer() -> None:
    model = ReplayModel(["Y", "maybe"])
    yes = verdict("Autoimmune neuromuscular junction disorder", judge_model=model)
    assert yes.correct and yes.method == "judge" and "answered Y" in yes.reason
    prompt = str(model.seen[0][0].content)
    assert "⟪Myasthenia gravis⟫" in prompt and "⟪Autoimmune neuromuscular junction disorder⟫" in prompt
    unusable = verdict("Something else", judge_model=model)  # no Y/N: not a verdict
    assert not unusable.correct and unusable.method == "none"


def test_embedding_similarity_and_its_threshold_on_real_diagnoses() -> None:
    embedder = build_embedder()
    close = verdict("Diabetes mellitus type 1", embedder=embedder)
    assert not close.correct  # another condition altogether: below the threshold
    reworded = asyncio.run(
        judge(
            CASE.model_copy(update={"diagnosis": "Type 1 diabetes mellitus", "aliases": ()}),
            "Diabetes mellitus type 1",
            embedder=embedder,
        )
    )
    assert reworded.correct and reworded.method == "embedding"
    assert reworded.similarity is not None and reworded.similarity > SIMILARITY_THRESHOLD
    if not (SHARED / "data" / "episodes").exists():
        pytest.skip("shared data not found")
    golds = sorted({c.diagnosis for c in load_cases("agentclinic")[0]})
    vectors = embedder.encode(golds)
    above = {
        (a, b)
        for (i, a), (j, b) in itertools.combinations(enumerate(golds), 2)
        if float(vectors[i] @ vectors[j]) >= SIMILARITY_THRESHOLD
    }
    # Only spellings of one condition are that close; different conditions never are.
    assert 1 <= len(above) <= 3
    for a, b in above:
        assert normalise(a)[:8] == normalise(b)[:8], (a, b)

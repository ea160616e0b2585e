"""The mode registry: every declared mode builds an answerer of its name, and everything that names modes reads it."""

from __future__ import annotations

from pathlib import Path

import pytest

from medcouncil.agents.baselines import PriorEstimator
from medcouncil.agents.build import make_council
from medcouncil.agents.council import CouncilConfig, SingleModel
from medcouncil.agents.protocol import Question
from medcouncil.agents.roles import ROLES
from medcouncil.scenarios.bench.journal import read_errors, read_records
from medcouncil.scenarios.bench.modes import (
    MODES,
    Setting,
    build,
    comparisons,
    debias_modes,
    doctors,
    episode_modes,
    help_text,
    needs,
)
from medcouncil.scenarios.bench.summary import summarize
from medcouncil.serving.common.errors import ConfigError
from medcouncil.serving.replay import ReplayModel
from medcouncil.tools.chunking import Document
from medcouncil.tools.search import InMemoryKnowledge


def setting(with_prior: bool = True) -> Setting:
    model = ReplayModel(["A"] * 50)
    knowledge = InMemoryKnowledge([Document(text="Asthma: wheeze.", source="asthma.md")])
    question = Question(text="Wheeze?", options={"A": "Asthma", "B": "Gout"})
    prior = PriorEstimator(SingleModel(model), [question]) if with_prior else None
    roles = dict.fromkeys(ROLES, model)
    return Setting(
        model,
        lambda structure: make_council(roles, knowledge, CouncilConfig(), structure),
        estimator=prior,
    )


def test_every_mode_builds_an_answerer_named_as_the_mode() -> None:
    made = build(setting(), list(MODES))
    assert {name: answerer.name for name, answerer in made.items()} == {name: name for name in MODES}


def test_gated_escalates_to_the_council_the_council_mode_uses() -> None:
    made = build(setting(), ["council", "gated"])
    assert made["gated"].council is made["council"]  # type: ignore[attr-defined]


def test_pride_without_its_estimator_is_refused() -> None:
    with pytest.raises(ConfigError, match="single\\+pride"):
        build(setting(with_prior=False), ["single+pride"])
    assert needs(["single", "single+pride"], "prior") and not needs(["single", "council"], "prior")
    assert needs(["single+joint"], "cloze") and needs(["single+cloze"], "cloze")  # the engine is checked first


def test_declarations_are_consistent() -> None:
    assert len({mode.colour for mode in MODES.values()}) == len(MODES)
    assert all(first in MODES and second in MODES and first != second for first, second in comparisons())
    assert ("council", "single") in comparisons() and ("gated", "council") in comparisons()
    assert ("council", "single+joint") in comparisons() and ("single+cloze", "single") in comparisons()
    assert ("single+joint", "single") in comparisons() and ("single+joint", "single+cloze") in comparisons()
    assert debias_modes() == {
        "cyclic": "single+cyclic",
        "pride": "single+pride",
        "cloze": "single+cloze",
        "joint": "single+joint",
    }
    assert all(name in help_text() for name in MODES)


def test_episode_doctors_come_from_the_registry() -> None:
    assert episode_modes() == ["single", "council", "gated"]
    made = doctors(setting(), episode_modes())
    assert made["gated"].asker.name == "single" and made["gated"].decider.name == "gated"
    assert made["single"].asker is not made["single"].static  # short actions, a full-budget static answer
    with pytest.raises(ConfigError, match="does not play episodes"):
        doctors(setting(), ["cot"])


def test_summary_pairs_follow_the_declarations(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from medcouncil.scenarios.bench import summary
    from tests.scenarios.bench.test_report import make_run

    manifest = make_run(tmp_path)
    records, errors = read_records(tmp_path), read_errors(tmp_path)
    expected = [(a, b) for a, b in comparisons() if a in manifest.config.modes and b in manifest.config.modes]
    assert [(p.first, p.second) for p in summarize(manifest, records, errors).paired] == expected
    assert len(expected) == 3
    monkeypatch.setattr(summary, "comparisons", lambda: [("gated", "single")])
    assert [(p.first, p.second) for p in summarize(manifest, records, errors).paired] == [("gated", "single")]

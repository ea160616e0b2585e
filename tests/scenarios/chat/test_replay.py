from __future__ import annotations

from pathlib import Path

import pytest

from medcouncil.agents.protocol import Episode, Question, Turn
from medcouncil.scenarios.chat.replay import Expect, check_turn, load_scenario
from medcouncil.serving.common.errors import ConfigError
from medcouncil.tools.knowledge import Evidence

SHIPPED = sorted((Path(__file__).resolve().parents[3] / "scenarios").glob("*.yaml"))


def test_at_least_four_shipped_scenarios_load() -> None:
    scenarios = {path.stem: load_scenario(path) for path in SHIPPED}
    assert {"english_case", "korean_case", "follow_up", "multiple_choice"} <= set(scenarios)
    assert len(scenarios["follow_up"].turns) >= 2
    assert scenarios["multiple_choice"].turns[0].options


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name: x\nturns:\n  - user: hi\n    expect: {mentions: [a\n", r"x\.yaml:\d+: invalid YAML"),
        (
            "name: x\nturns:\n  - user: hi\n  - user: there\n    expect:\n      min_sources: many\n",
            r"x\.yaml:6: turns\.1\.expect\.min_sources: Input should be a valid integer",
        ),
        ("name: x\nturns:\n  - user: hi\n    expcet: {}\n", r"x\.yaml:4: turns\.0\.expcet: Extra inputs"),
        ("name: x\nturns: []\n", r"x\.yaml:2: turns: List should have at least 1 item"),
        (
            "name: x\nturns:\n  - user: hi\n    options: {A: a, B: b}\n    expect: {chooses: E}\n",
            r"x\.yaml:3: turns\.0: .*'E' can never be chosen: its options are A, B",
        ),
        ("name: x\nturns:\n  - user: hi\n    expect: {chooses: A}\n", r"x\.yaml:3: .*the turn has no options"),
    ],
)
def test_malformed_scenarios_name_file_and_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "x.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_scenario(path)


def test_missing_scenario_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read scenario"):
        load_scenario(tmp_path / "absent.yaml")


def test_checks_pass_and_fail() -> None:
    evidence = Evidence(id="1", text="t", score=0.5, source="s")
    episode = Episode(
        question=Question(text="q"),
        answerer="council",
        answer="Final answer: B. Asthma",
        case_en="FEV1 62% after salbutamol",
        letter="B",
        turns=[Turn(agent="translator", content=""), Turn(agent="retriever", content="", evidence=[evidence])],
    )
    expect = Expect(mentions=["asthma"], chooses="B", translator_ran=True, min_sources=1, keeps_terms=["62%"])
    assert all(result.passed for result in check_turn(1, expect, episode))
    failing = Expect(mentions=["gout"], chooses="C", translator_ran=False, min_sources=2, keeps_terms=["HbA1c"])
    assert not any(result.passed for result in check_turn(1, failing, episode))
    untranslated = Turn(agent="translator", content="Not translated (the model gave no text): the original …")
    failed = episode.model_copy(update={"turns": [untranslated]})
    assert [r.passed for r in check_turn(1, Expect(translated=True), failed)] == [False]
    assert [r.passed for r in check_turn(1, Expect(translated=True), episode)] == [True]
    errored = episode.model_copy(update={"error": "diagnostician: endpoint unreachable"})
    assert [r.check for r in check_turn(1, Expect(), errored) if not r.passed] == ["no error"]

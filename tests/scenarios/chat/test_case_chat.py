"""``chat --case``: a person is the doctor; typed lines go to the patient or the measurement agent, the diagnosis is
judged (scripted lines for the logic, the real command with piped input)."""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path

import pytest

from medcouncil.scenarios.chat.case import CaseSession
from medcouncil.scenarios.episodes.run import parse_case_spec
from medcouncil.serving.common.errors import ConfigError
from tests.agents.test_interview import CASE, measure, patient
from tests.scenarios.episodes.test_episode_bench import MCQA_CASE

FIXTURE = Path(__file__).parents[1] / "fixtures" / "episodes_ko.jsonl"


def say(session: CaseSession, line: str) -> str:
    return asyncio.run(session.handle(line))


def test_typed_lines_reach_the_patient_or_the_measurement_agent_within_the_budget() -> None:
    session = CaseSession(CASE, patient, measure, budget=2)
    assert "Objective: Diagnose the weakness." in session.opening() and "2 actions" in session.opening()
    assert say(session, "Do you smoke?") == "Social history: Smokes a pack a day."
    assert say(session, "test acetylcholine receptor antibodies").endswith("(cost 150)")
    assert say(session, "exam blood pressure").startswith("No actions left")
    assert say(session, "diagnosis Myasthenia gravis") == "" and session.finished
    assert session.record.count("ask") == 1 and session.record.cost == 150.0
    assert session.record.diagnosis == "Myasthenia gravis"


def test_a_case_with_options_takes_a_letter_or_an_option_text() -> None:
    session = CaseSession(MCQA_CASE, patient, measure)
    assert "A. Asthma" in session.opening()
    assert say(session, "diagnosis Z").startswith("Choose one of the options")
    assert say(session, "diagnosis copd") == "" and session.record.letter == "B"


def test_case_specs() -> None:
    assert parse_case_spec("cases.jsonl:3") == ("cases.jsonl", 3)
    assert parse_case_spec("cases.jsonl") == ("cases.jsonl", 1)
    assert parse_case_spec("C:/data/cases.jsonl") == ("C:/data/cases.jsonl", 1)
    with pytest.raises(ConfigError, match="numbered from 1"):
        parse_case_spec("cases.jsonl:0")


def test_the_command_plays_a_case_from_piped_input_and_judges_it(cli: list[str]) -> None:
    lines = "ask Tell me about your past medical history\ntest spirometry\ndiagnosis asthma\n"
    env = {**os.environ, "COLUMNS": "200"}
    done = subprocess.run(
        [*cli, "chat", "--case", f"{FIXTURE}:1"], input=lines, capture_output=True, text=True, timeout=300, env=env
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "Past medical history: 어릴 때 아토피 피부염이 있었습니다." in done.stdout
    assert "FEV1/FVC 0.65" in done.stdout and "(cost 120)" in done.stdout
    assert "correct: the diagnosis is 천식" in done.stdout and "1 questions, 0 examinations, 1 tests" in done.stdout
    missing = subprocess.run(
        [*cli, "chat", "--case", f"{FIXTURE}:5"], capture_output=True, text=True, timeout=120, env=env
    )
    assert missing.returncode != 0 and "has 1 valid cases" in missing.stdout + missing.stderr

"""``medcouncil replay`` of shipped scenarios against the real embedded server."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from medcouncil.serving.state import ServerState

pytestmark = pytest.mark.integration
SCENARIOS = Path(__file__).resolve().parents[3] / "scenarios"


@pytest.mark.parametrize("name", ["multiple_choice"])
def test_replay_a_shipped_scenario(cli: list[str], embedded_server: ServerState, tmp_path: Path, name: str) -> None:
    scenario = SCENARIOS / f"{name}.yaml"
    result = subprocess.run(
        [*cli, "replay", str(scenario), "--out", str(tmp_path), "--endpoint", embedded_server.base_url],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "COLUMNS": "160"},
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "checks passed" in result.stdout
    (jsonl,) = tmp_path.glob("*.jsonl")
    (markdown,) = tmp_path.glob("*.md")
    episode = json.loads(jsonl.read_text().splitlines()[0])
    assert episode["turns"] and episode["answer"]
    assert "Final answer" in markdown.read_text() or name == "korean_case"


def test_korean_checks_fail_honestly_on_the_echoing_base_model(
    cli: list[str], embedded_server: ServerState, tmp_path: Path
) -> None:
    """The base Gemma 270M echoes the translation prompt: its reply is no translation, so the council reads the
    Korean source (every value in place) and the scenario's ``translated`` check fails, saying why."""
    result = subprocess.run(
        [
            *cli,
            "replay",
            str(SCENARIOS / "korean_case.yaml"),
            "--out",
            str(tmp_path),
            "--endpoint",
            embedded_server.base_url,
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "COLUMNS": "160"},
    )
    assert result.returncode == 1 and "1 of 10 checks failed" in result.stdout, result.stdout[-3000:]
    assert "Not translated (" in result.stdout
    (jsonl,) = tmp_path.glob("*.jsonl")
    episode = json.loads(jsonl.read_text().splitlines()[0])
    for value in ("58", "30", "ECG", "aVF", "2.3 ng/mL"):  # nothing lost: every value reaches the council
        assert value in episode["case_en"]


def test_a_failing_check_exits_non_zero(cli: list[str], embedded_server: ServerState, tmp_path: Path) -> None:
    scenario = tmp_path / "impossible.yaml"
    scenario.write_text(
        "name: impossible\nturns:\n  - user: Which organ pumps blood?\n    expect:\n"
        "      mentions: [zzzz-not-there]\n      translator_ran: true\n"
    )
    result = subprocess.run(
        [*cli, "replay", str(scenario), "--out", str(tmp_path), "--endpoint", embedded_server.base_url],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "COLUMNS": "160"},
    )
    assert result.returncode == 1
    assert "2 of 2 checks failed" in result.stdout


def test_malformed_scenario_is_a_one_line_error(cli: list[str], tmp_path: Path) -> None:
    scenario = tmp_path / "bad.yaml"
    scenario.write_text("name: bad\nturns:\n  - user: hi\n    expect: {min_sources: -1}\n")
    result = subprocess.run([*cli, "replay", str(scenario)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith(f"error: {scenario}:4: turns.0.expect.min_sources")


def test_council_file_picks_roles_and_a_model_per_role(
    cli: list[str], embedded_server: ServerState, tmp_path: Path
) -> None:
    council = tmp_path / "council.yaml"
    council.write_text(
        f"roles: [retriever, diagnostician]\nmodels:\n  diagnostician: {{model: {embedded_server.served_model_name}}}\n"
    )
    result = subprocess.run(
        [
            *cli,
            "replay",
            str(SCENARIOS / "english_case.yaml"),
            "--out",
            str(tmp_path),
            "--council",
            str(council),
            "--endpoint",
            embedded_server.base_url,
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "COLUMNS": "160"},
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    (jsonl,) = tmp_path.glob("*.jsonl")
    episode = json.loads(jsonl.read_text().splitlines()[0])
    assert [turn["agent"] for turn in episode["turns"]] == ["retriever", "diagnostician"]

    council.write_text("models:\n  diagnostician: {model: no-such-adapter}\n")
    missing = subprocess.run(
        [
            *cli,
            "replay",
            str(SCENARIOS / "english_case.yaml"),
            "--council",
            str(council),
            "--endpoint",
            embedded_server.base_url,
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert missing.returncode == 1 and "does not serve 'no-such-adapter'" in missing.stderr

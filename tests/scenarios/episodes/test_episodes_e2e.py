"""``bench --episodes`` as a user runs it, on the real embedded server: 3 AgentClinic cases and 3 MedQA items made
into episodes (static vs interactive), a Korean case through the real translator, then a resume."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from medcouncil.serving.state import ServerState
from tests.conftest import SHARED

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not (SHARED / "data").is_dir(), reason="../shared/data is not beside the project"),
]
MEDQA = SHARED / "data" / "mcqa" / "medqa.test.jsonl"
FIXTURE = Path(__file__).parents[1] / "fixtures" / "episodes_ko.jsonl"
ENV = {**os.environ, "COLUMNS": "200"}


def bench(cli: list[str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*cli, "bench", *args], capture_output=True, text=True, timeout=1200, env=ENV)


def records(directory: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (directory / "samples.jsonl").read_text(encoding="utf-8").splitlines()]


def test_three_agentclinic_and_three_medqa_episodes_write_the_report_with_transcripts(
    cli: list[str], embedded_server: ServerState, tmp_path: Path
) -> None:
    common = [
        "--limit",
        "3",
        "--mode",
        "single",
        "--budget",
        "2",
        "--endpoint",
        embedded_server.base_url,
        "--data-dir",
        str(SHARED / "data"),
    ]
    judge = ["--judge-endpoint", embedded_server.base_url]  # the same model as judge: the path, not the quality
    clinic = bench(cli, "--episodes", "agentclinic", *common, *judge, "--out", str(tmp_path / "clinic"))
    assert clinic.returncode == 0, clinic.stdout[-3000:] + clinic.stderr[-3000:]
    played = records(tmp_path / "clinic")
    assert sorted(r["case_id"] for r in played) == ["1", "2", "3"] and {r["mode"] for r in played} == {
        "single"
    }  # no static mode: AgentClinic cases have no options
    assert all(r["model_calls"] >= 2 and r["turns"] >= 1 for r in played)
    # No echoed diagnosis names its case: each went on to the judge model's constrained Y/N, which decided.
    assert all(r["verdict"]["method"] == "judge" for r in played if not r["correct"])
    assert all(r["verdict"]["similarity"] is not None for r in played)  # the MiniLM step ran before the judge
    manifest = json.loads((tmp_path / "clinic" / "run.json").read_text())
    assert manifest["config"]["judge_model"].startswith(embedded_server.base_url)
    report = (tmp_path / "clinic" / "report.md").read_text(encoding="utf-8")
    assert "### 1: Myasthenia gravis" in report and "Doctor (" in report
    # A resume keeps the run's judge without its flags, and refuses another.
    kept = bench(cli, "--resume", str(tmp_path / "clinic"))
    assert kept.returncode == 0, kept.stderr[-3000:]
    recorded = manifest["config"]["judge_model"]
    assert json.loads((tmp_path / "clinic" / "run.json").read_text())["config"]["judge_model"] == recorded
    manifest["config"]["judge_model"] = "http://127.0.0.1:9/v1#" + recorded.rpartition("#")[2]
    (tmp_path / "clinic" / "run.json").write_text(json.dumps(manifest))
    other = bench(cli, "--resume", str(tmp_path / "clinic"), *judge)
    assert other.returncode != 0 and "was judged by http://127.0.0.1:9/v1#" in " ".join(other.stderr.split())

    medqa = bench(cli, "--episodes", str(MEDQA), *common, "--out", str(tmp_path / "medqa"))
    assert medqa.returncode == 0, medqa.stdout[-3000:] + medqa.stderr[-3000:]
    modes = sorted((r["case_id"], r["mode"]) for r in records(tmp_path / "medqa"))
    assert modes == sorted((str(n), m) for n in range(3) for m in ("single", "static:single"))
    report = (tmp_path / "medqa" / "report.md").read_text(encoding="utf-8")
    assert "## Static vs interactive (same items)" in report and "| static:single | single | 3 |" in report
    assert "static vs interactive: static:single" in medqa.stdout
    # Every interactive record has a letter among the options or none: the options were a constrained choice.
    assert all(r["letter"] in (None, "A", "B", "C", "D") for r in records(tmp_path / "medqa"))

    # A finished run resumed does nothing more; the report is the same run's.
    again = bench(cli, "--resume", str(tmp_path / "medqa"))
    assert again.returncode == 0 and len(records(tmp_path / "medqa")) == 6


def test_a_korean_case_goes_through_the_real_translator(
    cli: list[str], embedded_server: ServerState, tmp_path: Path
) -> None:
    done = bench(
        cli,
        "--episodes",
        str(FIXTURE),
        "--mode",
        "single",
        "--budget",
        "1",
        "--endpoint",
        embedded_server.base_url,
        "--out",
        str(tmp_path / "ko"),
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    [record] = records(tmp_path / "ko")
    support = record["interview"]["support"]
    # Opening and objective went to English (and a Korean reply, if any, came back), all costed in the episode.
    assert len(support) >= 2 and all(turn["agent"] == "translator" for turn in support)
    doctor_prompt = record["interview"]["doctor_episodes"][0]["question"]["text"]
    opening_turn = support[0]["content"]
    if opening_turn.startswith("Not translated ("):  # the 270M gives its prompt back: the source is passed on
        assert "24세" in doctor_prompt and "Translate the following" not in doctor_prompt
    else:  # the doctor reads the translation, not the Korean opening
        assert "24세" not in doctor_prompt

"""``medcouncil arena`` as a user runs it, on the real embedded server: answers journaled, a kill -9 mid-run, a
resume that answers nothing twice, both judges, the report, and a resume held to its judge model."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from medcouncil.serving.state import ServerState

pytestmark = pytest.mark.integration
ENV = {**os.environ, "COLUMNS": "200"}
ITEMS = [
    {"id": "wheeze", "prompt": "Episodic wheeze relieved by salbutamol. Diagnosis?", "reference": "Asthma"},
    {"id": "chest", "prompt": "Crushing chest pain and ST elevation in II, III, aVF. Diagnosis?",
     "reference": "Inferior myocardial infarction"},
]  # fmt: skip


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]


def test_kill_9_then_resume_answers_once_and_rates_with_both_judges(
    cli: list[str], embedded_server: ServerState, tmp_path: Path
) -> None:
    items = tmp_path / "open.jsonl"
    items.write_text("".join(json.dumps(item) + "\n" for item in ITEMS))
    out = tmp_path / "arena"
    args = ["--endpoint", embedded_server.base_url, "--no-cache"]
    process = subprocess.Popen(
        [*cli, "arena", "--items", str(items), "-c", "single,cot", "--judge", "model", "--judge", "reference",
         "--out", str(out), *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=ENV,
    )  # fmt: skip
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        if (out / "answers.jsonl").exists() and len(lines(out / "answers.jsonl")) >= 2:
            break
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    before = lines(out / "answers.jsonl")
    assert 2 <= len(before) < 4, "the run should have been killed part-way"
    resumed = subprocess.run(
        [*cli, "arena", "--resume", str(out), *args], capture_output=True, text=True, timeout=900, env=ENV
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming: {len(before)} answers already journaled, {4 - len(before)} to go" in " ".join(
        resumed.stderr.split()
    )
    answers = lines(out / "answers.jsonl")
    keys = [(a["item_id"], a["contestant"]) for a in answers]
    assert len(keys) == 4 and len(set(keys)) == 4
    assert answers[: len(before)] == before
    judgements = lines(out / "judgements.jsonl")
    by_judge = {j: [x for x in judgements if x["judge"] == j] for j in ("model", "reference")}
    assert len(by_judge["model"]) == 2 and all(len(x["orders"]) == 2 for x in by_judge["model"])
    assert len(by_judge["reference"]) == 2
    manifest = json.loads((out / "arena.json").read_text())
    assert manifest["finished"] and manifest["config"]["model"] == embedded_server.served_model_name
    report = (out / "report.md").read_text()
    assert "## Judge: model" in report and "## Judge: reference" in report and "position consistency" in report
    assert "judge: model" in resumed.stdout and "report:" in resumed.stdout
    again = subprocess.run(
        [*cli, "arena", "--resume", str(out), *args], capture_output=True, text=True, timeout=300, env=ENV
    )
    assert again.returncode == 0 and lines(out / "judgements.jsonl") == judgements
    # The judge is held by name and URLs: a pool that also had another replica is the same judge, a model served
    # elsewhere (no URL in common, weights unknown) is not.
    name = embedded_server.served_model_name
    assert manifest["config"]["judge_identity"] == f"{embedded_server.base_url}#{name}"
    for recorded, accepted in ((f"http://127.0.0.1:9/v1,{embedded_server.base_url}#{name}", True),
                               (f"http://127.0.0.1:9/v1#{name}", False)):  # fmt: skip
        manifest["config"]["judge_identity"], manifest["finished"] = recorded, False
        (out / "arena.json").write_text(json.dumps(manifest))
        last = by_judge["model"][-1]["item_id"]
        unjudged = [
            json.dumps(j) for j in lines(out / "judgements.jsonl") if (j["judge"], j["item_id"]) != ("model", last)
        ]
        (out / "judgements.jsonl").write_text("".join(line + "\n" for line in unjudged))  # a pair left to judge
        judged = subprocess.run(
            [*cli, "arena", "--resume", str(out), *args], capture_output=True, text=True, timeout=300, env=ENV
        )
        refusal = f"was judged by http://127.0.0.1:9/v1#{name}, not {embedded_server.base_url}#{name}"
        assert (judged.returncode == 0) == accepted and (refusal in " ".join(judged.stderr.split())) != accepted

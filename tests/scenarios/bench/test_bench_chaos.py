"""Chaos: ``kill -9`` of a bench at random moments, resume, repeat; every item is answered exactly once."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest

from medcouncil.serving.state import ServerState

pytestmark = pytest.mark.integration
ITEMS = 6
MODES = ("single", "single+cyclic")


def _data(path: Path) -> Path:
    rows = [
        {
            "id": f"c{n}",
            "question": f"Item {n}: which organ pumps blood around the body?",
            "options": {"A": "Heart", "B": "Liver", "C": "Kidney", "D": "Lung"},
            "answer": "A",
        }
        for n in range(ITEMS)
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_kill_9_at_random_points_then_resume_answers_every_item_exactly_once(
    cli: list[str], embedded_server: ServerState, tmp_path: Path
) -> None:
    rng = random.Random(20261130)
    out = tmp_path / "run"
    data = _data(tmp_path / "items.jsonl")
    first = [
        *cli,
        "bench",
        "--dataset",
        str(data),
        "--mode",
        ",".join(MODES),
        "--out",
        str(out),
        "--no-cache",
        "--endpoint",
        embedded_server.base_url,
    ]
    resume = [*cli, "bench", "--resume", str(out), "--endpoint", embedded_server.base_url]
    env = {**os.environ, "COLUMNS": "200"}
    kills = 0
    for round_number in range(6):
        command = first if not (out / "run.json").exists() else resume
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        time.sleep(rng.uniform(2.5, 7.0))  # start-up takes ~3 s: some kills land before any answer, most mid-run
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            kills += 1
        process.wait()
        if round_number >= 1 and process.returncode == 0:
            break
    final = subprocess.run(resume, capture_output=True, text=True, timeout=600, env=env)
    assert final.returncode == 0, final.stderr[-2000:]
    assert kills >= 2
    lines = (out / "samples.jsonl").read_bytes().split(b"\n")
    assert lines[-1] == b""  # no cut line left behind
    keys = [(json.loads(line)["sample_id"], json.loads(line)["mode"]) for line in lines[:-1]]
    assert len(keys) == len(set(keys)) == ITEMS * len(MODES)  # each answered exactly once, none lost
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["finished"] and manifest["config"]["cache"] is False  # the cold run stayed cold on resume


def test_sigterm_stops_a_bench_with_the_resume_hint(
    cli: list[str], embedded_server: ServerState, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    command = [
        *cli,
        "bench",
        "--dataset",
        str(_data(tmp_path / "items.jsonl")),
        "--mode",
        "single,cot",
        "--out",
        str(out),
        "--no-cache",
        "--endpoint",
        embedded_server.base_url,
    ]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "COLUMNS": "200"}
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (out / "samples.jsonl").exists():
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode != 0 and "Traceback" not in stderr
    assert f"medcouncil bench --resume {out}" in stderr.replace("\n", ""), stderr[-2000:]

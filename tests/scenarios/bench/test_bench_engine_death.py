"""A bench whose engine is killed mid-run (SIGKILL, as the out-of-memory killer does) stops at once with the engine
named, journals the failure, counts nothing as wrong, and a resume finishes every item exactly once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from medcouncil.serving.state import read_state
from tests.conftest import SHARED

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not (SHARED / "data").is_dir(), reason="../shared/data is not beside the project"),
]
MEDQA = SHARED / "data" / "mcqa" / "medqa.test.jsonl"


def env() -> dict[str, str]:
    """Read at call time: the session fixture sets MEDCOUNCIL_HOME after this module is imported."""
    return {**os.environ, "COLUMNS": "200"}


def _lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]


@pytest.fixture
def detached(cli: list[str]) -> Iterator[None]:
    """A clean slate, and no server left behind whatever happens."""
    subprocess.run([*cli, "serve", "--stop"], capture_output=True, timeout=120)
    yield
    subprocess.run([*cli, "serve", "--stop"], capture_output=True, timeout=120)


def test_a_killed_engine_stops_the_run_and_a_resume_finishes_it(cli: list[str], tmp_path: Path, detached: None) -> None:
    started = subprocess.run([*cli, "serve", "--detach"], capture_output=True, text=True, timeout=300)
    assert started.returncode == 0, started.stderr
    state = read_state()
    assert state is not None and state.engine_pid is not None
    out = tmp_path / "run"
    args = ["bench", "--dataset", str(MEDQA), "--limit", "2", "--mode", "single,council", "--no-cache"]
    log = tmp_path / "stderr.txt"
    with log.open("w") as sink:  # a file, not a pipe: the progress bar would fill a pipe nobody reads yet
        run = subprocess.Popen([*cli, *args, "--out", str(out)], stdout=subprocess.DEVNULL, stderr=sink, env=env())
    deadline = time.monotonic() + 300
    while not _lines(out / "samples.jsonl") and time.monotonic() < deadline and run.poll() is None:
        time.sleep(0.2)
    assert _lines(out / "samples.jsonl"), "no answer was journaled before the kill"
    time.sleep(1.0)  # into the next request
    os.kill(state.engine_pid, signal.SIGKILL)
    run.wait(timeout=300)
    stderr = log.read_text()

    assert run.returncode == 1 and "Traceback" not in stderr, stderr[-3000:]
    named = f"the llama.cpp engine (pid {state.engine_pid}) killed by SIGKILL"
    assert "stopped early" in stderr and named in stderr, stderr[-3000:]
    assert f"bench --resume {out}" in stderr.replace("\n", "")
    errors = _lines(out / "errors.jsonl")
    assert errors and all(named in str(e["error"]) for e in errors)
    assert len(errors) <= 2, "a dead engine is not retried"  # one per worker in flight at most
    finished = _lines(out / "samples.jsonl")
    assert all(r["failure"] is None for r in finished), "the death is not scored as a wrong answer"

    # The recorded server is gone: the next command says so rather than switch to another model.
    refused = subprocess.run(
        [*cli, *args, "--resume", str(out)], capture_output=True, text=True, env=env(), timeout=300
    )
    assert refused.returncode == 1 and named in refused.stderr.splitlines()[0], refused.stderr
    assert subprocess.run([*cli, "serve", "--stop"], capture_output=True, timeout=120).returncode == 0

    resumed = subprocess.run(
        [*cli, "bench", "--resume", str(out)], capture_output=True, text=True, env=env(), timeout=900
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    keys = Counter((str(r["sample_id"]), str(r["mode"])) for r in _lines(out / "samples.jsonl"))
    assert sorted(keys) == sorted((str(n), m) for n in range(2) for m in ("single", "council"))
    assert set(keys.values()) == {1}, "an item was answered twice"

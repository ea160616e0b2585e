"""A bench over a pool of two real llama.cpp servers on loopback: one is killed with ``kill -9`` mid-run and every
item is still answered exactly once, by the other, in one run; the answers are the same as with one replica."""

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

from medcouncil.serving.config import EngineConfig
from medcouncil.serving.server import EngineServer
from medcouncil.serving.state import ServerState
from tests.conftest import SHARED

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not (SHARED / "data").is_dir(), reason="../shared/data is not beside the project"),
]
MMLU = SHARED / "data" / "mcqa" / "mmlu.test.jsonl"
ITEMS = 8


@pytest.fixture
def replicas() -> Iterator[list[ServerState]]:
    servers = [EngineServer(EngineConfig(threads=1)) for _ in range(2)]
    try:
        yield [server.start() for server in servers]
    finally:
        for server in servers:
            server.stop()


def samples(run: Path) -> list[dict[str, Any]]:
    path = run / "samples.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")] if path.exists() else []


def answers(run: Path) -> dict[str, tuple[object, object]]:
    return {
        str(r["sample_id"]): (r["letter"], {k: round(float(v), 4) for k, v in dict(r["probabilities"]).items()})
        for r in samples(run)
    }


def bench(cli: list[str], out: Path, *endpoints: str) -> list[str]:
    args = [*cli, "bench", "--dataset", str(MMLU), "--limit", str(ITEMS), "--mode", "single", "--no-cache"]
    args += ["--concurrency", "2", "--out", str(out)]
    for url in endpoints:
        args += ["--endpoint", url]
    return args


def test_a_replica_killed_mid_run_loses_no_item_and_changes_no_answer(
    cli: list[str], replicas: list[ServerState], tmp_path: Path
) -> None:
    assert MMLU.is_file()
    pooled, alone = tmp_path / "pooled", tmp_path / "alone"
    log = tmp_path / "stderr.txt"
    env = {**os.environ, "COLUMNS": "200"}
    with log.open("w") as sink:
        run = subprocess.Popen(
            bench(cli, pooled, *(r.base_url for r in replicas)), stdout=subprocess.DEVNULL, stderr=sink, env=env
        )
    deadline = time.monotonic() + 300
    while len(samples(pooled)) < 2 and time.monotonic() < deadline and run.poll() is None:
        time.sleep(0.1)
    assert len(samples(pooled)) >= 2, log.read_text()[-2000:]
    victim = replicas[1]
    assert victim.engine_pid is not None
    os.kill(victim.engine_pid, signal.SIGKILL)
    run.wait(timeout=600)
    stderr = log.read_text()
    assert run.returncode == 0 and "Traceback" not in stderr, stderr[-3000:]
    assert f"replica {victim.base_url} taken out" in stderr.replace("\n", "")
    counts = Counter(str(r["sample_id"]) for r in samples(pooled))
    assert len(counts) == ITEMS and set(counts.values()) == {1}, counts  # every item, each exactly once
    assert all(r["failure"] is None for r in samples(pooled))
    assert not (pooled / "errors.jsonl").exists() or not (pooled / "errors.jsonl").read_text().strip()

    done = subprocess.run(bench(cli, alone, replicas[0].base_url), capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert answers(alone) == answers(pooled)  # the same letters and probabilities with one replica or two
    recorded = {run: json.loads((run / "run.json").read_text())["config"]["endpoint"] for run in (pooled, alone)}
    assert recorded == {pooled: ",".join(r.base_url for r in replicas), alone: replicas[0].base_url}

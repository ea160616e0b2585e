"""Benchmark of ``medcouncil chat``'s start-up, with the engine already running and with it started automatically.

Run ``python -m tests.benchmarks.bench_startup [--trials 3]`` (needs the dev extra: pexpect). Each trial
spawns ``medcouncil chat --no-cache`` in a pseudo-terminal, types a question as soon as the prompt shows, and times
the prompt (from the command's start) and the diagnostician's first token (from the question being typed; the
knowledge base loads in the background meanwhile). The two set-ups alternate trial by trial (running, auto-start,
running, ...), medians are printed against the goals: prompt <= 2 s with the engine running, <= 4 s with
auto-start; first diagnostician token <= 4 s.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from medcouncil.serving.common.console import console

QUESTION = "A 24-year-old has episodic wheeze relieved by salbutamol. Diagnosis?"
GOALS = {"running": (2.0, 4.0), "auto-start": (4.0, 4.0)}
"""Seconds: (prompt, first diagnostician token) per set-up."""


def _trial(executable: str, args: list[str]) -> tuple[float, float]:
    import pexpect

    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "140", "TERM": "xterm"}
    started = time.monotonic()
    child = pexpect.spawn(executable, ["chat", "--no-cache", *args], env=env, encoding="utf-8", timeout=300)
    child.expect("you ›")
    prompt = time.monotonic() - started
    typed = time.monotonic()
    child.sendline(QUESTION)
    child.expect("diagnostician ›")
    child.expect(r"\S")
    first = time.monotonic() - typed
    child.sendintr()
    child.expect("turn cancelled")
    child.sendline("/quit")
    child.expect(pexpect.EOF)
    return prompt, first


def main(trials: Annotated[int, typer.Option(min=1)] = 3) -> None:
    executable = shutil.which("medcouncil") or str(Path(sys.executable).parent / "medcouncil")
    from medcouncil.serving.config import EngineConfig
    from medcouncil.serving.server import EngineServer

    subprocess.run([executable, "serve", "--stop"], capture_output=True, check=False)  # nothing recorded
    _trial(executable, [])  # warm-up: the embedded GGUF assembled, the store seeded, files in the page cache
    # The running engine is this process's (not recorded), so the auto-start trials still start their own.
    server = EngineServer(EngineConfig())
    url = server.start().base_url
    results: dict[str, list[tuple[float, float]]] = {"running": [], "auto-start": []}
    try:
        for _ in range(trials):
            results["running"].append(_trial(executable, ["--endpoint", url]))
            results["auto-start"].append(_trial(executable, []))
    finally:
        server.stop()
    for setup, runs in results.items():
        prompt = statistics.median(r[0] for r in runs)
        first = statistics.median(r[1] for r in runs)
        goal_prompt, goal_first = GOALS[setup]
        console.print(
            f"chat start-up, engine {setup}, median of {trials}: prompt after {prompt:.2f} s (goal <= "
            f"{goal_prompt:.0f} s: {'met' if prompt <= goal_prompt else 'missed'}); first diagnostician "
            f"token {first:.2f} s after the question (goal <= {goal_first:.0f} s: "
            f"{'met' if first <= goal_first else 'missed'})",
            markup=False,
        )


if __name__ == "__main__":
    typer.run(main)

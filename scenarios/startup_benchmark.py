"""Benchmark of ``medcouncil chat``'s start-up with the embedded model started automatically.

Run ``python -m medcouncil.scenarios.startup_benchmark [--trials 3]`` (needs the dev extra: pexpect). Each trial
spawns ``medcouncil chat --no-cache`` in a pseudo-terminal and prints, as medians: seconds until the prompt is
shown (goal <= 5 s: the knowledge base loads in the background) and until the diagnostician's first token when a
question is typed at once (which then waits for the knowledge base).
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from medcouncil.serving.console import console

QUESTION = "A 24-year-old has episodic wheeze relieved by salbutamol. Diagnosis?"


def _trial(executable: str) -> tuple[float, float]:
    import pexpect

    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "140", "TERM": "xterm"}
    started = time.monotonic()
    child = pexpect.spawn(executable, ["chat", "--no-cache"], env=env, encoding="utf-8", timeout=300)
    child.expect("you ›")
    prompt = time.monotonic() - started
    child.sendline(QUESTION)
    child.expect("diagnostician ›")
    child.expect(r"\S")
    first = time.monotonic() - started
    child.sendintr()
    child.expect("turn cancelled")
    child.sendline("/quit")
    child.expect(pexpect.EOF)
    return prompt, first


def main(trials: Annotated[int, typer.Option(min=1)] = 3) -> None:
    executable = shutil.which("medcouncil") or str(Path(sys.executable).parent / "medcouncil")
    _trial(executable)  # warm-up: the embedded GGUF assembled, the store seeded, files in the page cache
    results = [_trial(executable) for _ in range(trials)]
    prompt = statistics.median(r[0] for r in results)
    first = statistics.median(r[1] for r in results)
    console.print(f"chat start-up, median of {trials}: prompt after {prompt:.1f} s (goal <= 5 s: "
                  f"{'met' if prompt <= 5 else 'missed'}); first diagnostician token after {first:.1f} s")  # fmt: skip


if __name__ == "__main__":
    typer.run(main)

"""Training on 1 process against 2 (torchrun, gloo, CPU): ``python -m tests.benchmarks.bench_processes [--steps 6]
[--trials 2] [--method lora|full]``.

``medcouncil finetune`` trains the embedded Gemma 3 270M on MedQA's first items with the same global batch
(``--global-batch``, so both sides take the same micro-batches and reach the same weights) on three sides:
1 process of 1 thread, 2 processes of 1 thread each (each as it would have a GPU of its own), and 1 process of 2
threads (the whole machine, as a user without a launcher would run it). ``--method full`` trains every weight,
sharded by FSDP on the 2-process side. The sides alternate within a trial and the medians over ``--trials`` of
the training tokens per second (the run card's: tokens over training seconds, loading excluded) are printed, with
the ratios to 1 process of 1 thread.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Annotated

import typer

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "mcqa" / "medqa.test.jsonl"
SIDES = {"1 process x 1 thread": (1, 1), "2 processes x 1 thread": (2, 1), "1 process x 2 threads": (1, 2)}


def train_once(processes: int, threads: int, args: list[str], out: Path) -> tuple[float, float]:
    """(training tokens/s, last loss) of one run."""
    module = ["-m", "medcouncil.scenarios.cli", "finetune", *args, "--threads", str(threads), "--out", str(out)]
    if processes == 1:
        command = [sys.executable, *module]
    else:
        torchrun = str(Path(sys.executable).with_name("torchrun"))
        command = [torchrun, "--standalone", f"--nproc-per-node={processes}", *module]
        if "full" in args:
            command.append("--fsdp")
    done = subprocess.run(command, capture_output=True, text=True, timeout=7200)
    if done.returncode != 0:
        raise SystemExit(f"finetune failed: {done.stderr[-2000:]}")
    card = json.loads((out / "run.json").read_text())
    return card["tokens"] / card["train_seconds"], card["steps"][-1]["loss"]


def main(
    steps: Annotated[int, typer.Option(help="Optimizer steps per run.")] = 6,
    trials: Annotated[int, typer.Option(help="Trials per side (interleaved).")] = 2,
    global_batch: Annotated[int, typer.Option(help="Examples per step (micro-batches of 2).")] = 8,
    method: Annotated[str, typer.Option(help="lora, or full (FSDP on 2 processes).")] = "lora",
) -> None:
    args = ["--data", str(DATA), "--limit", str(steps * global_batch + 4), "--max-steps", str(steps)]
    args += ["--batch-size", "2", "--global-batch", str(global_batch), "--max-seq-len", "256"]
    args += ["--method", method, "--eval-every", "1000"] + (["--lr", "1e-5"] if method == "full" else [])
    speeds: dict[str, list[float]] = {}
    losses: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for trial in range(trials):
            for name, (processes, threads) in SIDES.items():
                out = Path(scratch) / f"{processes}-{threads}-{trial}"
                speed, losses[name] = train_once(processes, threads, args, out)
                speeds.setdefault(name, []).append(speed)
                print(f"trial {trial + 1}/{trials} {name}: {speed:.1f} tok/s", file=sys.stderr)
    base = statistics.median(speeds["1 process x 1 thread"])
    print(f"| {method}, global batch {global_batch}, {steps} steps | tokens/s | ratio | last loss | trials {trials} |")
    print("|---|---|---|---|---|")
    for name, values in speeds.items():
        median = statistics.median(values)
        print(f"| {name} | {median:.1f} | {median / base:.2f}x | {losses[name]:.6f} | |")


if __name__ == "__main__":
    typer.run(main)

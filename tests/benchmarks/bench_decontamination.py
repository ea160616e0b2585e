"""Decontamination with and without the evaluation sets' cached vectors:
``python -m tests.benchmarks.bench_decontamination [--items 600] [--trials 2]``.

MedMCQA dev items against every local evaluation set (the shipped MiniLM encoder), as ``data build`` and
``federate`` run it. Cold (an empty cache folder: every evaluation question encoded) and warm (the vectors of a
previous run) trials interleaved, cold, warm, cold, warm...; medians and their ratio. Both must drop the same items.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Annotated

import typer

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def main(
    items: Annotated[int, typer.Option(help="MedMCQA dev items checked.")] = 600,
    trials: Annotated[int, typer.Option(help="Interleaved cold and warm trials.")] = 2,
) -> None:
    from medcouncil.scenarios.datasets.registry import load_dataset
    from medcouncil.scenarios.training import decontamination as decon
    from medcouncil.tools.embeddings import build_embedder

    samples, _ = load_dataset(str(SHARED / "raw" / "medmcqa_dev.jsonl"))
    samples = samples[:items]
    evals = decon.local_eval_sets(SHARED)
    embedder = build_embedder()
    times: dict[str, list[float]] = {"cold": [], "warm": []}
    dropped: set[int] = set()
    with tempfile.TemporaryDirectory() as home:
        for trial in range(trials):
            os.environ["MEDCOUNCIL_HOME"] = str(Path(home) / f"cold-{trial}")
            for kind in ("cold", "warm"):
                started = time.monotonic()
                clean, _ = decon.decontaminate(samples, evals, embedder)
                times[kind].append(time.monotonic() - started)
                dropped.add(len(samples) - len(clean))
                print(f"trial {trial} {kind}: {times[kind][-1]:.1f} s, {len(samples) - len(clean)} dropped", flush=True)
    cold, warm = statistics.median(times["cold"]), statistics.median(times["warm"])
    print(
        f"{items} items against {len(evals)} evaluation questions: "
        f"cold {cold:.1f} s, warm {warm:.1f} s ({cold / warm:.1f}x)"
    )
    if len(dropped) != 1:
        raise SystemExit(f"cold and warm runs dropped different counts: {sorted(dropped)}")


if __name__ == "__main__":
    typer.run(main)

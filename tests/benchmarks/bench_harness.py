"""Benchmark of the benchmark harness on the embedded server.

Run ``python -m tests.benchmarks.bench_harness [--items 8] [--council-items 4]``. It prints:

* the server's own saturation throughput: the single-mode request of each item (one constrained choice) sent
  straight to the server, 4 at a time, no harness (questions/s);
* the harness in single mode at concurrency K = 1, 2, 4 (questions/s and the ratio to saturation), cache off;
* cold vs warm cache: the same single + council run twice with the LLM cache on, in a fresh cache (wall-time ratio;
  goal >= 50x) and whether the answers are identical;
* tokens and model calls per question per mode (goal: council <= 4k tokens and <= 6 calls per MedQA question).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import typer
from autogen_core.models import UserMessage
from rich.table import Table

from medcouncil.scenarios.bench.harness import Item
from medcouncil.serving.client import ModelClient
from medcouncil.serving.common.console import console
from medcouncil.tools.mcqa import format_mcqa

MEDQA = "medqa"


async def _saturation(items: Sequence[Item], base: ModelClient) -> float:
    """Questions/s of the single-mode requests sent straight to the server, 4 at a time (no harness)."""
    semaphore = asyncio.Semaphore(4)

    async def one(item: Item) -> None:
        assert item.question.options is not None
        prompt = format_mcqa(item.question.text, item.question.options)
        async with semaphore:
            await base.choose([UserMessage(content=prompt, source="user")], list(item.question.options))

    started = time.perf_counter()
    await asyncio.gather(*(one(item) for item in items))
    return len(items) / (time.perf_counter() - started)


async def _run(items_n: int, council_n: int, reps: int, root: Path) -> None:
    from medcouncil.agents.build import open_answerers
    from medcouncil.agents.protocol import Answerer
    from medcouncil.scenarios.bench.harness import Harness, prepare
    from medcouncil.scenarios.bench.journal import Journal, Record, read_records
    from medcouncil.scenarios.bench.modes import build, setting_for
    from medcouncil.scenarios.datasets.registry import load_dataset
    from medcouncil.serving.components import ClientSettings
    from medcouncil.serving.session import ModelSource

    samples, _ = load_dataset(MEDQA)
    items = [prepare(sample) for sample in samples[: max(items_n, council_n)]]
    source = ModelSource()
    throughput = Table(title=f"harness throughput, single mode, {items_n} MedQA items, cache off, median of {reps}")
    for column in ("run", "questions/s", "range", "ratio to saturation"):
        throughput.add_column(column, justify="left" if column == "run" else "right")
    async with open_answerers(source, ClientSettings(cache=False), notice=lambda _: None) as answerers:
        await _saturation(items[:2], answerers.model)  # warm-up
        rates: dict[str, list[float]] = {}
        for rep in range(reps):  # interleaved repetitions: this 2-core machine's noise hits every run alike
            rates.setdefault("server alone, 4 at a time", []).append(
                await _saturation(items[:items_n], answerers.model)
            )
            for k in (1, 2, 4):
                journal = Journal(root / f"k{k}-{rep}")
                harness = Harness(journal, ["single"], lambda: build(setting_for(answerers), ["single"]), concurrency=k)
                started = time.perf_counter()
                await harness.run(harness.pending(items[:items_n]))
                rates.setdefault(f"harness K={k}", []).append(items_n / (time.perf_counter() - started))
    saturation = statistics.median(rates["server alone, 4 at a time"])
    for name, values in rates.items():
        rate = statistics.median(values)
        spread = f"{min(values):.3f}–{max(values):.3f}"
        throughput.add_row(name, f"{rate:.3f}", spread, f"{rate / saturation:.2f}")
    console.print(throughput)

    cache = Table(title=f"cold vs warm LLM cache: single + council + gated, {council_n} MedQA items, fresh cache")
    for column in ("run", "wall s", "speed-up", "identical answers"):
        cache.add_column(column, justify="left" if column == "run" else "right")
    walls: list[float] = []
    runs: list[list[Record]] = []
    modes = ["single", "council", "gated"]
    async with open_answerers(source, ClientSettings(cache=True), notice=lambda _: None) as answerers:

        def per_worker() -> dict[str, Answerer]:
            return build(setting_for(answerers), modes)

        for name in ("cold", "warm"):
            harness = Harness(Journal(root / name), modes, per_worker)
            started = time.perf_counter()
            await harness.run(harness.pending(items[:council_n]))
            walls.append(time.perf_counter() - started)
            runs.append(sorted(read_records(root / name), key=lambda r: r.key))
    same = [(a.letter, a.probabilities) == (b.letter, b.probabilities) for a, b in zip(*runs, strict=True)]
    cache.add_row("cold", f"{walls[0]:.1f}", "", "")
    cache.add_row("warm", f"{walls[1]:.2f}", f"{walls[0] / walls[1]:.0f}x", f"{sum(same)}/{len(same)}")
    console.print(cache)

    cost = Table(title="cost per MedQA question (cold run)")
    for column in ("mode", "tokens mean", "tokens max", "calls mean", "calls max", "latency s", "escalated"):
        cost.add_column(column, justify="left" if column == "mode" else "right")
    for mode in modes:
        records = [r for r in runs[0] if r.mode == mode]
        escalated = [r.escalated for r in records if r.escalated is not None]
        cost.add_row(
            mode,
            f"{statistics.mean(r.tokens for r in records):.0f}",
            str(max(r.tokens for r in records)),
            f"{statistics.mean(r.model_calls for r in records):.2f}",
            str(max(r.model_calls for r in records)),
            f"{statistics.mean(r.latency_s for r in records):.1f}",
            f"{sum(escalated)}/{len(escalated)}" if escalated else "",
        )
    console.print(cost)


def main(
    items: Annotated[int, typer.Option(help="Items for the throughput runs.")] = 8,
    council_items: Annotated[int, typer.Option(help="Items for the cache and cost runs.")] = 4,
    reps: Annotated[int, typer.Option(help="Repetitions of the throughput runs.")] = 3,
) -> None:
    """Run the harness benchmark in a temporary MEDCOUNCIL_HOME (fresh LLM cache) and print its tables."""
    with tempfile.TemporaryDirectory(prefix="medcouncil-bench-") as home:
        os.environ["MEDCOUNCIL_HOME"] = home
        asyncio.run(_run(items, council_items, reps, Path(home) / "runs"))


if __name__ == "__main__":
    typer.run(main)

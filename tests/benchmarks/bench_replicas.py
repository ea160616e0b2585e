"""One replica against a pool of two: ``python -m tests.benchmarks.bench_replicas [--single-items 12]
[--council-items 2] [--trials 2]``.

Two embedded llama.cpp servers (Gemma 3 270M, one thread each, so that each replica has a core of its own as each
would have a GPU) answer ``medcouncil bench`` on MMLU's first items with ``--no-cache`` and ``--concurrency 2``:
``--mode single`` and ``--mode council`` against one replica and against both (``--endpoint`` twice). The sides
alternate (one, two, one, two, ...) and the medians over ``--trials`` are printed as items per second with the
ratio. Beside them, each side's saturation throughput: ``--saturation`` chat requests of 32 tokens sent 4 at a
time straight to the replicas (completion tokens per second), the most the engines can give whatever the client.
"""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Annotated

import typer

from medcouncil.serving.config import EngineConfig
from medcouncil.serving.server import EngineServer

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "mcqa" / "mmlu.test.jsonl"
CLI = str(Path(sys.executable).parent / "medcouncil")


def bench_once(urls: list[str], mode: str, items: int, out: Path) -> float:
    """Items per second of one ``medcouncil bench`` run."""
    args = [CLI, "bench", "--dataset", str(DATA), "--limit", str(items), "--mode", mode, "--no-cache"]
    args += ["--concurrency", "2", "--out", str(out)]
    for url in urls:
        args += ["--endpoint", url]
    started = time.perf_counter()
    done = subprocess.run(args, capture_output=True, text=True, timeout=7200)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"bench failed: {done.stderr[-2000:]}")
    return items / elapsed


async def saturate(urls: list[str], requests: int) -> float:
    """Completion tokens per second of ``requests`` chat calls, 4 in flight, spread over ``urls`` in turn."""
    import httpx

    semaphore = asyncio.Semaphore(4)
    tokens = 0

    async def one(client: httpx.AsyncClient, n: int) -> None:
        nonlocal tokens
        body = {
            "model": "gemma-3-270m",
            "messages": [{"role": "user", "content": f"Question {n}: name three causes of chest pain."}],
            "max_tokens": 32,
            "temperature": 0.0,
        }
        async with semaphore:
            response = await client.post(urls[n % len(urls)] + "/chat/completions", json=body, timeout=600)
        tokens += int(response.json()["usage"]["completion_tokens"])

    async with httpx.AsyncClient() as client:
        started = time.perf_counter()
        await asyncio.gather(*(one(client, n) for n in range(requests)))
        return tokens / (time.perf_counter() - started)


def main(
    single_items: Annotated[int, typer.Option(help="Items of the single-mode runs.")] = 12,
    council_items: Annotated[int, typer.Option(help="Items of the council runs (0: skip).")] = 2,
    trials: Annotated[int, typer.Option(help="Trials per side (interleaved).")] = 2,
    saturation: Annotated[int, typer.Option(help="Chat requests of the saturation runs.")] = 16,
) -> None:
    servers = [EngineServer(EngineConfig(threads=1)) for _ in range(2)]
    try:
        urls = [server.start().base_url for server in servers]
        sides = {"1 replica": urls[:1], "2 replicas": urls}
        results: dict[tuple[str, str], list[float]] = {}
        with tempfile.TemporaryDirectory() as scratch:
            for trial in range(trials):
                for name, pool in sides.items():
                    results.setdefault(("saturation tok/s", name), []).append(asyncio.run(saturate(pool, saturation)))
                    for mode, items in (("single", single_items), ("council", council_items)):
                        if items:
                            out = Path(scratch) / f"{mode}-{len(pool)}-{trial}"
                            results.setdefault((f"{mode} items/s", name), []).append(bench_once(pool, mode, items, out))
                    print(f"trial {trial + 1}/{trials} {name} done", file=sys.stderr)
        print(f"| measure | 1 replica | 2 replicas | ratio | trials {trials} |")
        print("|---|---|---|---|---|")
        for measure in dict.fromkeys(key[0] for key in results):
            one = statistics.median(results[(measure, "1 replica")])
            two = statistics.median(results[(measure, "2 replicas")])
            print(f"| {measure} | {one:.3f} | {two:.3f} | {two / one:.2f}x | |")
    finally:
        for server in servers:
            server.stop()


if __name__ == "__main__":
    typer.run(main)

"""Serving benchmark: is the OpenAI-API server as fast as llama.cpp in-process, and how fast do we start?

Run ``python -m tests.benchmarks.bench_serving`` (``--help`` for options). It prints, in one run:

* decode and prefill tokens/s of llama.cpp in-process vs the same model and settings through the server's OpenAI
  API (``/v1/completions``, streamed), their trials interleaved, with their ratio (goal >= 0.9);
* the time from ``medcouncil serve --detach`` to a healthy endpoint;
* first-token latency of ``medcouncil ask`` against a running server and with auto-start;
* the cost of keeping llama.cpp's extra weight buffer types off (the default, for AMX CPUs: ``llama_engine.py``):
  two servers, off and on, their trials interleaved (off, on, off, on, ...).
* what computing the vocabulary logits of each decode's last token only saves (``apply_last_row_logits``), in
  process: a prompt answered with one constrained-style token and its log-probabilities (the engine's work for a
  letter answer), then the same request again with the prompt cached; every position's logits (llama-cpp-python's
  own) and the last row's interleaved.

Prefill is measured as time to the first streamed token over the prompt's tokens; decode as the tokens after the
first over the time between first and last. Every trial uses a new prompt prefix, so no prefix cache helps.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.table import Table

from medcouncil.serving.common.console import console
from medcouncil.serving.config import EngineConfig
from medcouncil.serving.model_file import embedded_gguf
from medcouncil.serving.server import EngineServer

CASE = (
    "A {n}-year-old patient presents with progressive dyspnoea, wheeze and a nocturnal cough. Spirometry shows an "
    "FEV1/FVC ratio of 0.62 that improves by 15% after salbutamol. Eosinophils are 450 per microlitre. "
)


SAMPLING: dict[str, Any] = {"temperature": 0.0, "top_k": 40, "top_p": 0.95, "min_p": 0.05}
SERVER_REPEAT_PENALTY = 1.1
"""llama-cpp-python's server applies repeat_penalty 1.1 by default (in-process: 1.0); both sides use the server's."""


def _prompt(trial: int, repeats: int) -> str:
    return f"Case {trial}.\n" + "".join(CASE.format(n=30 + (trial * 7 + i) % 50) for i in range(repeats)) + "\nPlan:"


def _timings(stream: Iterator[Any], prompt_tokens: int, t0: float) -> tuple[float, float, int]:
    """(prefill tok/s, decode tok/s, tokens) from an iterator that yields once per streamed token."""
    stamps = [time.perf_counter() for _ in stream]
    if len(stamps) < 2:
        raise RuntimeError("the model stopped before two tokens; raise --decode-tokens or change the prompt")
    prefill = prompt_tokens / (stamps[0] - t0)
    decode = (len(stamps) - 1) / (stamps[-1] - stamps[0])
    return prefill, decode, len(stamps)


def in_process_trial(llm: Any, prompt: str, max_tokens: int) -> tuple[float, float]:
    """(prefill, decode) tok/s of one streamed completion in process, the prompt evaluated from scratch."""
    llm.reset()
    n_prompt = len(llm.tokenize(prompt.encode()))
    t0 = time.perf_counter()
    stream = llm.create_completion(
        prompt,
        max_tokens=max_tokens,
        stream=True,
        logit_bias={llm.token_eos(): -1e9},
        **SAMPLING,
        repeat_penalty=SERVER_REPEAT_PENALTY,
    )
    prefill, decode, _ = _timings(iter(stream), n_prompt, t0)
    return prefill, decode


def in_process_vs_server(
    gguf: Path, prompts: list[str], max_tokens: int, threads: int, n_ctx: int
) -> dict[str, list[tuple[float, float]]]:
    """(prefill, decode) tok/s per trial of llama.cpp in process and of the same model through the server's OpenAI
    API, trials interleaved (in process, server, server, in process, ...); the first prompt warms up both sides.

    The in-process model is loaded as the server loads it: ``logits_all`` (llama-cpp-python's condition for
    ``logprobs``) with last rows only."""
    from medcouncil.serving.llama_engine import load_llama

    llm = load_llama(str(gguf), n_ctx=n_ctx, n_threads=threads, verbose=False, logits_all=True)
    eos = llm.token_eos()
    server = EngineServer(EngineConfig(threads=threads, max_model_len=n_ctx))
    runs: dict[str, list[tuple[float, float]]] = {"in_process": [], "server": []}
    try:
        state = server.start()
        for index, prompt in enumerate(prompts):
            n_prompt = len(llm.tokenize(prompt.encode()))
            order = ("in_process", "server") if index % 2 == 0 else ("server", "in_process")
            for side in order:
                if side == "in_process":
                    result = in_process_trial(llm, prompt, max_tokens)
                else:
                    # Each side sees each prompt once: no prefix cache helps either.
                    [result] = through_server(
                        state.base_url, state.served_model_name, [prompt], max_tokens, [n_prompt], eos
                    )
                if index:
                    runs[side].append(result)
    finally:
        server.stop()
        llm.close()
    return runs


def logits_rows_cost(gguf: Path, prompts: list[str], threads: int, n_ctx: int) -> dict[str, dict[str, float]]:
    """Median prefill tok/s of a one-token answer with logprobs, and seconds of the same answer with the prompt
    cached: llama-cpp-python's every-position logits ("all") against the last row's ("last"), trials interleaved."""
    from medcouncil.serving.llama_engine import apply_last_row_logits, load_llama

    llm = load_llama(str(gguf), n_ctx=n_ctx, n_threads=threads, verbose=False, logits_all=True)
    runs: dict[str, list[tuple[float, float]]] = {"all": [], "last": []}
    try:
        for index, prompt in enumerate(prompts):
            for name in runs:
                apply_last_row_logits(name == "last")
                llm.reset()  # type: ignore[no-untyped-call]
                text = f"{name}. {prompt}\nAnswer:"
                n_prompt = len(llm.tokenize(text.encode()))
                seconds = []
                for _ in range(2):  # the prompt evaluated, then cached
                    t0 = time.perf_counter()
                    llm.create_completion(text, max_tokens=1, logprobs=20, temperature=0.0)
                    seconds.append(time.perf_counter() - t0)
                if index:  # the first prompt warms up
                    runs[name].append((n_prompt / seconds[0], seconds[1]))
    finally:
        apply_last_row_logits(True)
        llm.close()
    med = statistics.median
    return {
        key: {name: med(r[i] for r in runs[name]) for name in runs}
        for i, key in enumerate(("prefill_tok_s", "cached_answer_s"))
    }


def _sse_tokens(response: httpx.Response) -> Iterator[None]:
    for line in response.iter_lines():
        is_token = line.startswith("data: ") and line != "data: [DONE]"
        if is_token and json.loads(line[6:])["choices"][0].get("text"):
            yield None


def through_server(
    base_url: str, model: str, prompts: list[str], max_tokens: int, prompt_tokens: list[int], eos: int
) -> list[tuple[float, float]]:
    results = []
    with httpx.Client(timeout=300) as http:
        for prompt, n_prompt in zip(prompts, prompt_tokens, strict=True):
            body = {
                "model": model,
                "prompt": prompt,
                "max_tokens": max_tokens,
                **SAMPLING,
                "stream": True,
                "logit_bias": {str(eos): -1e9},
            }
            t0 = time.perf_counter()
            with http.stream("POST", f"{base_url}/completions", json=body) as response:
                response.raise_for_status()
                prefill, decode, _ = _timings(_sse_tokens(response), n_prompt, t0)
            results.append((prefill, decode))
    return results


def extra_buffers_cost(
    prompts: list[str], max_tokens: int, prompt_tokens: list[int], eos: int, threads: int, n_ctx: int
) -> dict[str, dict[str, float]]:
    """Median prefill and decode tok/s of two servers, extra buffer types off and on, trials interleaved."""
    servers = {
        name: EngineServer(EngineConfig(threads=threads, max_model_len=n_ctx, extra_buffers=name == "on"))
        for name in ("off", "on")
    }
    runs: dict[str, list[tuple[float, float]]] = {"off": [], "on": []}
    try:
        states = {name: server.start() for name, server in servers.items()}
        for index, (prompt, n_prompt) in enumerate(zip(prompts, prompt_tokens, strict=True)):
            for name, state in states.items():
                result = through_server(
                    state.base_url, state.served_model_name, [f"{name}. {prompt}"], max_tokens, [n_prompt + 2], eos
                )
                if index:  # the first prompt warms up each server
                    runs[name] += result
    finally:
        for server in servers.values():
            server.stop()
    med = statistics.median
    return {
        key: {name: med(r[i] for r in runs[name]) for name in runs}
        for i, key in enumerate(("prefill_tok_s", "decode_tok_s"))
    }


def _cli(*args: str) -> list[str]:
    return [str(Path(sys.executable).parent / "medcouncil"), *args]


def serve_to_healthy(trials: int) -> list[float]:
    times = []
    for _ in range(trials):
        t0 = time.perf_counter()
        subprocess.run(_cli("serve", "--detach"), check=True, capture_output=True)
        times.append(time.perf_counter() - t0)
        subprocess.run(_cli("serve", "--stop"), check=True, capture_output=True)
    return times


def ask_first_token(trials: int, autostart: bool) -> list[float]:
    """Seconds from launching ``medcouncil ask`` to the first byte of its streamed answer on stdout."""
    if not autostart:
        subprocess.run(_cli("serve", "--detach"), check=True, capture_output=True)
    times = []
    try:
        for trial in range(trials):
            t0 = time.perf_counter()
            question = f"Patient {trial}: name one symptom of asthma."
            with subprocess.Popen(
                _cli("ask", question, "--max-tokens", "8", "--no-cache"), stdout=subprocess.PIPE, stderr=subprocess.PIPE
            ) as process:
                assert process.stdout is not None
                process.stdout.read(1)
                times.append(time.perf_counter() - t0)
                process.communicate()
                if process.returncode != 0:
                    raise RuntimeError("medcouncil ask failed during the benchmark")
    finally:
        if not autostart:
            subprocess.run(_cli("serve", "--stop"), check=True, capture_output=True)
    return times


def main(
    trials: Annotated[int, typer.Option(help="Trials per measurement (medians are reported).")] = 3,
    prompt_repeats: Annotated[int, typer.Option(help="Case paragraphs per prompt (~50 tokens each).")] = 10,
    decode_tokens: Annotated[int, typer.Option(help="Tokens generated per trial.")] = 128,
    threads: Annotated[
        int, typer.Option(help="llama.cpp threads for both sides (default: the server's, every core).")
    ] = EngineConfig().resolved_threads(),
    out: Annotated[Path | None, typer.Option(help="Also write the figures as JSON here.")] = None,
) -> None:
    """Run the serving benchmark and print its table."""
    gguf = embedded_gguf()
    n_ctx = 2048
    prompts = [_prompt(trial, prompt_repeats) for trial in range(trials + 1)]  # the first one warms up
    from medcouncil.serving.llama_engine import load_llama

    vocab = load_llama(str(gguf), n_ctx=n_ctx, vocab_only=True, verbose=False)
    prompt_tokens = [len(vocab.tokenize(p.encode())) for p in prompts]
    eos = vocab.token_eos()
    console.print(f"[notice]llama.cpp in process vs the server's OpenAI API, interleaved: {trials} trials…[/]")
    sides = in_process_vs_server(gguf, prompts, decode_tokens, threads, n_ctx)
    local, remote = sides["in_process"], sides["server"]
    console.print("[notice]every position's logits vs the last row's, interleaved…[/]")
    rows = logits_rows_cost(gguf, prompts, threads, n_ctx)
    console.print("[notice]extra buffer types off vs on, interleaved…[/]")
    buffers = extra_buffers_cost(prompts, decode_tokens, prompt_tokens, eos, threads, n_ctx)
    console.print("[notice]serve → healthy, and ask's first token…[/]")
    healthy = serve_to_healthy(trials)
    warm = ask_first_token(trials, autostart=False)
    cold = ask_first_token(trials, autostart=True)

    med = statistics.median
    figures = {
        "prompt_tokens": med(prompt_tokens),
        "prefill_tok_s": {"in_process": med(p for p, _ in local), "server": med(p for p, _ in remote)},
        "decode_tok_s": {"in_process": med(d for _, d in local), "server": med(d for _, d in remote)},
        "serve_to_healthy_s": med(healthy),
        "ask_first_token_s": {"running_server": med(warm), "autostart": med(cold)},
        "extra_buffers": buffers,
        "logits_rows": rows,
        "threads": threads,
        "trials": trials,
    }
    table = Table(title="medcouncil serving benchmark (median of trials)")
    for column in ("measure", "in-process", "server (OpenAI API)", "ratio"):
        table.add_column(column, justify="right" if column != "measure" else "left")
    for key, label in (("decode_tok_s", "decode tok/s"), ("prefill_tok_s", "prefill tok/s")):
        a, b = figures[key]["in_process"], figures[key]["server"]  # type: ignore[index]
        table.add_row(label, f"{a:.1f}", f"{b:.1f}", f"{b / a:.2f}")
    for key in ("decode_tok_s", "prefill_tok_s"):
        off, on = buffers[key]["off"], buffers[key]["on"]
        table.add_row(
            f"{key.split('_')[0]} tok/s, extra buffers off (default) | on", f"{off:.1f}", f"{on:.1f}", f"{off / on:.2f}"
        )
    all_rows, last_rows = rows["prefill_tok_s"]["all"], rows["prefill_tok_s"]["last"]
    table.add_row(
        "prefill tok/s, logits of every position | last row",
        f"{all_rows:.1f}",
        f"{last_rows:.1f}",
        f"{last_rows / all_rows:.2f}",
    )
    all_rows, last_rows = rows["cached_answer_s"]["all"], rows["cached_answer_s"]["last"]
    table.add_row(
        "cached one-token answer s, every position | last row",
        f"{all_rows:.2f}",
        f"{last_rows:.2f}",
        f"{all_rows / last_rows:.2f}",
    )
    table.add_row("serve --detach → healthy", "", f"{figures['serve_to_healthy_s']:.2f} s", "")
    table.add_row("ask first token (server running)", "", f"{med(warm):.2f} s", "")
    table.add_row("ask first token (auto-start)", "", f"{med(cold):.2f} s", "")
    console.print(table)
    console.print(
        f"[usage]prompt {figures['prompt_tokens']:.0f} tokens, {decode_tokens} generated, {threads} threads[/]"
    )
    if out is not None:
        out.write_text(json.dumps(figures, indent=2), encoding="utf-8")


if __name__ == "__main__":
    typer.run(main)

"""Fine-tuning benchmark: ``python -m tests.benchmarks.bench_finetune [--examples 64] [--steps 8]``.

On shared MedQA items in the single-model format (the embedded Gemma 3 270M, LoRA r16 on q/k/v/o, fp32):

- training tokens/s of ``medcouncil finetune``'s loop against the raw forward+backward of the same model on the
  same batches (goal >= 0.8), and the raw throughput with logits at every position (what the labelled-positions
  loss saves);
- peak RSS and seconds per 1k examples;
- LoRA against full fine-tuning on the same data and steps: time, peak RSS, eval loss.

Every measurement runs in its own process (peak RSS is per process); the sides of each comparison alternate
(A, B, A, B, ...) and the medians are reported.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from medcouncil.scenarios.datasets.registry import load_dataset
from medcouncil.scenarios.training.examples import samples_to_examples
from medcouncil.serving.training.config import FinetuneConfig

SIDES = ("trainer", "raw", "raw-full-logits")


def _config(args: dict[str, Any], out: Path, method: str = "lora") -> FinetuneConfig:
    return FinetuneConfig(
        out=out,
        method=method,  # type: ignore[arg-type]
        max_steps=args["steps"],
        batch_size=args["batch"],
        max_seq_len=args["seq_len"],
        eval_fraction=0.125,
        eval_every=10_000,
        save_every=10_000,
        learning_rate=2e-4 if method == "lora" else 2e-5,
        seed=0,
    )


def child(side: str, args: dict[str, Any]) -> dict[str, Any]:
    """One measurement in this process."""
    import torch

    from medcouncil.serving.training.data import split_eval, tokenize
    from medcouncil.serving.training.model import (
        LabelledLoss,
        full_logits_loss,
        load_model,
        load_tokenizer,
        resolve_base,
        set_threads,
    )
    from medcouncil.serving.training.train import Trainer, collate, micro_batches, peak_rss_mb

    samples, _ = load_dataset(args["dataset"])
    examples = samples_to_examples(samples[: args["examples"]])
    base = resolve_base(None)
    with tempfile.TemporaryDirectory() as folder:
        method = "full" if side == "full" else "lora"
        config = _config(args, Path(folder) / "out", method)
        if side in ("trainer", "full"):
            card = Trainer(config, examples, base, args["dataset"]).run()
            return {
                "tokens_per_s": card.tokens_per_second,
                "train_s": card.train_seconds,
                "tokens": card.tokens,
                "examples": card.data.train,
                "steps": len(card.steps),
                "eval_loss": card.evals[-1].loss,
                "peak_rss_mb": peak_rss_mb(),
            }
        set_threads(None)
        torch.manual_seed(0)
        tokenizer = load_tokenizer(base)
        tokenized = [tokenize(tokenizer, e, config.max_seq_len) for e in examples]
        train, _ = split_eval(examples, config.eval_fraction, config.seed)
        plan = micro_batches(train, config, config.max_steps or 1)
        batches = [collate([tokenized[i] for i in ids], int(tokenizer.pad_token_id)) for ids in plan]
        model = load_model(base, config)
        loss_fn = LabelledLoss(model)
        started = time.monotonic()
        for batch in batches:
            if side == "raw":
                loss, _ = loss_fn(batch.input_ids, batch.attention_mask, batch.labels)
            else:
                loss, _ = full_logits_loss(model, batch.input_ids, batch.attention_mask, batch.labels)
            loss.backward()
            model.zero_grad(set_to_none=True)
        seconds = time.monotonic() - started
        tokens = sum(b.tokens for b in batches)
        return {"tokens_per_s": tokens / seconds, "train_s": seconds, "tokens": tokens, "peak_rss_mb": peak_rss_mb()}


def _measure(side: str, args: dict[str, Any]) -> dict[str, Any]:
    command = [sys.executable, "-m", "tests.benchmarks.bench_finetune", "--child", side, "--spec", json.dumps(args)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{side} failed:\n{done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _median(results: list[dict[str, Any]], key: str) -> float:
    return float(statistics.median(float(r[key]) for r in results))


def main(
    examples: Annotated[int, typer.Option(help="Training examples (MedQA items).")] = 64,
    steps: Annotated[int, typer.Option(help="Optimizer steps per measurement.")] = 8,
    batch: Annotated[int, typer.Option(help="Batch size.")] = 4,
    seq_len: Annotated[int, typer.Option(help="Max sequence length.")] = 256,
    trials: Annotated[int, typer.Option(help="Interleaved trials per side.")] = 3,
    dataset: Annotated[str, typer.Option(help="Dataset bench can load.")] = "medqa",
    full: Annotated[bool, typer.Option(help="Also LoRA vs full fine-tuning.")] = True,
    out: Annotated[Path | None, typer.Option(help="Write the figures as JSON here.")] = None,
    child_side: Annotated[str | None, typer.Option("--child", hidden=True)] = None,
    spec: Annotated[str | None, typer.Option(hidden=True)] = None,
) -> None:
    if child_side is not None:
        print(json.dumps(child(child_side, json.loads(spec or "{}"))))
        return
    args = {"examples": examples, "steps": steps, "batch": batch, "seq_len": seq_len, "dataset": dataset}
    results: dict[str, list[dict[str, Any]]] = {side: [] for side in SIDES}
    for trial in range(trials):
        for side in SIDES:  # interleaved: trainer, raw, raw-full, trainer, raw, ...
            results[side].append(_measure(side, args))
            print(f"trial {trial + 1} {side}: {results[side][-1]['tokens_per_s']:.1f} tok/s", flush=True)
    trainer, raw, raw_full = (_median(results[s], "tokens_per_s") for s in SIDES)
    figures: dict[str, Any] = {
        "spec": args,
        "trainer_tokens_per_s": trainer,
        "raw_tokens_per_s": raw,
        "raw_full_logits_tokens_per_s": raw_full,
        "trainer_vs_raw": trainer / raw,
        "labelled_vs_full_logits": raw / raw_full,
        "peak_rss_mb": _median(results["trainer"], "peak_rss_mb"),
        "seconds_per_1k_examples": 1000 * _median(results["trainer"], "train_s") / (steps * batch),
    }
    print(
        f"\ntraining loop {trainer:.1f} tok/s vs raw forward+backward {raw:.1f} tok/s: ratio "
        f"{trainer / raw:.2f} (goal >= 0.8)"
    )
    print(
        f"raw with logits at every position {raw_full:.1f} tok/s: the labelled-positions loss is "
        f"{raw / raw_full:.2f}x faster"
    )
    print(
        f"peak RSS {figures['peak_rss_mb']:.0f} MB; {figures['seconds_per_1k_examples']:.0f} s per 1k examples "
        f"(mean {_median(results['trainer'], 'tokens') / (steps * batch):.0f} tokens each)"
    )
    if full:
        pairs: dict[str, list[dict[str, Any]]] = {"lora": [], "full": []}
        for _ in range(max(1, trials - 1)):
            pairs["lora"].append(_measure("trainer", args))
            pairs["full"].append(_measure("full", args))
        for method, runs in pairs.items():
            figures[method] = {
                key: _median(runs, key) for key in ("train_s", "peak_rss_mb", "eval_loss", "tokens_per_s")
            }
            print(
                f"{method}: {figures[method]['train_s']:.1f} s for {steps} steps, "
                f"{figures[method]['tokens_per_s']:.1f} tok/s, peak RSS {figures[method]['peak_rss_mb']:.0f} MB, "
                f"eval loss {figures[method]['eval_loss']:.4f}"
            )
    if out is not None:
        out.write_text(json.dumps(figures, indent=2), encoding="utf-8")


if __name__ == "__main__":
    typer.run(main)

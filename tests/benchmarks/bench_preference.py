"""Preference and reward tuning against SFT: ``python -m tests.benchmarks.bench_preference [--items 8] [--steps 3]
[--trials 2]``.

On the same MedMCQA dev items (the embedded Gemma 3 270M, LoRA r16 on q/k/v/o, fp32, the diagnostician's prompt):

- **SFT**: the diagnostician's turn with the item's explanation and the gold final answer;
- **DPO**: that turn as the chosen answer against the same reasoning ending in a wrong letter;
- **GRPO**: the prompt alone, groups of ``--group`` completions of ``--new-tokens`` tokens, the MCQA reward.

Each side runs ``--steps`` optimizer steps of ``--batch`` units; the sides alternate (SFT, DPO, GRPO, SFT, ...)
and the medians over ``--trials`` are printed: training tokens/s (every token the loss saw: for DPO both answers,
for GRPO prompts and completions), GRPO's generated tokens/s, and seconds per step, with the ratio to SFT.
"""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer

from medcouncil.scenarios.datasets.registry import load_dataset
from medcouncil.scenarios.training.rewards import mcqa_reward, sample_to_reward_example
from medcouncil.scenarios.training.sft import diagnostician
from medcouncil.serving.training.config import FinetuneConfig
from medcouncil.serving.training.preference import PreferenceExample

SIDES = ("sft", "dpo", "grpo")
DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "raw" / "medmcqa_dev.jsonl"


def units(items: int) -> dict[str, list[Any]]:
    samples, _ = load_dataset(str(DATA))
    chosen = [s for s in samples if s.metadata.get("explanation")][:items]
    sft = [diagnostician(sample) for sample in chosen]
    pairs = []
    for sample, example in zip(chosen, sft, strict=True):
        wrong = next(letter for letter in sample.options if letter != sample.answer)
        answer = example.messages[-1].content
        rejected = answer.rsplit("Final answer:", 1)[0] + f"Final answer: {wrong}. {sample.options[wrong]}"
        prompt = tuple(m for m in example.messages if m.role != "assistant")
        pairs.append(PreferenceExample(prompt=prompt, chosen=answer, rejected=rejected, source=sample.id))
    return {"sft": sft, "dpo": pairs, "grpo": [sample_to_reward_example(sample) for sample in chosen]}


def run(side: str, data: list[Any], args: dict[str, Any], base: Any) -> dict[str, float]:
    from medcouncil.serving.training.grpo import GroupTrainer
    from medcouncil.serving.training.preference import PreferenceTrainer
    from medcouncil.serving.training.train import Trainer

    with tempfile.TemporaryDirectory() as out:
        config = FinetuneConfig(
            out=Path(out),
            objective=side if side != "sft" else "sft",  # type: ignore[arg-type]
            max_steps=args["steps"],
            batch_size=args["batch"],
            max_seq_len=args["seq_len"],
            group_size=args["group"],
            max_new_tokens=args["new_tokens"],
            eval_fraction=0.0,
            save_every=10_000,
            seed=0,
        )
        trainer: Trainer
        if side == "dpo":
            trainer = PreferenceTrainer(config, data, base, "bench")
        elif side == "grpo":
            trainer = GroupTrainer(config, data, base, "bench", reward=mcqa_reward)
        else:
            trainer = Trainer(config, data, base, "bench")
        card = trainer.run()
        generated = trainer.loss.generated if isinstance(trainer, GroupTrainer) and trainer.loss else 0
        seconds = card.train_seconds
        return {
            "tokens_per_s": card.tokens / seconds,
            "generated_per_s": generated / seconds,
            "s_per_step": seconds / len(card.steps),
        }


def main(
    items: Annotated[int, typer.Option(help="MedMCQA dev items (with an explanation).")] = 8,
    steps: Annotated[int, typer.Option(help="Optimizer steps per trial.")] = 3,
    batch: Annotated[int, typer.Option(help="Units per step (examples, pairs, prompts).")] = 2,
    seq_len: Annotated[int, typer.Option(help="Longest sequence.")] = 384,
    group: Annotated[int, typer.Option(help="GRPO completions per prompt.")] = 4,
    new_tokens: Annotated[int, typer.Option(help="GRPO completion length.")] = 48,
    trials: Annotated[int, typer.Option(help="Interleaved trials per side (medians).")] = 2,
) -> None:
    from medcouncil.serving.training.model import resolve_base

    args = {"steps": steps, "batch": batch, "seq_len": seq_len, "group": group, "new_tokens": new_tokens}
    data, base = units(items), resolve_base(None)
    results: dict[str, list[dict[str, float]]] = {side: [] for side in SIDES}
    for trial in range(trials):
        for side in SIDES:  # interleaved: sft, dpo, grpo, sft, ...
            results[side].append(run(side, data[side], args, base))
            print(f"trial {trial + 1} {side}: {results[side][-1]}", flush=True)

    def median(side: str, key: str) -> float:
        return statistics.median(r[key] for r in results[side])

    sft = median("sft", "tokens_per_s")
    print(f"\n{items} items, {steps} steps of {batch}, medians of {trials} interleaved trials")
    print("| objective | training tok/s | vs SFT | generated tok/s | s/step |")
    print("|---|---|---|---|---|")
    for side in SIDES:
        rate = median(side, "tokens_per_s")
        generated = median(side, "generated_per_s")
        shown = f"{generated:.1f}" if side == "grpo" else "-"
        print(f"| {side} | {rate:.1f} | {rate / sft:.2f}x | {shown} | {median(side, 's_per_step'):.1f} |")


if __name__ == "__main__":
    typer.run(main)

"""``medcouncil finetune``: train a LoRA / QLoRA / full fine-tune of a base model on chat data or a dataset."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from medcouncil.scenarios.cli.options import DataDirOpt, FieldsOpt, LimitOpt, SplitOpt, SubsetOpt
from medcouncil.serving.common.console import console, err_console
from medcouncil.serving.common.errors import ConfigError
from medcouncil.serving.training.config import FinetuneConfig

if TYPE_CHECKING:
    from medcouncil.serving.training.card import RunCard


SFT_DECONTAMINATE = (
    "--decontaminate, --no-decontaminate: options of --method dpo and grpo (SFT trains on the data as given; "
    "`medcouncil data build` decontaminates it)"
)


def _saved_config(out: Path, decontaminate: bool | None = None) -> FinetuneConfig:
    """The settings of the run in ``out``, from its latest checkpoint. ``decontaminate``: the flag, where given;
    a run that recorded the other choice is refused by name (a run from before the choice was recorded takes it)."""
    from pydantic import ValidationError

    from medcouncil.serving.common.jsonl import load_json
    from medcouncil.serving.training import checkpoint

    latest = checkpoint.latest(out)
    if latest is None:
        raise ConfigError(f"--resume {out}: no finished checkpoint in {out / checkpoint.CHECKPOINTS}")
    path = latest / checkpoint.STATE
    try:
        saved = load_json(path)["card"]["config"]
        if not isinstance(saved, dict):
            raise TypeError("card.config is no mapping")
        if decontaminate is not None:
            if saved.get("objective", "sft") == "sft":
                raise ConfigError(SFT_DECONTAMINATE)
            recorded = saved.setdefault("decontaminate", decontaminate)
            if recorded != decontaminate:
                flag = "--decontaminate" if recorded else "--no-decontaminate"
                raise ConfigError(f"--resume {out}: the run was trained with {flag}; leave the flag out")
        return FinetuneConfig.model_validate({**saved, "out": out})
    except ValidationError as error:
        first = error.errors()[0]
        raise ConfigError(
            f"{path}: run settings do not fit ({'.'.join(map(str, first['loc']))}: {first['msg']})"
        ) from None
    except (KeyError, TypeError):
        raise ConfigError(f"{path}: holds no run settings (card.config): not a finetune checkpoint") from None


def print_card(card: RunCard, out: Path) -> None:
    first, last = card.steps[0].loss, card.steps[-1].loss
    evals = f" · eval loss {card.evals[0].loss:.4f} → {card.evals[-1].loss:.4f}" if card.evals else ""
    objective = card.config.get("objective", "sft")
    what = {
        "dpo": f"{card.method} by DPO (β {card.config.get('beta')}) on {card.data.train} pairs",
        "grpo": f"{card.method} by GRPO (groups of {card.config.get('group_size')}) on {card.data.train} prompts",
    }.get(objective, f"{card.method} on {card.data.train} examples")
    console.print(f"Trained {what}, {len(card.steps)} steps: loss {first:.4f} → {last:.4f}{evals}")
    console.print(
        f"[usage]{card.tokens_per_second:.1f} tokens/s · {card.train_seconds:.0f} s training · "
        f"{card.wall_seconds:.0f} s wall · peak RSS {card.peak_rss_mb:.0f} MB[/]"
    )
    if card.method == "full":
        console.print(f"[notice]model (HF folder), run card and report in {escape(str(out))}[/]")
        return
    console.print(
        f"[notice]adapter, run card and report in {escape(str(out))}[/] · serve it with "
        f"[bold]medcouncil serve --lora NAME={out}[/]"
    )


def _examples(settings: FinetuneConfig) -> tuple[list[Any], str]:
    """SFT examples, or DPO pairs / GRPO items, decontaminated unless the settings say not to (a resume takes the
    run's choice from its checkpoint)."""
    if settings.objective == "sft":
        from medcouncil.scenarios.training.examples import load_examples

        return load_examples(settings)
    if settings.objective == "grpo":
        from medcouncil.scenarios.training.rewards import load_reward_examples

        with err_console.status("Loading the items (and checking them against the local evaluation sets)…"):
            return load_reward_examples(settings, settings.decontaminate)
    from medcouncil.scenarios.training.decontamination import local_eval_sets
    from medcouncil.scenarios.training.preferences import decontaminate_pairs, load_preferences
    from medcouncil.tools.embeddings import build_embedder

    run = Path(settings.data).expanduser() if settings.data else None
    if run is not None and (run / "arena.json").is_file():
        from medcouncil.scenarios.arena.pairs import arena_pairs

        pairs, source = arena_pairs(run), str(run.resolve())
        pairs = pairs[: settings.limit] if settings.limit else pairs
    else:
        pairs, source = load_preferences(settings)
    if settings.decontaminate:
        with err_console.status(f"Checking {len(pairs)} preference prompts against the local evaluation sets…"):
            pairs, dropped = decontaminate_pairs(pairs, local_eval_sets(settings.data_dir), build_embedder())
        if dropped:
            err_console.print(f"[warning]{dropped} pairs dropped: their prompt is in an evaluation set[/]")
        if not pairs:
            raise ConfigError(f"{source}: every preference pair overlaps an evaluation set")
        source = f"{source} (decontaminated: {dropped} pairs dropped)"
    return pairs, source


def finetune(
    data: Annotated[
        str | None,
        typer.Option("--data", "--dataset", help="Chat JSONL ('messages'), or a dataset as bench's --dataset."),
    ] = None,
    base: Annotated[str | None, typer.Option(help="HF folder or id, or GGUF (default: the embedded Gemma).")] = None,
    out: Annotated[Path | None, typer.Option(help="Output folder (default: adapters/finetune).")] = None,
    method: Annotated[
        str | None,
        typer.Option(
            help="lora (default), qlora (CUDA), full; dpo (LoRA on preference pairs or an arena run) or grpo (LoRA "
            "with verifiable rewards on an MCQA dataset)."
        ),
    ] = None,
    beta: Annotated[float | None, typer.Option(help="DPO's beta (0.1).")] = None,
    group_size: Annotated[int | None, typer.Option(help="GRPO: completions per prompt (4).")] = None,
    kl_weight: Annotated[float | None, typer.Option(help="GRPO: KL weight to the reference (0.04).")] = None,
    max_new_tokens: Annotated[int | None, typer.Option(help="GRPO: longest completion (96).")] = None,
    decontaminate: Annotated[
        bool | None,
        typer.Option(
            help="DPO, GRPO: drop pairs or items whose prompt is in a local evaluation set (on; a resume "
            "keeps the run's choice)."
        ),
    ] = None,
    lora_r: Annotated[int | None, typer.Option(help="LoRA rank (16).")] = None,
    lora_alpha: Annotated[int | None, typer.Option(help="LoRA alpha (32).")] = None,
    lora_dropout: Annotated[float | None, typer.Option(help="LoRA dropout (0.05).")] = None,
    target_modules: Annotated[str | None, typer.Option(help="Comma-separated layers (q_proj,..,o_proj).")] = None,
    learning_rate: Annotated[float | None, typer.Option("--learning-rate", "--lr", help="Peak LR (2e-4).")] = None,
    epochs: Annotated[float | None, typer.Option(help="Passes over the data (1).")] = None,
    max_steps: Annotated[int | None, typer.Option(help="Optimizer steps (overrides --epochs).")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Examples per forward pass (4).")] = None,
    grad_accum: Annotated[int | None, typer.Option(help="Micro-batches per step and process (1).")] = None,
    global_batch: Annotated[
        int | None,
        typer.Option(help="Examples per step across every process (sets --grad-accum; any process count dividing it)."),
    ] = None,
    fsdp: Annotated[
        bool | None, typer.Option("--fsdp", help="Shard weights and optimizer across processes (--method full).")
    ] = None,
    deepspeed: Annotated[
        Path | None, typer.Option(help="Train under DeepSpeed ZeRO with this config (JSON/YAML: zero_optimization…).")
    ] = None,
    gradient_checkpointing: Annotated[bool | None, typer.Option(help="Recompute activations (less memory).")] = None,
    max_seq_len: Annotated[int | None, typer.Option(help="Longest example in tokens (512).")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of everything drawn at random (0).")] = None,
    eval_every: Annotated[int | None, typer.Option(help="Eval loss every N steps (50).")] = None,
    save_every: Annotated[int | None, typer.Option(help="Checkpoint every N steps (100).")] = None,
    limit: LimitOpt = None,
    subset: SubsetOpt = None,
    split: SplitOpt = None,
    fields: FieldsOpt = None,
    data_dir: DataDirOpt = None,
    merge: Annotated[bool | None, typer.Option("--merge", help="Also write the merged HF model (OUT/merged).")] = None,
    threads: Annotated[int | None, typer.Option(help="CPU threads (all cores).")] = None,
    dtype: Annotated[str | None, typer.Option(help="float32 (default; CPUs) or bfloat16 (recent GPUs).")] = None,
    config: Annotated[Path | None, typer.Option("--config", help="Finetune config YAML (flags override it).")] = None,
    resume: Annotated[Path | None, typer.Option(help="Continue the run in this folder (last checkpoint).")] = None,
) -> None:
    """Fine-tune a model (LoRA by default) on chat JSONL or a benchmark dataset; write an adapter and a run card."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from medcouncil.serving.common.extras import require

    require("train", "medcouncil finetune")
    from medcouncil.serving.training import checkpoint
    from medcouncil.serving.training.card import StepLog
    from medcouncil.serving.training.distributed import is_main_launch
    from medcouncil.serving.training.model import resolve_base
    from medcouncil.serving.training.train import Trainer

    objective = method if method in ("dpo", "grpo") else "sft"
    foreign = {
        "--beta": beta is not None and objective != "dpo",
        "--group-size, --kl-weight, --max-new-tokens": objective != "grpo"
        and any(v is not None for v in (group_size, kl_weight, max_new_tokens)),
    }
    if resume is None and (wrong := [flag for flag, given in foreign.items() if given]):
        raise ConfigError(f"{', '.join(wrong)}: not an option of --method {method or 'lora'}")
    if resume is not None:  # the run's method is its own: every other option is refused by _resumed
        settings = _resumed(resume, decontaminate, threads)
    else:
        settings = FinetuneConfig.load(
            config,
            data=data,
            base=base,
            out=out,
            method=None if method in ("dpo", "grpo") else method,
            objective=method if method in ("dpo", "grpo") else None,
            beta=beta,
            group_size=group_size,
            kl_weight=kl_weight,
            max_new_tokens=max_new_tokens,
            decontaminate=decontaminate,
            lora_r=lora_r,
            lora_alpha=lora_alpha,
            lora_dropout=lora_dropout,
            learning_rate=learning_rate,
            epochs=epochs,
            max_steps=max_steps,
            batch_size=batch_size,
            grad_accum=grad_accum,
            global_batch=global_batch,
            fsdp=fsdp,
            deepspeed=deepspeed.expanduser().resolve() if deepspeed else None,  # read again on --resume
            gradient_checkpointing=gradient_checkpointing,
            max_seq_len=max_seq_len,
            seed=seed,
            eval_every=eval_every,
            save_every=save_every,
            limit=limit,
            subset=subset,
            split=split,
            fields=fields,
            data_dir=data_dir,
            merge=merge,
            threads=threads,
            dtype=dtype,
            target_modules=[t.strip() for t in target_modules.split(",") if t.strip()] if target_modules else None,
        )
        if decontaminate is not None and settings.objective == "sft":
            raise ConfigError(SFT_DECONTAMINATE)
        if (settings.out / "run.json").exists() or (settings.out / "checkpoints").exists():
            raise ConfigError(
                f"{settings.out} already holds a run: continue it with --resume {settings.out}, or choose another --out"
            )
    if settings.deepspeed is not None:  # a bad file is one line now, not after the data is tokenized
        from medcouncil.serving.training.zero import read_config

        read_config(settings.deepspeed)
    main = is_main_launch()  # under torchrun / accelerate launch, rank 0 alone speaks and writes
    if not main:
        err_console.quiet = True
    examples, source = _examples(settings)
    checkpoint.prepare_out(settings.out)
    err_console.print(f"[notice]{len(examples)} examples from {escape(str(source))}; loading the base model…[/]")
    info = resolve_base(settings.base)
    progress = Progress(
        TextColumn("[bold]finetune[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]}"),
        TextColumn("{task.fields[speed]} tok/s"),
        TimeRemainingColumn(),
        console=err_console,
        disable=not main,
    )
    task = progress.add_task("steps", total=None, loss="-", speed="-")

    def on_step(log: StepLog, total: int) -> None:
        speed = log.tokens / log.seconds if log.seconds else 0.0
        progress.update(task, total=total, completed=log.step, loss=f"{log.loss:.4f}", speed=f"{speed:.0f}")

    trainer: Trainer
    if settings.objective == "dpo":
        from medcouncil.serving.training.preference import PreferenceTrainer

        trainer = PreferenceTrainer(settings, examples, info, source, on_step=on_step)
    elif settings.objective == "grpo":
        from medcouncil.scenarios.training.rewards import mcqa_reward
        from medcouncil.serving.training.grpo import GroupTrainer

        trainer = GroupTrainer(settings, examples, info, source, on_step=on_step, reward=mcqa_reward)
    else:
        trainer = Trainer(settings, examples, info, source, on_step=on_step)
    with progress:
        card = trainer.run(resume=resume is not None)
    if main:
        print_card(card, settings.out)


def _resumed(resume: Path, decontaminate: bool | None, threads: int | None) -> FinetuneConfig:
    """The saved run's settings (``--threads`` may change).

    Raises: ConfigError: no run to resume in ``resume`` (told first: it is what the user must fix first), or
    other options given.
    """
    settings = _saved_config(resume, decontaminate)
    if ignored := _given_besides(("resume", "threads", "decontaminate")):
        raise ConfigError(
            f"--resume continues {resume} with the settings it was started with: {', '.join(ignored)} cannot "
            "change them (only --threads and --decontaminate can); start a new run with another --out instead"
        )
    return settings.model_copy(update={"threads": threads}) if threads else settings


def _given_besides(allowed: tuple[str, ...]) -> list[str]:
    """The options given on the command line (not left at their defaults) other than ``allowed``."""
    import click
    from click.core import ParameterSource

    context = click.get_current_context(silent=True)
    if context is None:
        return []
    return [
        "/".join([*param.opts, *param.secondary_opts])  # every spelling: --lr for --learning-rate, a --no- flag
        for param in context.command.params
        if param.name not in allowed and context.get_parameter_source(param.name or "") == ParameterSource.COMMANDLINE
    ]

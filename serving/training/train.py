"""The training loop: seeded, resumable to the same weights, checkpointed, the same code on CPU and GPUs.

Data order is a seeded shuffle per epoch, so a resumed run replays exactly the micro-batches an uninterrupted run
would have seen; the checkpoint restores weights, optimizer, scheduler and RNG states, so it reaches the same
final weights. Gradient accumulation averages the loss over every labelled token of an optimizer step.
``accelerate`` places the model and, under ``accelerate launch``, shards each step's micro-batches across processes.
"""

from __future__ import annotations

import contextlib
import math
import random
import resource
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from medcouncil.serving.common.errors import MedcouncilError
from medcouncil.serving.training import checkpoint, zero
from medcouncil.serving.training.card import EvalLog, RunCard, StepLog, write_card
from medcouncil.serving.training.config import FinetuneConfig
from medcouncil.serving.training.data import IGNORE, Tokenized, fingerprint, split_eval, tokenize
from medcouncil.serving.training.distributed import (
    StopRequest,
    check_fsdp,
    full_optimizer_state,
    full_weights,
    load_full_optimizer_state,
    micro_seed,
    my_share,
    reduce_sum,
    resumed_on,
    set_gradient_sync,
    shard,
)
from medcouncil.serving.training.evaluate import held_out_loss
from medcouncil.serving.training.model import BaseModelInfo, LabelledLoss, load_model, load_tokenizer, set_threads


class TrainingInterrupted(MedcouncilError):
    """Ctrl-C during training: a checkpoint of the last finished step was saved."""


@dataclass(frozen=True)
class Batch:
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor
    count: int = 0
    """The units of a loss that is not per token: preference pairs (the rows: every chosen answer, then every
    rejected one) or sampled completions (GRPO); 0: plain SFT rows."""

    @property
    def tokens(self) -> int:
        return int(self.attention_mask.sum())

    @property
    def labelled(self) -> int:
        return int((self.labels[:, 1:] != IGNORE).sum())

    @property
    def units(self) -> int:
        """What a step's loss is averaged over: labelled tokens (SFT) or pairs (preferences)."""
        return self.count or self.labelled


def collate(items: Sequence[Tokenized], pad_id: int) -> Batch:
    """Right-padded tensors; padding carries no attention and no label."""
    width = max(len(item.input_ids) for item in items)
    ids = torch.full((len(items), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(items), width), dtype=torch.long)
    labels = torch.full((len(items), width), IGNORE, dtype=torch.long)
    for row, item in enumerate(items):
        n = len(item.input_ids)
        ids[row, :n] = torch.tensor(item.input_ids)
        mask[row, :n] = 1
        labels[row, :n] = torch.tensor(item.labels)
    return Batch(ids, mask, labels)


def plan_steps(train_size: int, config: FinetuneConfig, processes: int = 1) -> tuple[int, int]:
    """(optimizer steps, micro-batches per epoch) for the configured epochs or max steps."""
    per_epoch = math.ceil(train_size / config.batch_size)
    per_step = config.accumulation(processes) * processes
    if config.max_steps is not None:
        return config.max_steps, per_epoch
    return max(1, math.ceil(per_epoch * config.epochs / per_step)), per_epoch


def micro_batches(train: Sequence[int], config: FinetuneConfig, needed: int) -> list[list[int]]:
    """The first ``needed`` micro-batches (example indices) of the seeded epoch orders."""
    out: list[list[int]] = []
    epoch = 0
    while len(out) < needed:
        order = list(train)
        random.Random(config.seed * 1_000_003 + epoch).shuffle(order)
        out += [order[i : i + config.batch_size] for i in range(0, len(order), config.batch_size)]
        epoch += 1
    return out[:needed]


def _schedule(config: FinetuneConfig, total: int) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < config.warmup_steps:
            return (step + 1) / (config.warmup_steps + 1)
        return max(0.0, (total - step) / max(1, total - config.warmup_steps))

    return factor


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _accumulate(accelerator: Any, loss_fn: Any, batches: list[Batch], device: Any, seed: int, step: int) -> float:
    """One optimizer step's gradients: this process's share of the step's micro-batches (``distributed``), each
    loss scaled by the units (labelled tokens, or preference pairs) of the whole step, every process's, so that the
    update is the mean over them. Each micro-batch draws its dropout (or samples) from its own seed. Returns the
    step's mean loss (summed over the processes)."""
    step_units = max(1, sum(b.units for b in batches))
    mine = my_share(batches, accelerator.process_index, accelerator.num_processes)
    share = 0.0
    for n, (index, batch) in enumerate(mine):
        sync = n == len(mine) - 1
        torch.manual_seed(micro_seed(seed, step, index))
        set_gradient_sync(loss_fn, sync)
        engine = zero.is_engine(loss_fn)  # DeepSpeed: backward only accumulates, its step reduces
        with accelerator.no_sync(loss_fn) if not (sync or engine) else contextlib.nullcontext():
            loss_sum, _ = loss_fn(batch.input_ids.to(device), batch.attention_mask.to(device), batch.labels.to(device))
            scaled = loss_sum * accelerator.num_processes / step_units
            loss_fn.backward(scaled, scale_wrt_gas=False) if engine else accelerator.backward(scaled)
        share += float(loss_sum.detach()) / step_units
    return reduce_sum(accelerator, share)


class Trainer:
    """One fine-tuning run into ``config.out``."""

    def __init__(
        self,
        config: FinetuneConfig,
        examples: Sequence[Any],
        base: BaseModelInfo,
        data_source: str,
        on_step: Callable[[StepLog, int], None] | None = None,
    ) -> None:
        self.config, self.examples, self.base, self.on_step = config, examples, base, on_step
        self.data_source = data_source

    # What an objective changes (``preference.PreferenceTrainer`` overrides them): the unit of data, its batches,
    # the loss module, the held-out loss and the data's identity.
    def _tokenized(self, tokenizer: Any) -> list[Any]:
        return [tokenize(tokenizer, example, self.config.max_seq_len) for example in self.examples]

    def _flat(self, units: Sequence[Any]) -> list[Tokenized]:
        """Every tokenized sequence of ``units`` (the run card's length statistics)."""
        return list(units)

    def _collate(self, units: Sequence[Any], pad_id: int) -> Batch:
        return collate(units, pad_id)

    def _loss(self, model: torch.nn.Module) -> torch.nn.Module:
        return LabelledLoss(model)

    def _fingerprint(self) -> str:
        return fingerprint(self.examples)

    def _split(self) -> tuple[list[int], list[int]]:
        """Indices of the training and held-out units."""
        return split_eval(self.examples, self.config.eval_fraction, self.config.seed)

    def _eval_loss(self, loss_fn: Any, items: Sequence[Any], pad_id: int, device: Any) -> float:
        return held_out_loss(loss_fn, items, pad_id, self.config.batch_size, device)

    def run(self, resume: bool = False) -> RunCard:
        """Train, checkpointing as configured; write the adapter (or model), ``run.json`` and ``report.html``.

        Raises:
            TrainingInterrupted: Ctrl-C; the checkpoint of the last finished step was saved first.
            DiskFullError: a checkpoint could not be written; the previous one is intact.
            MedcouncilError: ``--resume`` with nothing to resume or with another configuration or data.
        """
        accelerator = self._accelerator(resume)
        processes = accelerator.num_processes
        config, out = self.config, self.config.out
        tokenizer = load_tokenizer(self.base)
        pad_id = int(tokenizer.pad_token_id)
        tokenized = self._tokenized(tokenizer)
        train_idx, eval_idx = self._split()
        total_steps, _ = plan_steps(len(train_idx), config, processes)
        per_step = config.accumulation(processes) * processes
        plan = micro_batches(train_idx, config, total_steps * per_step)
        card = RunCard.new(
            config,
            self.base,
            self.data_source,
            self._fingerprint(),
            self._flat(tokenized),
            (len(train_idx), len(eval_idx)),
            total_steps,
            processes,
        )
        deepspeed = None if config.deepspeed is None else zero.engine_config(config, processes)
        if deepspeed is not None:  # the file is read again on a resume: its edits must not pass unseen
            card.config_fields["deepspeed"] = zero.weight_settings(deepspeed)
        model, loss_fn, optimizer, scheduler, start = self._setup(accelerator, card, resume, deepspeed)
        loss_fn.train()
        device = accelerator.device
        eval_items = [tokenized[i] for i in eval_idx]
        started = time.monotonic()
        train_time = card.train_seconds
        step = start
        resume_rng = checkpoint.rng_state()  # the random state the next step starts from (saved on Ctrl-C)
        stop = StopRequest(accelerator.num_processes)
        with stop:
            try:
                for step in range(start, total_steps):
                    t0 = time.monotonic()
                    group = plan[step * per_step : (step + 1) * per_step]
                    batches = [self._collate([tokenized[i] for i in ids], pad_id) for ids in group]
                    step_loss = _accumulate(accelerator, loss_fn, batches, device, config.seed, step)
                    with stop.guard():  # the update and its record happen together or not at all
                        optimizer.step()
                        scheduler.step()
                        optimizer.zero_grad(set_to_none=True)
                        train_time += time.monotonic() - t0
                        card.tokens += sum(b.tokens for b in batches)
                        card.labelled_tokens += sum(b.labelled for b in batches)
                        log = StepLog(
                            step=step + 1,
                            loss=step_loss,
                            lr=float(scheduler.get_last_lr()[0]),
                            tokens=card.tokens,
                            seconds=round(train_time, 3),
                        )
                        card.steps.append(log)
                        resume_rng = checkpoint.rng_state()  # before anything after the update draws (an eval)
                    card.train_seconds = train_time
                    if eval_items and ((step + 1) % config.eval_every == 0 or step + 1 == total_steps):
                        card.evals.append(
                            EvalLog(step=step + 1, loss=self._eval_loss(loss_fn, eval_items, pad_id, device))
                        )
                    if self.on_step is not None and accelerator.is_main_process:
                        self.on_step(log, total_steps)
                    if (step + 1) % config.save_every == 0 and step + 1 < total_steps:
                        self._save(step + 1, model, optimizer, scheduler, card, accelerator)
                    if stop.agreed(accelerator):  # Ctrl-C on several processes: all stop after this step
                        raise KeyboardInterrupt
            except KeyboardInterrupt:
                done = len(card.steps)
                if done > start or checkpoint.latest(out) is None:
                    # the state at the start of the first step not done: an interrupted step drew from it already
                    self._save(done, model, optimizer, scheduler, card, accelerator, resume_rng)
                raise TrainingInterrupted(
                    f"interrupted after step {done} of {total_steps}: checkpoint saved in "
                    f"{out / checkpoint.CHECKPOINTS}; continue with --resume"
                ) from None
        card.wall_seconds += time.monotonic() - started
        self._finish(card, total_steps, model, optimizer, scheduler, accelerator, loss_fn, tokenizer)
        return card

    def _accelerator(self, resume: bool) -> Any:
        """This launch's processes (accelerate), the settings checked and, on ``resume``, fitted to them; seeded."""
        from accelerate import Accelerator

        set_threads(self.config.threads)
        accelerator = Accelerator(cpu=not torch.cuda.is_available())
        check_fsdp(self.config)
        zero.check(self.config)
        if resume:  # the checkpoint's micro-batches per step, shared by this launch's processes
            self.config = resumed_on(self.config, accelerator.num_processes)
        torch.manual_seed(self.config.seed)
        random.seed(self.config.seed)
        return accelerator

    def _setup(
        self, accelerator: Any, card: RunCard, resume: bool, deepspeed: dict[str, Any] | None
    ) -> tuple[torch.nn.Module, Any, Any, Any, int]:
        """(model, loss module, optimizer, scheduler, first step): loaded, restored from the latest checkpoint on
        ``resume``, sharded (FSDP) or wrapped (DDP) for the launched processes, or handed to DeepSpeed with
        ``deepspeed``, its settings (read once, by :func:`zero.engine_config`)."""
        config = self.config
        model = load_model(self.base, config)
        loss_fn = self._loss(model)
        saved = self._restore(model, card) if resume else None  # whole weights, before they are sharded
        sharded = config.fsdp and accelerator.num_processes > 1
        if sharded:
            shard(loss_fn, model, accelerator.device)
        trainable = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(trainable, lr=config.learning_rate, weight_decay=config.weight_decay)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _schedule(config, card.total_steps))
        start = 0 if saved is None else self._restore_optimizer(saved, model, optimizer, scheduler)
        if deepspeed is not None:
            engine = zero.initialize(loss_fn, optimizer, deepspeed)
            if saved is not None:  # every rank's optimizer shard, from DeepSpeed's files in the checkpoint
                zero.load(engine, saved[2])
            return model, engine, zero.EngineStep(engine), scheduler, start
        if not sharded:
            loss_fn, optimizer = accelerator.prepare(loss_fn, optimizer)
        return model, loss_fn, optimizer, scheduler, start

    def _finish(
        self,
        card: RunCard,
        total_steps: int,
        model: torch.nn.Module,
        optimizer: Any,
        scheduler: Any,
        accelerator: Any,
        loss_fn: Any,
        tokenizer: Any,
    ) -> None:
        """The finished run: its last checkpoint, then the adapter (or model), ``run.json`` and ``report.html``,
        written by the main process (every process takes part in gathering sharded weights)."""
        card.peak_rss_mb = max(card.peak_rss_mb, peak_rss_mb())
        card.finished = True
        self._save(total_steps, model, optimizer, scheduler, card, accelerator)
        whole = full_weights(model, trainable_only=False) if self.config.fsdp else None
        if zero.is_engine(loss_fn) and loss_fn.zero_optimization_partition_weights():
            whole = zero.full_weights(loss_fn, model, trainable_only=False)
        if accelerator.is_main_process:
            self._write_outputs(model, tokenizer, card, whole)
        accelerator.wait_for_everyone()

    def _restore(self, model: torch.nn.Module, card: RunCard) -> tuple[dict[str, Any], int, Path]:
        """The latest checkpoint's weights copied into ``model`` (before it is sharded) and its history into
        ``card``; returns (its tensors, its step, its folder) for :meth:`_restore_optimizer`."""
        path = checkpoint.latest(self.config.out)
        if path is None:
            raise MedcouncilError(f"--resume: no checkpoint in {self.config.out / checkpoint.CHECKPOINTS}")
        tensors, progress = checkpoint.load(path)
        saved = RunCard.model_validate(progress["card"])
        if changed := card.changed_settings(saved):
            raise MedcouncilError(f"--resume: {path} was trained with other settings ({', '.join(changed)})")
        if saved.data.fingerprint != card.data.fingerprint or saved.base.digest != card.base.digest:
            raise MedcouncilError(f"--resume: {path} was trained on other data or another base model")
        checkpoint.apply(model, tensors)
        card.adopt(saved, str(path))
        return tensors, int(progress["step"]), path

    def _restore_optimizer(
        self, saved: tuple[dict[str, Any], int, Path], model: torch.nn.Module, optimizer: Any, scheduler: Any
    ) -> int:
        tensors, step, _ = saved
        if checkpoint.OPTIMIZER_BY_NAME in tensors:  # written by a sharded run: keyed by parameter name
            load_full_optimizer_state(model, optimizer, tensors[checkpoint.OPTIMIZER_BY_NAME])
        elif "optimizer" in tensors:  # (DeepSpeed's shards load into its engine)
            optimizer.load_state_dict(tensors["optimizer"])
        scheduler.load_state_dict(tensors["scheduler"])
        checkpoint.restore_rng(tensors["rng"])
        return step

    def _save(
        self,
        step: int,
        model: torch.nn.Module,
        optimizer: Any,
        scheduler: Any,
        card: RunCard,
        accelerator: Any,
        rng: dict[str, Any] | None = None,
    ) -> None:
        """Every process calls it: sharded weights and optimizer states are gathered whole, the main process
        writes, the others wait for it."""
        accelerator.wait_for_everyone()
        given: dict[str, Any] = {"rng": rng} if rng is not None else {}
        if isinstance(optimizer, zero.EngineStep):  # DeepSpeed writes every rank's shard into the partial folder
            zero.save(optimizer.engine, self.config.out, step, accelerator)
            given |= {"model": zero.full_weights(optimizer.engine, model), checkpoint.ENGINE_FILES: True}
        elif self.config.fsdp:
            given |= {
                "model": full_weights(model),
                checkpoint.OPTIMIZER_BY_NAME: full_optimizer_state(model, optimizer),
            }
        if accelerator.is_main_process:
            checkpoint.save(
                self.config.out,
                step,
                accelerator.unwrap_model(model),
                optimizer,
                scheduler,
                {"card": card.model_dump(mode="json")},
                self.config.keep_checkpoints,
                given,
            )
        accelerator.wait_for_everyone()

    def _write_outputs(self, model: Any, tokenizer: Any, card: RunCard, whole: dict[str, Any] | None = None) -> None:
        """``whole``: a sharded model's gathered weights (its own parameters are shards)."""
        out = self.config.out
        out.mkdir(parents=True, exist_ok=True)
        try:
            model.save_pretrained(out, **({"state_dict": whole} if whole is not None else {}))
            if self.config.method == "full":
                tokenizer.save_pretrained(out)
            if self.config.merge and self.config.method != "full":
                merged = model.merge_and_unload()
                merged.save_pretrained(out / "merged")
                tokenizer.save_pretrained(out / "merged")
                card.merged = str(out / "merged")
        except OSError as error:
            raise MedcouncilError(
                f"cannot write the trained model to {out} ({error.strerror or error}); the final "
                f"checkpoint is in {out / checkpoint.CHECKPOINTS}"
            ) from error
        write_card(out, card)

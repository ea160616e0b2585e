"""Training on several processes (``torchrun`` / ``accelerate launch``): how a step is shared, who writes, what a
run resumed on another number of processes keeps, and FSDP sharding for full fine-tuning.

- **One global order.** An optimizer step takes the next ``grad_accum x processes`` micro-batches of the seeded
  global order (``train.micro_batches``); process r takes micro-batches r, r + N, r + 2N… So the step's examples
  do not depend on N, and a checkpoint (taken at a step boundary) resumes on any N that divides the step's
  micro-batches.
- **The same gradient.** Every process counts the labelled units of the whole step (it collates every
  micro-batch of the step; collating is cheap) and scales its losses by N / that count; DDP and FSDP average
  gradients over the N processes, so the update equals the 1-process update of the same step, up to the order of
  float sums.
- **The same random numbers.** Dropout (and GRPO's sampling) draw from a seed per micro-batch (``micro_seed``):
  micro-batch k of step s sees the same numbers on any number of processes.
- **One writer.** Only the main process writes checkpoints, the adapter (or model) and the run card; the others
  wait at a barrier.
- **FSDP** (``--fsdp``, full fine-tuning): each decoder layer and the loss module are sharded with PyTorch's
  ``fully_shard``; weights and optimizer states are gathered whole into the checkpoint, so it resumes with or
  without sharding and on any N.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn

from medcouncil.serving.common.errors import ConfigError
from medcouncil.serving.training import checkpoint
from medcouncil.serving.training.config import FinetuneConfig

T = TypeVar("T")


def launch_rank() -> int:
    """This process's rank under ``torchrun`` / ``accelerate launch`` (``RANK``), 0 when not launched."""
    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        return 0


def is_main_launch() -> bool:
    """Whether this process prints (the command's messages and progress bar): rank 0, or not launched."""
    return launch_rank() == 0


def micro_seed(seed: int, step: int, index: int) -> int:
    """The random seed of micro-batch ``index`` of optimizer step ``step`` (both from 0)."""
    return (seed * 1_000_003 + step * 9_176 + index * 7_919 + 12_345) % (2**63 - 1)


def my_share(items: Sequence[T], rank: int, processes: int) -> list[tuple[int, T]]:
    """(index in the step, micro-batch) of the step's micro-batches this process computes."""
    return list(enumerate(items))[rank::processes]


def reduce_sum(accelerator: Any, value: float) -> float:
    """``value`` summed over every process (itself when there is one)."""
    if accelerator.num_processes == 1:
        return value
    total = accelerator.reduce(torch.tensor([value], dtype=torch.float64, device=accelerator.device), "sum")
    return float(total.item())


def saved_step(out: Path) -> tuple[int, int | None] | None:
    """(micro-batches per optimizer step across every process, processes) of the run's latest checkpoint; the
    processes are None for a checkpoint written before they were recorded; None without a checkpoint."""
    latest = checkpoint.latest(out)
    if latest is None:
        return None
    try:
        card = json.loads((latest / checkpoint.STATE).read_text(encoding="utf-8"))["card"]
        processes = card.get("processes")
        return int(card["config_fields"]["grad_accum"]), None if processes is None else int(processes)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def resumed_on(config: FinetuneConfig, processes: int) -> FinetuneConfig:
    """The settings of a run resumed on ``processes`` processes: the same micro-batches per step as the run's
    checkpoint, shared by the new number of processes.

    Raises:
        ConfigError: the checkpoint's micro-batches per step cannot be shared evenly by ``processes``; a DeepSpeed
            run on another number of processes; a checkpoint that does not record its processes, on several.
    """
    saved = saved_step(config.out)
    if saved is None:
        return config
    total, before = saved
    where = f"--resume {config.out}"
    if before is None and processes > 1:
        raise ConfigError(
            f"{where}: its checkpoint does not record how many processes wrote it (an older medcouncil): resume "
            f"it on the number of processes it was trained on, without a launcher if that was one"
        )
    if config.deepspeed is not None and before not in (None, processes):
        raise ConfigError(
            f"{where}: it holds DeepSpeed's optimizer shards of {before} processes: resume it on {before}"
        )
    if total % processes:
        fits = ", ".join(str(n) for n in range(1, total + 1) if total % n == 0)
        raise ConfigError(
            f"{where}: each step of this run takes {total} micro-batches of {config.batch_size} examples; "
            f"{processes} processes cannot share them evenly: launch {fits} processes"
        )
    mine = config.global_batch // config.batch_size if config.global_batch else config.grad_accum * processes
    if mine == total:
        return config
    return config.model_copy(update={"grad_accum": 1, "global_batch": total * config.batch_size})


class StopRequest:
    """Ctrl-C on several processes: SIGINT only raises a flag, and every process stops after the same step.

    torchrun sends SIGINT to every worker. Were each to stop where the signal finds it, one could wait in a
    checkpoint's barrier while another waits in a layer's all-gather (FSDP, ZeRO-3), and the run would hang until
    torchrun's SIGKILL, with no checkpoint. So the flag is summed over the processes at the end of each step
    (:meth:`agreed`), and all of them take the Ctrl-C path after that step together. One process keeps the
    immediate Ctrl-C (the step in progress is discarded)."""

    def __init__(self, processes: int) -> None:
        self.active = processes > 1 and threading.current_thread() is threading.main_thread()
        self.asked = False
        self._previous: Any = None

    def __enter__(self) -> StopRequest:
        if self.active:
            self._previous = signal.signal(signal.SIGINT, self._ask)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.active:
            signal.signal(signal.SIGINT, self._previous)

    def _ask(self, signum: int, frame: Any) -> None:
        del signum, frame
        self.asked = True

    def agreed(self, accelerator: Any) -> bool:
        """Whether any process was asked to stop (every process calls it once per step)."""
        return self.active and reduce_sum(accelerator, float(self.asked)) > 0

    def guard(self) -> Any:
        """What holds Ctrl-C during an update: the flag itself, or (one process) ``deferred_interrupt``."""
        return contextlib.nullcontext() if self.active else checkpoint.deferred_interrupt()


def check_fsdp(config: FinetuneConfig) -> None:
    """Raises ConfigError when ``--fsdp`` is asked for what it does not shard here, or accelerate's launch asks
    for DeepSpeed (``--deepspeed`` is medcouncil's way: ``zero``)."""
    if os.environ.get("ACCELERATE_USE_DEEPSPEED", "").lower() in ("1", "true"):
        raise ConfigError(
            "accelerate's DeepSpeed launch would let DeepSpeed's engine take over the step: give medcouncil the "
            "DeepSpeed config instead (finetune --deepspeed ds.json, under torchrun or a plain accelerate launch)"
        )
    if not config.fsdp:
        return
    if config.method != "full" or config.objective != "sft":
        raise ConfigError(
            "--fsdp shards full fine-tuning (--method full, SFT); LoRA adapters are small: train them with DDP "
            "(launch without --fsdp)"
        )
    if config.merge:
        raise ConfigError("--merge is for LoRA adapters; --fsdp trains every weight (the output is the model)")


def decoder_layers(model: nn.Module) -> list[nn.Module]:
    """The repeated blocks of a causal LM (``model.model.layers`` for Llama, Gemma, Qwen, Mistral…)."""
    found = [m for name, m in model.named_modules() if name.endswith(".layers") and isinstance(m, nn.ModuleList)]
    if not found:
        raise ConfigError("--fsdp: cannot find this model's decoder layers (no '*.layers' list of blocks)")
    return list(found[0])


def shard(loss_fn: nn.Module, model: nn.Module, device: Any) -> None:
    """Shard ``model``'s decoder layers, then the rest (embeddings, norm, head) under ``loss_fn``, the module whose
    forward runs the step. (One process keeps the model whole; its checkpoints are keyed by name all the same, so
    that a run resumes sharded or not.)"""
    from torch.distributed.fsdp import fully_shard

    loss_fn.to(device)
    for layer in decoder_layers(model):
        fully_shard(layer)
    fully_shard(loss_fn)


def set_gradient_sync(loss_fn: nn.Module, sync: bool) -> None:
    """FSDP's ``no_sync``: gradients of a micro-batch that is not the step's last stay local."""
    setter = getattr(loss_fn, "set_requires_gradient_sync", None)
    if setter is not None:
        setter(sync)


def full_weights(model: nn.Module, trainable_only: bool = True) -> dict[str, Any]:
    """The trainable weights (or the whole state) of a sharded ``model``, whole, on the CPU of the main process
    (empty elsewhere). Every process must call it (it gathers)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    names = kept_names(model, trainable_only)
    return {k: v for k, v in state.items() if k in names}


def kept_names(model: nn.Module, trainable_only: bool) -> set[str]:
    """The state keys a gathered copy of ``model`` keeps: its trainable parameters, or every parameter and
    buffer; a tied weight (Gemma's head is its embedding) once, under its first name, as the model's own saving
    does."""
    names = {n for n, p in model.named_parameters() if p.requires_grad or not trainable_only}
    if not trainable_only:
        names |= {n for n, _ in model.named_buffers()}
    return names


def full_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """The optimizer's state keyed by parameter name, whole, on the main process's CPU; every process calls it."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    return dict(get_optimizer_state_dict(model, optimizer, options=options))


def load_full_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """Load a name-keyed whole optimizer state into a (sharded or not) ``model``'s optimizer; every process."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    options = StateDictOptions(full_state_dict=True)
    set_optimizer_state_dict(model, optimizer, optim_state_dict=state, options=options)

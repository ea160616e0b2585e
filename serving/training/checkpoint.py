"""Training checkpoints: written whole or not at all, so a full disk or a kill never costs a finished one.

A checkpoint is a folder ``OUT/checkpoints/step-NNNNNN`` holding the trainable weights, the optimizer and scheduler
states, the RNG states and the progress so far (``state.json``). It is written under a temporary name and renamed
into place once complete; older checkpoints are removed only after a newer one is in place.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import random
import shutil
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from medcouncil.serving.common.errors import ConfigError, MedcouncilError

CHECKPOINTS = "checkpoints"
STATE = "state.json"
TENSORS = "training.pt"
ENGINE_FILES = "deepspeed"
"""The key of ``save``'s ``given`` saying that DeepSpeed's files are in the partial folder (under this name)."""
OPTIMIZER_BY_NAME = "optimizer_by_name"
"""A sharded run's optimizer state, gathered whole and keyed by parameter name (``optimizer``: a plain
``state_dict``)."""
DISK_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


class DiskFullError(MedcouncilError):
    """A checkpoint could not be written for lack of space; the previous one is intact."""


def prepare_out(out: Path) -> None:
    """Make ``out`` before the model is loaded and trained, and check it takes files: an output that is a file, or a
    folder that cannot be written, fails here in one line, not at the first checkpoint (with every step before it
    lost).

    Raises:
        ConfigError: ``out`` or a folder above it is a file, or it cannot be created or written.
    """
    blocked = next((p for p in (out, *out.parents) if p.exists() and not p.is_dir()), None)
    if blocked is not None:
        what = "it is" if blocked == out else f"{blocked} is"
        raise ConfigError(f"--out {out}: {what} a file, not a folder: choose a folder for the adapter and checkpoints")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise ConfigError(f"--out {out}: cannot write there ({error.strerror or error})") from None


def checkpoint_dirs(out: Path) -> list[Path]:
    """Finished checkpoints, oldest first."""
    folder = out / CHECKPOINTS
    if not folder.is_dir():
        return []
    found = [
        p
        for p in folder.iterdir()
        if p.is_dir()
        and p.name.removeprefix("step-").isdigit()
        and p.name.startswith("step-")
        and (p / STATE).is_file()
    ]  # a copy a user made beside them (``step-2-backup``) is not one
    return sorted(found, key=lambda p: int(p.name.removeprefix("step-")))


def latest(out: Path) -> Path | None:
    found = checkpoint_dirs(out)
    return found[-1] if found else None


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The parameters that train (the adapters, or every weight for full fine-tuning), detached on the CPU."""
    return {name: p.detach().cpu().clone() for name, p in model.named_parameters() if p.requires_grad}


def rng_state() -> dict[str, Any]:
    return {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def write_whole(
    folder: Path, name: str, tensors: dict[str, Any], state: dict[str, Any], keep_partial: bool = False
) -> Path:
    """``folder/name`` holding ``tensors`` (``TENSORS``) and ``state`` (``STATE``, synced), written under a hidden
    temporary name and renamed into place once complete; a folder of that name is replaced. ``keep_partial``: the
    temporary folder already holds files of other writers (:func:`partial_folder`), which go with it.

    Raises:
        OSError: the write failed; the temporary folder is removed and ``folder/name`` is as it was.
    """
    target = folder / name
    partial = folder / f".{name}.partial"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if not keep_partial:
            shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(exist_ok=keep_partial)
        torch.save(tensors, partial / TENSORS)
        with (partial / STATE).open("w", encoding="utf-8") as handle:
            json.dump(state, handle)
            handle.flush()
            os.fsync(handle.fileno())
        if target.exists():
            shutil.rmtree(target)
        os.replace(partial, target)
    except OSError:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return target


def partial_folder(out: Path, step: int, main: bool) -> Path:
    """The temporary folder of ``step``'s checkpoint, emptied and made by the main process, into which an engine
    writes its own files before :func:`save` completes and renames it (every process calls it; only ``main``
    touches the disk; wait for it before writing)."""
    partial = out / CHECKPOINTS / f".step-{step:06d}.partial"
    if main:
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
    return partial


def save(
    out: Path,
    step: int,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    progress: dict[str, Any],
    keep: int,
    given: dict[str, Any] | None = None,
) -> Path:
    """Write the checkpoint of ``step`` atomically and prune to the newest ``keep``. ``given`` replaces what would
    be read from the objects: ``rng`` (the random state to resume with; default: the current one), or a sharded
    model's gathered weights (``model``) and optimizer state (``OPTIMIZER_BY_NAME``); ``ENGINE_FILES`` true: an
    engine (DeepSpeed) wrote its optimizer state into :func:`partial_folder` already.

    Raises:
        DiskFullError: no space (or a file size limit) while writing; the partial folder is removed and every
            finished checkpoint is left as it was.
    """
    folder = out / CHECKPOINTS
    given = given or {}
    tensors: dict[str, Any] = {"scheduler": scheduler.state_dict(), "rng": given.get("rng") or rng_state()}
    tensors["model"] = given["model"] if "model" in given else trainable_state(model)
    if OPTIMIZER_BY_NAME in given:
        tensors[OPTIMIZER_BY_NAME] = given[OPTIMIZER_BY_NAME]
    elif not given.get(ENGINE_FILES):
        tensors["optimizer"] = optimizer.state_dict()
    try:
        name = f"step-{step:06d}"
        target = write_whole(folder, name, tensors, {"step": step, **progress}, bool(given.get(ENGINE_FILES)))
    except OSError as error:
        raise write_failure(out, step, error) from error
    for old in checkpoint_dirs(out)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return target


def write_failure(out: Path, step: int, error: OSError, part: str = "") -> MedcouncilError:
    """The one-line error of a checkpoint write that failed (``part``: what of it, when an engine wrote it):
    :class:`DiskFullError` when the disk or a quota is full; both name the last finished checkpoint, intact."""
    folder = out / CHECKPOINTS
    previous = latest(out)
    kept = f"the last finished checkpoint ({previous}) is intact" if previous else "no earlier checkpoint"
    what = f"checkpoint step {step}{f' ({part})' if part else ''} to {folder}"
    if error.errno in DISK_FULL:
        return DiskFullError(f"disk full while writing {what}: {kept}; free space and continue with --resume")
    return MedcouncilError(f"cannot write {what} ({error.strerror or error}): {kept}")


def load(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(tensors, progress) of a checkpoint folder.

    Raises:
        MedcouncilError: the checkpoint is unreadable.
    """
    try:
        progress = json.loads((path / STATE).read_text(encoding="utf-8"))
        tensors = torch.load(path / TENSORS, map_location="cpu", weights_only=False, mmap=True)  # read as needed
    except (OSError, ValueError, RuntimeError) as error:
        raise MedcouncilError(f"{path}: cannot read checkpoint ({error})") from error
    return tensors, progress


def apply(model: torch.nn.Module, tensors: dict[str, Any]) -> None:
    """Copy a checkpoint's trainable weights into ``model`` (names must match exactly).

    Raises:
        MedcouncilError: the checkpoint was written for another model or method.
    """
    params = {name: p for name, p in model.named_parameters() if p.requires_grad}
    saved: dict[str, torch.Tensor] = tensors["model"]
    if set(saved) != set(params) or any(saved[k].shape != params[k].shape for k in saved):
        raise MedcouncilError(
            "the checkpoint's weights do not match this model and method (another --base, "
            "--method or --target-modules?)"
        )
    with torch.no_grad():
        for name, value in saved.items():
            params[name].copy_(value)


@contextlib.contextmanager
def deferred_interrupt() -> Iterator[None]:
    """Hold Ctrl-C (SIGINT) until the block is done, then raise it: a checkpoint never sees half an update."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught:
        raise KeyboardInterrupt

"""DeepSpeed ZeRO under medcouncil's training loop (``finetune --deepspeed ds.json``).

The user's DeepSpeed file says how to shard and where to offload (``zero_optimization``: stage 1-3, offload of
parameters or optimizer states, ``bf16``/``fp16``, ``gradient_clipping``…). The loop keeps what makes a run the same
on any number of processes (``distributed``): its batch (the file's batch keys are set from ``--batch-size`` and the
global batch, or refused when they disagree), its optimizer and schedule (a file's ``optimizer``/``scheduler`` is
refused: the flags set them) and its accumulation. DeepSpeed runs with ``managed_gradient_accumulation`` off: each
``backward`` only accumulates, the loop's one ``step`` per optimizer step reduces and updates.

ZeRO shards the optimizer states by rank, so a checkpoint keeps DeepSpeed's own files beside the gathered weights
and resumes on the same number of processes (another number is refused in one line).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import nn

from medcouncil.serving.common.errors import ConfigError, MedcouncilError, first_line
from medcouncil.serving.training import checkpoint
from medcouncil.serving.training.config import FinetuneConfig
from medcouncil.serving.training.distributed import kept_names

DEEPSPEED_DIR = checkpoint.ENGINE_FILES
"""A DeepSpeed run's checkpoint files (every rank's optimizer shard), inside medcouncil's checkpoint folder."""
TAG = "state"


def read_config(path: Path) -> dict[str, Any]:
    """A DeepSpeed config file (JSON, or YAML).

    Raises:
        ConfigError: missing, unreadable, not UTF-8, not JSON / YAML, a key given twice, not a mapping, or a ZeRO
            stage that is not 0-3.
    """
    from medcouncil.serving.common.jsonl import BadLine, read_text
    from medcouncil.serving.common.yamlfile import parse_yaml

    try:
        text = read_text(path)
    except BadLine as error:
        raise ConfigError(f"--deepspeed {error}") from None
    except OSError as error:
        raise ConfigError(f"--deepspeed {path}: cannot read it ({error.strerror or error})") from None
    if path.suffix != ".json":
        data = parse_yaml(path, text)  # a key given twice is an error there too
    else:
        try:
            data = json.loads(text, object_pairs_hook=_unique_keys)
        except (ValueError, RecursionError) as error:
            raise ConfigError(f"--deepspeed {path}: not valid json ({first_line(error)})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"--deepspeed {path}: expected a mapping of DeepSpeed settings")
    zero = data.get("zero_optimization")
    if zero is not None and not isinstance(zero, dict):
        raise ConfigError(f"--deepspeed {path}: zero_optimization must be a mapping (stage: 0-3, ...), got {zero!r}")
    stage = (zero or {}).get("stage", 0)
    if isinstance(stage, bool) or not isinstance(stage, int) or not 0 <= stage <= 3:
        raise ConfigError(f"--deepspeed {path}: zero_optimization.stage must be 0, 1, 2 or 3, got {stage!r}")
    return data


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    if twice := sorted({key for key in keys if keys.count(key) > 1}):
        raise ValueError(f"key {twice[0]!r} given twice in one object")
    return dict(pairs)


def engine_config(config: FinetuneConfig, processes: int) -> dict[str, Any]:
    """The DeepSpeed settings of this run: the user's file with the loop's batch, accumulation and step.

    Raises:
        ConfigError: the file sets an optimizer or scheduler, or batch keys other than the run's.
    """
    assert config.deepspeed is not None
    path = Path(config.deepspeed)
    settings = read_config(path)
    if owned := [key for key in ("optimizer", "scheduler") if key in settings]:
        raise ConfigError(
            f"--deepspeed {path}: remove {' and '.join(owned)}: medcouncil's flags set them (--lr, --warmup-steps, "
            f"--weight-decay), the same with or without DeepSpeed"
        )
    if "checkpoint" in settings:
        raise ConfigError(
            f"--deepspeed {path}: remove checkpoint: medcouncil writes each checkpoint whole before it counts, "
            f"which a decoupled or asynchronous writer would not finish"
        )
    accum = config.accumulation(processes)
    batch = {
        "train_micro_batch_size_per_gpu": config.batch_size,
        "gradient_accumulation_steps": accum,
        "train_batch_size": config.batch_size * accum * processes,
    }
    for key, value in batch.items():
        given = settings.get(key, "auto")
        if given != "auto" and given != value:
            raise ConfigError(
                f"--deepspeed {path}: {key} is {given}, this run's is {value} (--batch-size, --global-batch and "
                f'the processes set it): remove it or write "auto"'
            )
    zero = dict(settings.get("zero_optimization") or {})
    if int(zero.get("stage", 0)) < 2:  # DeepSpeed overlaps communication with an unmanaged step from stage 2 on
        zero["overlap_comm"] = False
    return {
        "gradient_clipping": 0.0,  # DeepSpeed clips at 1.0 unless told; the loop does not clip
        "zero_force_ds_cpu_optimizer": False,  # offloaded states with the loop's AdamW (DeepSpeed's own is faster)
        **settings,
        **batch,
        "zero_optimization": zero,
        "managed_gradient_accumulation": False,
        "steps_per_print": 2**31 - 1,
        "wall_clock_breakdown": False,
    }


WEIGHT_KEYS = (
    "gradient_clipping",
    "bf16",
    "bfloat16",
    "fp16",
    "amp",
    "torch_autocast",
    "data_types",
    "communication_data_type",
    "prescale_gradients",
    "gradient_predivide_factor",
)
"""The DeepSpeed settings that change the weights a step gives; offload, bucket sizes and logging do not."""
ZERO_WEIGHT_KEYS = (
    "stage",
    "zero_quantized_gradients",
    "zero_quantized_weights",
    "zero_quantized_nontrainable_weights",
    "zero_hpz_partition_size",
)
"""Of ``zero_optimization``: the stage (its shards are saved by it) and ZeRO++'s quantised communication."""


def weight_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """What of a run's DeepSpeed settings (:func:`engine_config`) a resumed run must keep: the file may be edited
    between segments. A precision section that is not enabled is left out (adding one switched off changes
    nothing)."""
    kept = {
        key: settings[key]
        for key in WEIGHT_KEYS
        if key in settings and not (isinstance(settings[key], dict) and not settings[key].get("enabled", True))
    }
    zero = settings["zero_optimization"]
    kept["zero"] = {key: zero[key] for key in ZERO_WEIGHT_KEYS if key in zero} | {"stage": int(zero.get("stage", 0))}
    return kept


def check(config: FinetuneConfig) -> None:
    """Raises ConfigError for what ``--deepspeed`` does not run here."""
    if config.deepspeed is None:
        return
    if config.fsdp:
        raise ConfigError("--deepspeed and --fsdp both shard the model: choose one")
    if config.objective != "sft":
        raise ConfigError(f"--deepspeed trains SFT (--method lora or full); {config.objective} runs without it")
    if config.merge:
        raise ConfigError("--merge with --deepspeed: merge the saved adapter afterwards (peft merge_and_unload)")


def initialize(loss_fn: nn.Module, optimizer: torch.optim.Optimizer, settings: dict[str, Any]) -> Any:
    """The DeepSpeed engine around ``loss_fn`` with the loop's ``optimizer`` (its schedule stays the loop's).

    Raises:
        ConfigError: deepspeed is not installed.
    """
    if not torch.cuda.is_available():
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    try:
        import deepspeed
    except ImportError as error:
        raise ConfigError(
            f"--deepspeed needs the deepspeed package ({error}): pip install 'medcouncil[deepspeed]'"
        ) from None
    from deepspeed.runtime.zero.utils import ZeRORuntimeException

    _one_process_group()
    try:
        engine, _, _, _ = deepspeed.initialize(model=loss_fn, optimizer=optimizer, config=settings)
    except (AssertionError, ValueError, RuntimeError, KeyError, TypeError, ZeRORuntimeException) as error:
        raise ConfigError(f"DeepSpeed refused the configuration: {first_line(error)}") from None
    return engine


def _one_process_group() -> None:
    """Without a launcher there is no process group, and DeepSpeed would look for MPI: one process of its own, on
    a free loopback port."""
    import torch.distributed as dist

    from medcouncil.serving.state import free_port

    if dist.is_initialized():
        return
    for key, value in (
        ("MASTER_ADDR", "127.0.0.1"),
        ("MASTER_PORT", str(free_port())),
        ("RANK", "0"),
        ("LOCAL_RANK", "0"),
    ):
        os.environ.setdefault(key, value)
    os.environ.setdefault("WORLD_SIZE", "1")
    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo", rank=0, world_size=1)


def save(engine: Any, out: Path, step: int, accelerator: Any) -> None:
    """Every rank's DeepSpeed files of ``step`` into the checkpoint's partial folder (every process calls it);
    :func:`checkpoint.save` then completes the folder and renames it into place.

    Raises:
        DiskFullError: no space; the partial folder is removed and every finished checkpoint is intact.
        MedcouncilError: another write error.
    """
    partial = checkpoint.partial_folder(out, step, accelerator.is_main_process)
    accelerator.wait_for_everyone()
    try:
        engine.save_checkpoint(str(partial / DEEPSPEED_DIR), tag=TAG, save_latest=False)
    except OSError as error:
        shutil.rmtree(partial, ignore_errors=True)
        raise checkpoint.write_failure(out, step, error, "DeepSpeed's optimizer shards") from None


def is_engine(module: Any) -> bool:
    return hasattr(module, "is_gradient_accumulation_boundary") and hasattr(module, "save_checkpoint")


class EngineStep:
    """The loop's optimizer calls on a DeepSpeed engine: ``step`` reduces the accumulated gradients and updates
    (DeepSpeed zeroes them after), ``zero_grad`` has nothing left to do."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine

    def step(self) -> None:
        self.engine.step()

    def zero_grad(self, set_to_none: bool = True) -> None:
        del set_to_none


def full_weights(engine: Any, model: nn.Module, trainable_only: bool = True) -> dict[str, torch.Tensor]:
    """``model``'s weights whole on the main process's CPU (ZeRO-3 gathers them: every process calls this)."""
    names = kept_names(model, trainable_only)
    if engine.zero_optimization_partition_weights():
        state = engine._zero3_consolidated_16bit_state_dict() or {}
        prefix = "model."  # the engine holds the loss module, whose ``model`` is the model
        whole = {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}
    else:
        whole = {n: p.detach().cpu().clone() for n, p in model.state_dict(keep_vars=True).items()}
    return {k: v.detach() for k, v in whole.items() if k in names}


def load(engine: Any, folder: Path) -> None:
    """Every rank's optimizer shard (and the weights) from a checkpoint ``folder`` that DeepSpeed wrote into.

    Raises:
        MedcouncilError: DeepSpeed's files are missing or do not load.
    """
    files = folder / DEEPSPEED_DIR
    if not files.is_dir():
        raise MedcouncilError(f"--resume: {folder} holds no DeepSpeed state ({files}): it was not a DeepSpeed run")
    try:
        loaded, _ = engine.load_checkpoint(
            str(files), tag=TAG, load_optimizer_states=True, load_lr_scheduler_states=False, load_module_strict=False
        )
    except (OSError, RuntimeError, KeyError, ValueError, AssertionError) as error:
        raise MedcouncilError(f"--resume: DeepSpeed could not load {files}: {first_line(error)}") from None
    if loaded is None:
        raise MedcouncilError(f"--resume: DeepSpeed could not load {files}")

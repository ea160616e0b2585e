"""vLLM at its sizes: tensor, pipeline and data parallelism on one node or across a Ray cluster.

:func:`check_sizes` refuses an impossible combination while the config is read, before any engine starts (a
llama.cpp engine given vLLM's sizes, more GPUs than the nodes have, several nodes without Ray, LoRA limits vLLM
rejects). :func:`check_model` adds what the model's own ``config.json`` decides (attention heads divisible by the
tensor size, enough layers for the stages, the context length). :func:`plan` is what ``serve --dry-run`` prints:
the engine's command line, and for a cluster the ``ray start`` commands of the head and of each worker before it.
"""

from __future__ import annotations

import json
import os
import re
import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from medcouncil.serving.common.errors import ConfigError

if TYPE_CHECKING:
    from medcouncil.serving.config import EngineConfig

VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
"""The ranks vLLM's ``--max-lora-rank`` accepts."""
HEAD_ADDRESS = "HEAD_IP"
"""Stands for the Ray head's address in printed cluster commands."""


MANAGED_FLAGS = frozenset({"--host", "--port", "--api-key", "--model", "--served-model-name", "--uds"})
"""vLLM flags medcouncil sets itself: given again in ``extra_args`` they would bind beyond 127.0.0.1, put a key in
the process list or answer on a port medcouncil does not watch."""


def managed_flags(args: list[str]) -> list[str]:
    """The ``extra_args`` that would set what medcouncil manages, as vLLM's parser reads them: ``_`` for ``-``, an
    unambiguous prefix (``--hos``), or ``--config`` (a file that may set any of them)."""
    found = []
    for arg in args:
        if not arg.startswith("--"):
            continue
        name = arg.split("=", 1)[0].replace("_", "-")
        if name == "--config" or any(flag.startswith(name) and len(name) > 3 for flag in MANAGED_FLAGS):
            found.append(arg.split("=", 1)[0])
    return sorted(set(found))


def gpus(config: EngineConfig) -> int:
    """GPUs the engine uses: tensor x pipeline x data parallel sizes."""
    return config.tensor_parallel_size * config.pipeline_parallel_size * config.data_parallel_size


def check_sizes(config: EngineConfig) -> None:
    """Raises: ValueError (the config's validation error, one line): an impossible combination."""
    vllm_only = {
        "tensor_parallel_size": config.tensor_parallel_size > 1,
        "pipeline_parallel_size": config.pipeline_parallel_size > 1,
        "data_parallel_size": config.data_parallel_size > 1,
        "nodes": config.nodes > 1,
        "distributed_executor_backend": config.distributed_executor_backend is not None,
        "max_loras": config.max_loras is not None,
        "max_cpu_loras": config.max_cpu_loras is not None,
    }
    if config.engine == "llamacpp" and (given := [name for name, on in vllm_only.items() if on]):
        raise ValueError(f"{', '.join(given)}: vLLM settings; llama.cpp serves from one process (use engine vllm)")
    if config.nodes > 1 and config.distributed_executor_backend == "mp":
        raise ValueError("nodes > 1 needs distributed_executor_backend ray: vLLM spans machines only through Ray")
    if config.gpus_per_node is not None and gpus(config) > config.nodes * config.gpus_per_node:
        raise ValueError(
            f"tensor {config.tensor_parallel_size} x pipeline {config.pipeline_parallel_size} x data "
            f"{config.data_parallel_size} = {gpus(config)} GPUs, but {config.nodes} node(s) x "
            f"{config.gpus_per_node} GPUs have {config.nodes * config.gpus_per_node}"
        )
    idle = (config.nodes - 1) * (config.gpus_per_node or 1)
    if config.nodes > 1 and gpus(config) <= idle:
        raise ValueError(
            f"{config.nodes} nodes but the sizes use {gpus(config)} GPU(s): {config.nodes - 1} node(s) would do"
        )
    if config.engine == "vllm" and config.max_lora_rank is not None and config.max_lora_rank not in VLLM_LORA_RANKS:
        ranks = ", ".join(map(str, VLLM_LORA_RANKS))
        raise ValueError(f"max_lora_rank {config.max_lora_rank}: vLLM accepts {ranks}")
    limits = [name for name in ("max_lora_rank", "max_loras", "max_cpu_loras") if getattr(config, name) is not None]
    if config.engine == "vllm" and limits and not config.lora and "--enable-lora" not in config.extra_args:
        raise ValueError(
            f"{', '.join(limits)}: LoRA limits without an adapter (give lora: NAME=PATH, or --enable-lora in "
            "extra_args for adapters loaded at run time)"
        )
    if config.engine == "vllm" and (managed := managed_flags(config.extra_args)):
        raise ValueError(
            f"extra_args {', '.join(managed)}: medcouncil sets these itself (127.0.0.1, its own port, the key "
            "through the environment; --config could set any of them); use the config's own fields"
        )
    if config.max_cpu_loras is not None and config.max_cpu_loras < (config.max_loras or 1):
        raise ValueError(f"max_cpu_loras {config.max_cpu_loras} is below max_loras {config.max_loras or 1}")


def local_gpus() -> int | None:
    """GPUs this host shows (``CUDA_VISIBLE_DEVICES``, else ``/dev/nvidiaN``); None when it cannot tell."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip() and d.strip() != "-1"])
    devices = [p for p in Path("/dev").glob("nvidia*") if re.fullmatch(r"nvidia\d+", p.name)]
    return len(devices) if devices else None


def _text_config(folder: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    inner = data.get("text_config")  # multimodal configs (Gemma 3 4B+, MedGemma) nest the language model's
    return {**data, **inner} if isinstance(inner, dict) else data


def check_model(config: EngineConfig, folder: Path | None) -> None:
    """What the model's ``config.json`` decides, when the model is a local folder.

    Raises:
        ConfigError: heads not divisible by the tensor size, fewer layers than stages, a context longer than the
            model's positions; or GPUs this host lacks (one node, ``gpus_per_node`` unset).
    """
    if config.engine != "vllm":
        return
    if config.nodes == 1 and config.gpus_per_node is None and (found := local_gpus()) and gpus(config) > found:
        raise ConfigError(f"the sizes use {gpus(config)} GPUs; this host shows {found} (CUDA_VISIBLE_DEVICES)")
    model = _text_config(folder) if folder is not None and folder.is_dir() else None
    if model is None:
        return
    where = folder / "config.json" if folder is not None else "config.json"
    heads, layers = model.get("num_attention_heads"), model.get("num_hidden_layers")
    if isinstance(heads, int) and heads % config.tensor_parallel_size:
        raise ConfigError(f"{where}: {heads} attention heads do not split over tensor_parallel_size "
                          f"{config.tensor_parallel_size}")  # fmt: skip
    if isinstance(layers, int) and layers < config.pipeline_parallel_size:
        raise ConfigError(f"{where}: {layers} layers cannot make {config.pipeline_parallel_size} pipeline stages")
    positions = model.get("max_position_embeddings")
    scaling = model.get("rope_scaling")
    factor = float(scaling.get("factor", 1.0)) if isinstance(scaling, dict) else 1.0  # YaRN and kin stretch it
    allowed = os.environ.get("VLLM_ALLOW_LONG_MAX_MODEL_LEN") == "1"  # vLLM's own override, honoured
    if (
        isinstance(positions, int)
        and config.max_model_len
        and config.max_model_len > positions * factor
        and not allowed
    ):
        raise ConfigError(
            f"{where}: max_model_len {config.max_model_len} is above the model's {int(positions * factor)} "
            "(VLLM_ALLOW_LONG_MAX_MODEL_LEN=1 overrides, as for vLLM)"
        )


def size_args(config: EngineConfig) -> list[str]:
    """The engine flags of the sizes (none at the defaults)."""
    args: list[str] = []
    for flag, value in (
        ("--tensor-parallel-size", config.tensor_parallel_size),
        ("--pipeline-parallel-size", config.pipeline_parallel_size),
        ("--data-parallel-size", config.data_parallel_size),
    ):
        args += [flag, str(value)] if value > 1 else []
    backend = config.distributed_executor_backend or ("ray" if config.nodes > 1 else None)
    if backend:
        args += ["--distributed-executor-backend", backend]
    if config.nodes > 1 and config.data_parallel_size > 1:
        args += ["--data-parallel-backend", "ray"]  # the replicas placed by Ray, launched from the head
    return args


class PlanStep(BaseModel):
    """One command of a deployment, and where it runs."""

    where: str
    command: list[str]
    environment: list[str] = []
    """Variables it needs (names only: a key's value never appears)."""

    def line(self) -> str:
        return shlex.join(self.command)


def plan(config: EngineConfig, command: list[str]) -> list[PlanStep]:
    """The deployment of ``command`` (the engine's command line): on one node the command itself; on a cluster
    first the Ray head and each worker joining it (``ray start``), then the engine on the head."""
    environment = sorted(config.environment())
    if config.nodes == 1:
        return [PlanStep(where="this host", command=command, environment=environment)]
    head = ["ray", "start", "--head", f"--port={config.ray_port}"]
    worker = ["ray", "start", f"--address={HEAD_ADDRESS}:{config.ray_port}"]
    if config.gpus_per_node:
        head.append(f"--num-gpus={config.gpus_per_node}")
        worker.append(f"--num-gpus={config.gpus_per_node}")
    return [
        PlanStep(where="the head node", command=head),
        PlanStep(where=f"each of the {config.nodes - 1} worker node(s)", command=worker),
        PlanStep(where="the head node, once `ray status` shows every node", command=command, environment=environment),
    ]

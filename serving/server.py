"""Starting, checking and stopping engine processes, with a state file for detached servers."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, ValidationError

from medcouncil.serving.config import HOST, EngineConfig
from medcouncil.serving.convert import converted_folder
from medcouncil.serving.errors import PortInUseError, ServerStartError
from medcouncil.serving.health import is_healthy
from medcouncil.serving.locks import held
from medcouncil.serving.lora_gguf import check_base, gguf_lora
from medcouncil.serving.model_file import embedded_gguf, model_digest, weights_identity
from medcouncil.serving.paths import state_dir, write_private

LOG_TAIL_LINES = 12


class ServerState(BaseModel):
    """A running engine, as written to the state file."""

    pid: int | None
    """None for an external endpoint registered with ``serve --endpoint URL --detach``."""
    port: int
    engine: str
    model: str
    served_model_name: str
    log_path: Path
    started_at: datetime
    api_key: str | None = None
    endpoint: str | None = None
    """Base URL of an external endpoint; medcouncil neither started nor stops it."""
    weights: str = ""
    """:func:`weights_identity` of the served model and adapters (keys the response caches)."""
    adapters: dict[str, str] = {}
    """Served adapter name -> its folder (the PEFT adapter and its ``run.json`` card)."""
    start_ticks: int | None = None
    """The process's start time (clock ticks since boot, from ``/proc``): with the pid, it names this engine and no
    later process that reuses the pid."""

    @property
    def base_url(self) -> str:
        return self.endpoint or f"http://{HOST}:{self.port}/v1"


def state_path() -> Path:
    return state_dir() / "server.json"


def read_state() -> ServerState | None:
    """The recorded server, or None when there is none or its process is gone (the stale file is removed).

    An unreadable state file is kept aside with a warning naming it, never deleted silently; when no file records a
    server, a detached engine medcouncil started that still runs is found again and recorded
    (:mod:`medcouncil.serving.recovery`), so that it is neither lost nor started twice.
    """
    from medcouncil.serving.recovery import recover

    path = state_path()
    try:
        state = ServerState.model_validate_json(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return recover(path)
    except (ValidationError, ValueError, OSError) as error:
        return recover(path, error)
    if state.pid is not None and not is_recorded_process(state):
        path.unlink(missing_ok=True)
        return None
    return state


def write_state(state: ServerState) -> None:
    """The state file, 0600 in a 0700 folder: it may hold the server's API key."""
    write_private(state_path(), state.model_dump_json(indent=2))


def start_ticks(pid: int) -> int | None:
    """When ``pid`` started (clock ticks since boot), or None where ``/proc`` does not tell."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[19])


def is_recorded_process(state: ServerState) -> bool:
    """The recorded engine still runs: its pid is alive and started when recorded (not a reused pid)."""
    if state.pid is None or not pid_alive(state.pid):
        return False
    return state.start_ticks is None or start_ticks(state.pid) in (None, state.start_ticks)


def server_lock_path() -> Path:
    return state_dir() / "server.lock"


def hold_server_state() -> contextlib.AbstractContextManager[None]:
    """The lock of the state file: who holds it decides whether to start or record a server."""
    return held(server_lock_path(), "the medcouncil server state")


def clear_state() -> None:
    state_path().unlink(missing_ok=True)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped) still answers signal 0.
    with contextlib.suppress(OSError):
        if Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z":
            return False
    return True


def port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((HOST, port))
        except OSError:
            return True
    return False


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    kept = [line for line in text.splitlines() if line.strip()]
    return "\n".join(kept[-lines:])


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: the engine gets SIGTERM when the command that started it dies, even by ``kill -9``."""
    import ctypes

    pr_set_pdeathsig = 1
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)


class EngineServer:
    """One engine process: start it, wait until healthy, stop it.

    ``detached``: the engine outlives this process (``serve --detach``); otherwise it is stopped with it, also when
    this process is killed (the kernel's parent-death signal).
    """

    def __init__(self, config: EngineConfig, detached: bool = False) -> None:
        self.config = config
        self.detached = detached
        self.process: subprocess.Popen[bytes] | None = None
        self.state: ServerState | None = None

    def start(self) -> ServerState:
        """Launch the engine and block until it answers ``/v1/models``.

        Raises:
            PortInUseError, ModelPathError, ConfigError, ChecksumError: before anything is launched.
            ServerStartError: the process exited or timed out; the message ends with its log's tail.
        """
        config = self.config
        config.check_paths()
        port = config.port or free_port()
        if port_in_use(port):
            raise PortInUseError(f"port {port} on {HOST} is already in use; choose another with --port")
        model_path: Path | None = None
        lora_files: dict[str, Path] = {}
        if config.engine == "llamacpp":
            model_path = Path(config.model).expanduser() if config.model else embedded_gguf()
            if config.lora:
                digest = model_digest(model_path)
                lora_files = {name: gguf_lora(name, path, model_path, digest) for name, path in config.lora.items()}
        else:
            gguf: Path | None = None
            if config.model is None or config.model.endswith(".gguf"):
                gguf = Path(config.model).expanduser() if config.model else embedded_gguf()
                model_path = converted_folder(gguf, config.python)
            if config.lora:
                _check_vllm_adapters(config, gguf)
        logs = state_dir() / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        log_path = logs / f"{config.engine}-{port}-{stamp}.log"
        command = config.command(port, model_path, logs, lora_files)
        with log_path.open("wb") as log_file:
            self.process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C in the terminal does not reach a detached engine
                env={**os.environ, "PYTHONUNBUFFERED": "1", **config.environment()},
                preexec_fn=None if self.detached else _die_with_parent,
            )
        self.state = ServerState(
            pid=self.process.pid,
            port=port,
            engine=config.engine,
            model=str(model_path or config.model),
            served_model_name=config.display_name(),
            log_path=log_path,
            started_at=datetime.now(UTC),
            api_key=config.api_key,
            weights=_weights(config, model_path),
            adapters={name: str(path.resolve()) for name, path in config.lora.items()},
            start_ticks=start_ticks(self.process.pid),
        )
        try:
            self._wait_healthy(self.state)
        except BaseException:  # Ctrl-C or a failed start: never leave an orphaned engine behind
            self.stop()
            raise
        return self.state

    def _wait_healthy(self, state: ServerState) -> None:
        assert self.process is not None
        deadline = time.monotonic() + self.config.startup_timeout
        while time.monotonic() < deadline:
            code = self.process.poll()
            if code is not None:
                raise ServerStartError(self._failure(f"{state.engine} server exited with code {code}", state))
            if is_healthy(state.base_url, state.api_key, timeout=1.0, attempts=1):
                return
            time.sleep(0.1)
        raise ServerStartError(
            self._failure(f"{state.engine} server not healthy after {self.config.startup_timeout:.0f}s", state)
        )

    @staticmethod
    def _failure(reason: str, state: ServerState) -> str:
        tail = log_tail(state.log_path)
        return f"{reason} (log: {state.log_path})" + (f"\n{tail}" if tail else "")

    def stop(self) -> None:
        if self.state is not None and self.state.pid is not None:
            stop_pid(self.state.pid)
        if self.process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=5)


def _local_model(config: EngineConfig, resolved: Path | None) -> Path | None:
    """The model file or folder served: ``resolved`` (the GGUF or converted folder), else ``config.model`` as a path
    (which may be a hub id that does not exist locally)."""
    return resolved or (Path(config.model).expanduser() if config.model else None)


def _weights(config: EngineConfig, model_path: Path | None) -> str:
    local = _local_model(config, model_path)
    paths = [local] if local is not None and local.exists() else []
    name = f"{config.engine}|{config.model if not paths else ''}|{sorted(config.lora)}"
    return name + "|" + weights_identity(paths + [config.lora[key] for key in sorted(config.lora)])


def _check_vllm_adapters(config: EngineConfig, gguf: Path | None) -> None:
    """Refuse an adapter that ``medcouncil finetune`` trained on another base than the model vLLM will serve."""
    local = _local_model(config, gguf)
    if local is None or not local.exists():
        return  # a hub id: nothing local to compare with
    digest = model_digest(local)
    for name, adapter in config.lora.items():
        if adapter.expanduser().is_dir():
            check_base(name, adapter.expanduser(), digest)


def stop_pid(pid: int, grace: float = 15.0) -> None:
    """Terminate an engine's process group, escalating to SIGKILL after ``grace`` seconds."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        except PermissionError:
            os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not pid_alive(pid):
                return
            time.sleep(0.1)

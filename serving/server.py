"""Starting, checking and stopping engine processes (their state file and death record: :mod:`.state`)."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from medcouncil.serving.common.errors import PortInUseError, ServerStartError
from medcouncil.serving.common.paths import state_dir
from medcouncil.serving.config import HOST, EngineConfig
from medcouncil.serving.convert import converted_folder
from medcouncil.serving.health import is_healthy
from medcouncil.serving.lora_gguf import check_base, gguf_lora
from medcouncil.serving.model_file import embedded_gguf, model_digest, weights_identity
from medcouncil.serving.state import (
    ServerState,
    engine_failure,
    free_port,
    how_it_ended,
    log_tail,
    pid_alive,
    port_in_use,
    start_ticks,
)
from medcouncil.serving.supervise import EngineExit, read_exit
from medcouncil.serving.vllm_plan import check_model

log = logging.getLogger(__name__)


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
            check_model(config, _local_model(config, model_path))
        logs = state_dir() / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        log_path = logs / f"{config.engine}-{port}-{stamp}.log"
        status_path = log_path.with_suffix(".exit.json")
        # Not detached: the supervisor (and through it the engine) gets SIGTERM when this process dies.
        dies_with = [] if self.detached else ["--die-with", str(os.getpid())]
        command = [
            sys.executable,
            "-m",
            "medcouncil.serving.supervise",
            str(status_path),
            *dies_with,
            "--",
            *config.command(port, model_path, logs, lora_files),
        ]
        with log_path.open("wb") as log_file:
            self.process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C in the terminal does not reach a detached engine
                env={**os.environ, "PYTHONUNBUFFERED": "1", **config.environment()},
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
            status_path=status_path,
            layout=config.layout(),
        )
        try:
            self._wait_healthy(self.state)
            started = read_exit(status_path)
            self.state.engine_pid = started.engine_pid if started is not None else None
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
                ended = read_exit(state.status_path) if state.status_path else None
                if ended is None or ended.returncode is None:
                    ended = EngineExit(engine_pid=state.pid or 0, returncode=code)
                raise ServerStartError(self._failure(f"{state.engine} server {how_it_ended(ended)}", state))
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

    def failure(self, wait: float = 0.0) -> str | None:
        """Why this engine is gone (see :func:`engine_failure`), or None while it runs."""
        if self.state is None or self.process is None:
            return None
        if wait and self.process.poll() is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=wait)  # a crashing engine: its supervisor exits right after it
        return engine_failure(self.state, self.process.poll())

    def running(self) -> bool:
        """The engine's process (its supervisor) still runs."""
        return self.process is not None and self.process.poll() is None

    def restart(self) -> ServerState:
        """Start the same engine again on the same port (clients keep their URL).

        Raises:
            PortInUseError: another process took the port meanwhile.
            ServerStartError: as :meth:`start`.
        """
        if self.state is not None:
            self.stop()
            self.config = self.config.model_copy(update={"port": self.state.port})
        return self.start()

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

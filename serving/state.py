"""The record of a detached server: its state file, the engines it names, how an engine ended (its death record),
and the process and port checks these need."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from medcouncil.serving.common.locks import held
from medcouncil.serving.common.paths import state_dir, write_private
from medcouncil.serving.config import HOST
from medcouncil.serving.supervise import EngineExit, read_exit

log = logging.getLogger(__name__)
LOG_TAIL_LINES = 12
DEATH_TAIL_LINES = 6
"""Log lines quoted when an engine dies."""
ENGINE_NAMES = {"llamacpp": "llama.cpp", "vllm": "vLLM"}
SIGNAL_HINTS = {
    "SIGILL": "its binary uses instructions this CPU lacks: rebuild it on this machine (pip install "
    "--force-reinstall --no-cache-dir --no-deps llama-cpp-python)",
    "SIGSEGV": "a crash inside the engine; on an AMX CPU keep llama.cpp's extra buffer types off (the default)",
    "SIGKILL": "the out-of-memory killer or a user (the kernel log, dmesg, tells which)",
}


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
    engine_pid: int | None = None
    """The engine itself; ``pid`` is its supervisor (``supervise.py``), which records how the engine ended."""
    status_path: Path | None = None
    """The supervisor's status file (:class:`EngineExit`)."""
    layout: dict[str, Any] = {}
    """:meth:`EngineConfig.layout` as started: a ``serve`` asking for another is refused, not handed this server.
    Empty for an external endpoint and a state from before it was recorded."""
    replicas: list[ServerState] = []
    """The further engines of ``serve --replicas N`` (this record is the first): clients use them all as a pool."""

    @property
    def engines(self) -> list[ServerState]:
        """This engine and its replicas."""
        return [self, *self.replicas]

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
    if state.pid is None:
        return state
    live = [engine for engine in state.engines if is_recorded_process(engine)]
    if len(live) == len(state.engines):
        return state
    if not live:
        for engine in reversed(state.engines):  # the first one's death is the one kept, where it has one
            note_death(engine)
        path.unlink(missing_ok=True)
        return None
    # A replica of `serve --replicas` is gone: the others still serve, recorded without it.
    for engine in state.engines:
        if engine not in live:
            said = (engine_failure(engine) or "stopped").partition("\n")[0]
            log.warning(
                "replica %s of the recorded server is gone (%s); %d still serve", engine.base_url, said, len(live)
            )
    layout = {**state.layout, "replicas": len(live)} if state.layout else {}
    kept = live[0].model_copy(update={"replicas": live[1:], "layout": layout})
    with contextlib.suppress(OSError, ValueError):
        if ServerState.model_validate_json(path.read_text(encoding="utf-8")) == state:  # not replaced meanwhile
            write_state(kept)
    return kept


class DeadServer(BaseModel):
    """A recorded engine found dead (not stopped): later commands say so instead of starting another model."""

    state: ServerState
    reason: str
    """:func:`engine_failure`'s message: engine, pid, how it ended, log."""


def death_path() -> Path:
    return state_dir() / "server.died.json"


def note_death(state: ServerState) -> str | None:
    """Keep the reason a recorded engine is gone, unless it was stopped on request; the reason."""
    reason = engine_failure(state)
    if reason is not None:
        write_private(death_path(), DeadServer(state=state, reason=reason).model_dump_json(indent=2))
    return reason


def read_death() -> DeadServer | None:
    """The recorded engine's death, until ``serve --stop`` or a new ``serve`` clears it."""
    try:
        return DeadServer.model_validate_json(death_path().read_bytes())
    except (OSError, ValidationError, ValueError):
        return None


def clear_death() -> None:
    death_path().unlink(missing_ok=True)


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
    """Whether a process holds ``port`` on the loopback. SO_REUSEADDR, as the engines' servers bind: connections of
    an engine that just died (TIME_WAIT) do not count, so it can be restarted on its port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
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


EXIT_WAIT_S = 3.0
"""How long a lost connection waits for its engine to be gone (a crashing process may still be writing its fault
report) and for the supervisor to write down how it ended."""


def engine_failure(state: ServerState, supervisor_code: int | None = None, wait: float = 0.0) -> str | None:
    """Why the engine of ``state`` is gone, or None while it runs (or for an endpoint medcouncil did not start).

    The first line names the engine, its pid, how it ended and the log's path; the next lines quote the log's end.
    ``supervisor_code``: the supervisor's own exit code, where this process waited for it (None: still running).
    ``wait``: seconds to keep looking while the engine still runs (after a connection was lost).
    """
    if state.pid is None:
        return None
    ended = _how_engine_ended(state, supervisor_code, wait)
    if ended is None or ended.requested is not None:
        return None
    return describe_exit(state, ended)


def _how_engine_ended(state: ServerState, supervisor_code: int | None, wait: float) -> EngineExit | None:
    """The supervisor's record of the engine's end, or None while the engine and its supervisor run."""
    deadline = time.monotonic() + max(wait, EXIT_WAIT_S)
    patience = time.monotonic() + wait
    while True:
        ended = read_exit(state.status_path) if state.status_path is not None else None
        if ended is not None and not ended.running:
            return ended
        engine_pid = ended.engine_pid if ended is not None else state.engine_pid
        supervisor_alive = supervisor_code is None and is_recorded_process(state)
        engine_alive = pid_alive(engine_pid) if engine_pid is not None else supervisor_alive
        now = time.monotonic()
        if engine_alive and supervisor_alive and now >= patience:
            return None
        if not supervisor_alive or now > deadline:
            return EngineExit(engine_pid=engine_pid or state.pid or 0)  # gone, and nothing says how
        time.sleep(0.05)


def how_it_ended(ended: EngineExit) -> str:
    """``killed by SIGSEGV (segmentation fault): <what that usually means>`` or ``exited with code 1``."""
    if ended.returncode is None:
        return "is no longer running (how it ended is not known)"
    how = ended.how()
    hint = SIGNAL_HINTS.get(how.split()[2], "") if how.startswith("killed by ") else ""
    return how + (f": {hint}" if hint else "")


def describe_exit(state: ServerState, ended: EngineExit) -> str:
    """One line (engine, pid, how it ended, the log's path), then the log's last lines."""
    name = ENGINE_NAMES.get(state.engine, state.engine)
    recent = log_tail(state.log_path, 80).splitlines()
    # A crash report (Python's fault handler) prints every thread's stack: its first line says what happened.
    fatal = [line for line in recent if line.startswith("Fatal Python error")][-1:]
    tail = "\n".join(fatal + [line for line in recent[-DEATH_TAIL_LINES:] if line not in fatal])
    line = f"the {name} engine (pid {ended.engine_pid}) {how_it_ended(ended)}; log: {state.log_path}"
    return line + ("\n" + tail if tail else "")

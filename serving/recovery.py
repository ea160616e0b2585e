"""Finding a detached engine again when the state file cannot tell: it is unreadable, or gone.

Every engine medcouncil starts (and its supervisor) writes its output to ``<state>/logs/ENGINE-PORT-STAMP.log``, so
a live process whose standard output is such a log is one of medcouncil's engines, and the log's name gives its
engine and port. Of those,
the ones whose parent is init (pid 1) have outlived the command that started them: only ``serve --detach`` leaves
an engine so (the others die with their command), and a detached engine is what the state file records. Such an
orphan is recorded again, with a warning, instead of being forgotten while it holds its port and memory; an
unreadable state file is kept beside it (``server.json.unreadable-STAMP``) as evidence, never deleted silently.

Limits: ``/proc`` (Linux) is read; under a sub-reaper (a process that adopts orphans instead of init) the parent is
not pid 1 and nothing is recovered; the API key of a vLLM engine is read from its environment, which only its own
user (or root) can read.
"""

from __future__ import annotations

import json
import logging
import os
import re
from datetime import UTC, datetime
from pathlib import Path

from pydantic import ValidationError

from medcouncil.serving.common.errors import first_line
from medcouncil.serving.common.paths import state_dir
from medcouncil.serving.state import ServerState, start_ticks, write_state
from medcouncil.serving.supervise import read_exit

LOG_NAME = re.compile(r"^(?P<engine>llamacpp|vllm)-(?P<port>\d{1,5})-(?P<stamp>\d{8}T\d{6})\.log$")
log = logging.getLogger(__name__)


def recover(path: Path, error: Exception | None = None) -> ServerState | None:
    """What to do when the state file at ``path`` gave no server: keep an unreadable file aside (``error``: why it
    could not be read), then record the newest orphaned engine again, if any, and return it.
    """
    if error is not None:
        log.warning("%s is unreadable (%s): kept as %s", path, _reason(error), keep_aside(path).name)
    found = orphaned_engines()
    if not found:
        return None
    state, *others = found
    # Engines of the same model (the replicas of `serve --replicas`) are recorded again as one server.
    replicas = [
        o
        for o in others
        if (o.engine, o.model, o.served_model_name) == (state.engine, state.model, state.served_model_name)
    ]
    others = [o for o in others if o not in replicas]
    state.replicas = sorted(replicas, key=lambda replica: replica.port)
    write_state(state)
    log.warning(
        "the %s engine medcouncil started on port %d (pid %d)%s runs with no readable record: recorded it again",
        state.engine,
        state.port,
        state.pid,
        f" and its {len(replicas)} replica(s) on port(s) {', '.join(str(r.port) for r in state.replicas)}"
        if replicas
        else "",
    )
    if others:
        listed = ", ".join(f"pid {other.pid} on port {other.port}" for other in others)
        log.warning("more engines medcouncil started still run unrecorded (%s): stop them with `kill PID`", listed)
    return state


def _reason(error: Exception) -> str:
    if isinstance(error, ValidationError):
        return str(error.errors()[0]["msg"])[:100]
    return first_line(error)[:100]


def keep_aside(path: Path) -> Path:
    """Rename an unreadable state file to ``NAME.unreadable-STAMP`` beside it (or leave it, if even that fails)."""
    aside = path.with_name(f"{path.name}.unreadable-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S%f')}")
    try:
        os.replace(path, aside)
    except OSError:
        return path
    return aside


def orphaned_engines(logs: Path | None = None) -> list[ServerState]:
    """medcouncil's engines (output into ``logs``) that outlived the command that started them, newest first."""
    logs = (logs or state_dir() / "logs").resolve()
    found: list[ServerState] = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            output = Path(os.readlink(proc / "fd" / "1"))
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        match = LOG_NAME.match(output.name)
        if match is None or output.parent != logs or fields[0] == "Z" or fields[1] != "1":
            continue
        found.append(_state(int(proc.name), output, match))
    return sorted(found, key=lambda state: state.started_at, reverse=True)


def _state(pid: int, log_path: Path, match: re.Match[str]) -> ServerState:
    """The state file's record of an engine, rebuilt from its log's name, its command line and its settings."""
    engine, port = match.group("engine"), int(match.group("port"))
    started = datetime.strptime(match.group("stamp"), "%Y%m%dT%H%M%S").replace(tzinfo=UTC)
    model, name, api_key = _served(pid, engine)
    ticks = start_ticks(pid)
    status_path = log_path.with_suffix(".exit.json")  # the supervisor's (pid's) record of its engine
    ended = read_exit(status_path)
    return ServerState(
        pid=pid,
        port=port,
        engine=engine,
        model=model,
        served_model_name=name,
        log_path=log_path,
        started_at=started,
        api_key=api_key,
        start_ticks=ticks,
        weights=f"recovered|{engine}|{model}|{pid}|{ticks}",
        status_path=status_path,
        engine_pid=ended.engine_pid if ended is not None else None,
    )


def _served(pid: int, engine: str) -> tuple[str, str, str | None]:
    """(model, served name, API key) of an engine: llama.cpp's from its config file, vLLM's from its command line and
    environment; "unknown" where they cannot be read."""
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        args = []

    def after(flag: str) -> str | None:
        return args[args.index(flag) + 1] if flag in args[:-1] else None

    if engine == "llamacpp":
        try:
            settings = json.loads(Path(after("--config_file") or "").read_text(encoding="utf-8"))
            first = settings["models"][0]
            return str(first["model"]), str(first.get("model_alias") or first["model"]), settings.get("api_key")
        except (OSError, ValueError, KeyError, IndexError, TypeError):
            return "unknown", "unknown", None
    try:
        environment = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        environment = []
    key = next((item.partition("=")[2] for item in environment if item.startswith("VLLM_API_KEY=")), None)
    model = after("--model") or "unknown"
    return model, after("--served-model-name") or model, key

"""The process that watches an engine and writes down how it ended.

``python -m medcouncil.serving.supervise STATUS_FILE -- ENGINE COMMAND...`` runs the engine as its child and keeps
``STATUS_FILE`` (JSON, :class:`EngineExit`) up to date: the engine's pid while it runs, then its exit code or the
signal that killed it (a segmentation fault, the out-of-memory killer's SIGKILL, ...). A process that is killed
cannot say so itself, and a detached engine has no parent that waits for it: this one does, so every later command
can tell the user that the engine died, how, and where its log is, instead of "endpoint unreachable".

A stop request (SIGTERM, SIGINT or SIGHUP to this process or its group) is passed on to the engine and recorded as
requested, so a stop is never reported as a death. The engine gets SIGTERM if this process dies (Linux
parent-death signal). It imports the standard library and pydantic only, and starts in about 0.1 s.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

from pydantic import BaseModel, ValidationError


class EngineExit(BaseModel):
    """What the status file says of the engine."""

    engine_pid: int
    returncode: int | None = None
    """None while the engine runs; negative: killed by that signal (subprocess's convention)."""
    requested: str | None = None
    """The stop signal this supervisor was sent and passed on (a stop, not a death)."""
    ended_at: str | None = None

    @property
    def running(self) -> bool:
        return self.returncode is None

    @property
    def died(self) -> bool:
        """The engine ended without being asked to."""
        return self.returncode is not None and self.requested is None

    def how(self) -> str:
        """``killed by SIGSEGV (segmentation fault)`` or ``exited with code 1``."""
        if self.returncode is None:
            return "running"
        if self.returncode < 0:
            number = -self.returncode
            try:
                name = signal.Signals(number).name
            except ValueError:
                name = f"signal {number}"
            meaning = (signal.strsignal(number) or "").lower()
            return f"killed by {name}" + (f" ({meaning})" if meaning not in ("", "killed") else "")
        return f"exited with code {self.returncode}"


def read_exit(path: Path) -> EngineExit | None:
    """The status file, or None when it is missing or unreadable (a supervisor killed while writing it)."""
    try:
        return EngineExit.model_validate_json(path.read_bytes())
    except (OSError, ValidationError, ValueError):
        return None


def _write(path: Path, record: EngineExit) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(record.model_dump_json(), encoding="utf-8")
    os.replace(temporary, path)


_LIBC = ctypes.CDLL(None, use_errno=True)
"""Loaded here, in the parent: between fork and exec a child of a threaded process must not import or load
anything (another thread may hold the import lock: the child would hang before it execs)."""


def die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: the child gets SIGTERM when the process that started it dies, even by ``kill -9``."""
    pr_set_pdeathsig = 1
    with contextlib.suppress(OSError, AttributeError):
        _LIBC.prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)


def main(argv: list[str]) -> int:
    die_with: int | None = None
    if len(argv) > 2 and argv[1] == "--die-with":
        die_with, argv = int(argv[2]), [argv[0], *argv[3:]]
    if len(argv) < 3 or argv[1] != "--":
        print(
            "usage: python -m medcouncil.serving.supervise STATUS_FILE [--die-with PID] -- COMMAND...", file=sys.stderr
        )
        return 2
    if die_with is not None:
        # Set here, not between fork and exec in the starting process: that process may be threaded (the knowledge
        # base embedding with OpenBLAS), and a fork with a preexec hook can deadlock in the library's fork handlers;
        # without one, Python starts this process by vfork/exec.
        die_with_parent()
        if os.getppid() != die_with:  # the parent died before the signal was armed
            return 1
    status = Path(argv[0])
    engine = subprocess.Popen(argv[2:], preexec_fn=die_with_parent)
    record = EngineExit(engine_pid=engine.pid)
    _write(status, record)

    def forward(number: int, frame: FrameType | None) -> None:
        record.requested = signal.Signals(number).name
        with contextlib.suppress(ProcessLookupError):
            engine.send_signal(number)

    for number in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(number, forward)
    code = engine.wait()
    record.returncode = code
    record.ended_at = datetime.now(UTC).isoformat(timespec="seconds")
    _write(status, record)
    if record.died:
        print(f"medcouncil: the engine (pid {engine.pid}) {record.how()}", file=sys.stderr, flush=True)
    return 128 - code if code < 0 else code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

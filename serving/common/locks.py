"""One writer at a time: an exclusive lock file holding its owner's pid.

The lock is an ``flock`` on ``PATH``: the kernel releases it when the owner exits, however it exits (``kill -9``
too), so a stale lock never blocks anyone. The pid written in the file only names the owner in the error.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from medcouncil.serving.common.errors import MedcouncilError

_held: dict[Path, int] = {}


class LockHeldError(MedcouncilError):
    """Another process holds the lock."""


def _owner(fd: int) -> str:
    with contextlib.suppress(OSError, ValueError):
        text = os.pread(fd, 64, 0).decode("ascii", "replace").strip()
        if text:
            return f"process {int(text)}"
    return "another process"


def acquire(path: Path, what: str) -> None:
    """Take the lock at ``path`` for this process (a no-op if it already holds it).

    Raises:
        LockHeldError: ``WHAT is in use by process N (PATH)``.
    """
    path = path.resolve()
    if path in _held:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        owner = _owner(fd)
        os.close(fd)
        raise LockHeldError(f"{what} is in use by {owner} (lock {path}); wait for it to finish or stop it") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    _held[path] = fd


def release(path: Path) -> None:
    fd = _held.pop(path.resolve(), None)
    if fd is not None:
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        os.close(fd)  # closing the descriptor drops the flock


@contextlib.contextmanager
def held(path: Path, what: str) -> Iterator[None]:
    """Hold the lock for the block (released on exit unless it was already held before)."""
    already = path.resolve() in _held
    acquire(path, what)
    try:
        yield
    finally:
        if not already:
            release(path)

"""Where medcouncil keeps its files: user cache, data and state folders.

``MEDCOUNCIL_HOME`` moves all three under one folder (tests and CI use it).
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP_NAME = "medcouncil"


def _root(kind: str) -> Path:
    home = os.environ.get("MEDCOUNCIL_HOME")
    if home:
        path = Path(home).expanduser() / kind
    elif kind == "cache":
        path = platformdirs.user_cache_path(APP_NAME)
    elif kind == "data":
        path = platformdirs.user_data_path(APP_NAME)
    else:
        path = platformdirs.user_state_path(APP_NAME)
    # Caches hold model answers and the state folder API keys: private to the user.
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.stat().st_mode & 0o077 and path.stat().st_uid == os.getuid():
        path.chmod(0o700)
    return path


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically, readable by the user only (0600), whatever the umask."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def cache_dir() -> Path:
    """Re-creatable files: the assembled GGUF, LLM response caches."""
    return _root("cache")


def data_dir() -> Path:
    """User data: knowledge stores, benchmark runs by default."""
    return _root("data")


def state_dir() -> Path:
    """Running-server state files and their logs."""
    return _root("state")

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
    path.mkdir(parents=True, exist_ok=True)
    return path


def cache_dir() -> Path:
    """Re-creatable files: the assembled GGUF, LLM response caches."""
    return _root("cache")


def data_dir() -> Path:
    """User data: knowledge stores, benchmark runs by default."""
    return _root("data")


def state_dir() -> Path:
    """Running-server state files and their logs."""
    return _root("state")

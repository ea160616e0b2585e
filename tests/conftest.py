"""Shared fixtures: an isolated MEDCOUNCIL_HOME and, for integration tests, the real embedded server."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from medcouncil.serving.config import EngineConfig
from medcouncil.serving.server import EngineServer, ServerState

SHARED = Path(__file__).resolve().parents[2] / "shared"


@pytest.fixture(scope="session", autouse=True)
def medcouncil_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Every test writes its caches, state files and logs under one temporary folder."""
    home = tmp_path_factory.mktemp("medcouncil-home")
    previous = os.environ.get("MEDCOUNCIL_HOME")
    os.environ["MEDCOUNCIL_HOME"] = str(home)
    for name in ("MEDCOUNCIL_ENDPOINT", "MEDCOUNCIL_API_KEY", "MEDCOUNCIL_MODEL", "MEDCOUNCIL_MODEL_CONFIG"):
        os.environ.pop(name, None)
    os.environ["ANONYMIZED_TELEMETRY"] = "False"
    yield home
    if previous is None:
        os.environ.pop("MEDCOUNCIL_HOME", None)
    else:
        os.environ["MEDCOUNCIL_HOME"] = previous


@pytest.fixture(scope="session")
def embedded_server(medcouncil_home: Path) -> Iterator[ServerState]:
    """The real llama.cpp server on the real Gemma 3 270M GGUF, once per test session (not in the state file)."""
    server = EngineServer(EngineConfig())
    state = server.start()
    yield state
    server.stop()


@pytest.fixture(scope="session")
def cli() -> list[str]:
    """The installed ``medcouncil`` console script of this interpreter's environment."""
    script = Path(sys.executable).parent / "medcouncil"
    assert script.exists(), f"{script} missing: install the project (pip install -e '.[dev]')"
    return [str(script)]

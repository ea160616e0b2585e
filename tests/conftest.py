"""Shared fixtures: an isolated MEDCOUNCIL_HOME and, for integration tests, the real embedded server."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import TypeVar

import pytest

from medcouncil.serving.config import EngineConfig
from medcouncil.serving.server import EngineServer
from medcouncil.serving.state import ServerState

SHARED = Path(__file__).resolve().parents[2] / "shared"
Server = TypeVar("Server", bound=HTTPServer)


class QuietHandler(BaseHTTPRequestHandler):
    """A request handler for the tests' fake endpoints: no access log, and one way to answer."""

    def reply(self, status: int, body: bytes | object, headers: dict[str, str] | None = None) -> None:
        """Send ``body`` (bytes as they are, anything else as JSON) with ``status`` and extra ``headers``."""
        payload = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        for name, value in {"Content-Type": "application/json", **(headers or {})}.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: object) -> None:
        pass


@contextlib.contextmanager
def serving(server: Server) -> Iterator[Server]:
    """Run ``server`` in a daemon thread for the block, then shut it down."""
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


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

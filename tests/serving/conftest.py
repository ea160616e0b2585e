from __future__ import annotations

from collections.abc import Iterator

import pytest
from medcouncil.serving.config import EngineConfig
from medcouncil.serving.dialects import EndpointInfo
from medcouncil.serving.health import describe_endpoint
from medcouncil.serving.server import EngineServer, ServerState


@pytest.fixture(scope="session")
def embedded_server(medcouncil_home: object) -> Iterator[ServerState]:
    """The real llama.cpp server on the real Gemma 3 270M GGUF, once per test session (not in the state file)."""
    server = EngineServer(EngineConfig())
    state = server.start()
    yield state
    server.stop()


@pytest.fixture(scope="session")
def embedded_info(embedded_server: ServerState) -> EndpointInfo:
    return describe_endpoint(embedded_server.base_url)

from __future__ import annotations

import pytest

from medcouncil.serving.dialects import EndpointInfo
from medcouncil.serving.health import describe_endpoint
from medcouncil.serving.state import ServerState


@pytest.fixture(scope="session")
def embedded_info(embedded_server: ServerState) -> EndpointInfo:
    return describe_endpoint(embedded_server.base_url)

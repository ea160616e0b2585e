"""Timeouts and bounded retries, against a real flaky HTTP server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from http.server import ThreadingHTTPServer

import pytest
from autogen_core.models import UserMessage

from medcouncil.serving.client import ModelClient
from medcouncil.serving.common.errors import EndpointUnreachableError, MedcouncilError
from medcouncil.serving.components import ClientSettings, endpoint_component
from medcouncil.serving.dialects import EndpointInfo

from ..conftest import QuietHandler, serving

COMPLETION = {
    "id": "x",
    "object": "chat.completion",
    "created": 0,
    "model": "flaky",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "fine"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
}


class Flaky(ThreadingHTTPServer):
    failures = 0
    delay = 0.0
    requests = 0


class Handler(QuietHandler):
    server: Flaky

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.server.requests += 1
        time.sleep(self.server.delay)
        if self.server.requests <= self.server.failures:
            # retry-after-ms keeps the SDK's backoff short in tests
            self.reply(503, {"error": {"message": "overloaded"}}, {"retry-after-ms": "20"})
            return
        self.reply(200, COMPLETION)


@pytest.fixture
def flaky() -> Iterator[Flaky]:
    with serving(Flaky(("127.0.0.1", 0), Handler)) as server:
        yield server


def ask(server: Flaky, **settings: object) -> str:
    info = EndpointInfo(base_url=f"http://127.0.0.1:{server.server_port}/v1", model="flaky", dialect="openai")
    config = ClientSettings(cache=False, **settings)  # type: ignore[arg-type]

    async def run() -> str:
        client = ModelClient(endpoint_component(info, config), info, config)
        try:
            result = await client.chat([UserMessage(content="hi", source="user")])
            return str(result.content)
        finally:
            await client.close()

    return asyncio.run(run())


def test_retries_recover_from_transient_errors(flaky: Flaky) -> None:
    flaky.failures = 2
    assert ask(flaky, max_retries=3) == "fine"
    assert flaky.requests == 3


def test_retries_are_bounded(flaky: Flaky) -> None:
    flaky.failures = 10
    with pytest.raises(MedcouncilError, match=r"127\.0\.0\.1:\d+/v1 answered HTTP 503"):
        ask(flaky, max_retries=2)
    assert flaky.requests == 3  # the first try and two retries


def test_timeout_is_reported_with_the_url(flaky: Flaky) -> None:
    flaky.delay = 1.5
    with pytest.raises(EndpointUnreachableError, match=r"endpoint unreachable: http://127\.0\.0\.1:\d+/v1"):
        ask(flaky, timeout=0.3, max_retries=1)
    assert flaky.requests == 2

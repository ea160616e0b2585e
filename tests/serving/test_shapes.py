"""Reply shapes: how each engine is asked for one, and when a client enforces them."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from typing import Any

import pytest
from autogen_core.models import UserMessage

from medcouncil.serving.client import ModelClient
from medcouncil.serving.common.errors import ConfigError, EndpointUnreachableError
from medcouncil.serving.components import ClientSettings, endpoint_component, shapes_from_env
from medcouncil.serving.dialects import Dialect, EndpointInfo, Shape, shape_args
from medcouncil.serving.model_file import EMBEDDED_MODEL_NAME

from ..conftest import QuietHandler, serving

SHAPE = Shape(name="yes-no", regex="(YES|NO): [a-z ]{1,20}", grammar='root ::= ("YES" | "NO") ": " [a-z ]{1,20}')


def test_each_engine_gets_the_shape_in_its_own_dialect() -> None:
    assert shape_args("llamacpp", SHAPE) == {"extra_body": {"grammar": SHAPE.grammar}}
    assert shape_args("vllm", SHAPE) == {"extra_body": {"structured_outputs": {"regex": SHAPE.regex}}}
    assert shape_args("openai", SHAPE) == {}  # not enforced: the reply is read as written


def test_shapes_are_on_for_the_embedded_model_only_unless_set(monkeypatch: pytest.MonkeyPatch) -> None:
    def client(model: str, dialect: Dialect = "llamacpp", **settings: object) -> ModelClient:
        info = EndpointInfo(base_url="http://127.0.0.1:9/v1", model=model, dialect=dialect)
        config = ClientSettings(cache=False, **settings)  # type: ignore[arg-type]
        return ModelClient(endpoint_component(info, config), info, config)

    assert client(EMBEDDED_MODEL_NAME).shapes and not client("medgemma-27b").shapes
    assert client("medgemma-27b", shapes=True).shapes and not client(EMBEDDED_MODEL_NAME, shapes=False).shapes
    assert client(EMBEDDED_MODEL_NAME, "vllm").shapes
    assert not client(EMBEDDED_MODEL_NAME, "openai", shapes=True).shapes  # nothing there to enforce one with
    monkeypatch.setenv("MEDCOUNCIL_SHAPES", "on")
    assert shapes_from_env() is True and client("medgemma-27b").shapes
    monkeypatch.setenv("MEDCOUNCIL_SHAPES", "off")
    assert shapes_from_env() is False and not client(EMBEDDED_MODEL_NAME).shapes
    monkeypatch.setenv("MEDCOUNCIL_SHAPES", "sometimes")
    with pytest.raises(ConfigError, match="MEDCOUNCIL_SHAPES=sometimes: choose from on, off, auto"):
        shapes_from_env()


def test_the_lone_space_token_is_found_beside_the_engines_special_tokens() -> None:
    from medcouncil.serving.dialects import lone_space_bias, tokenize_request

    assert lone_space_bias([2], [2, 236743]) == {"236743": -100}  # llama.cpp adds <bos> to both
    assert lone_space_bias([], [220]) == {"220": -100}  # vLLM without special tokens
    assert lone_space_bias([2], [2, 10, 11]) == {}  # " " is not one token of its own: nothing banned
    assert tokenize_request("llamacpp", "http://127.0.0.1:8/v1", "m", " ") == (
        "http://127.0.0.1:8/extras/tokenize",
        {"input": " ", "model": "m"},
    )
    assert tokenize_request("vllm", "http://h:8/v1/", "m", " ")[0] == "http://h:8/tokenize"  # type: ignore[index]
    assert tokenize_request("openai", "https://api.example/v1", "m", " ") is None


class Engine(ThreadingHTTPServer):
    """A llama.cpp-like endpoint: a tokenizer, and a streamed completion that records each request's body."""

    tokenizer_status = 200
    tokenize_calls = 0
    bodies: list[dict[str, Any]]


class EngineHandler(QuietHandler):
    server: Engine

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.path == "/extras/tokenize":
            self.server.tokenize_calls += 1
            time.sleep(0.05)  # slow enough that concurrent first requests overlap the probe
            tokens = [2] + ([236743] if body["input"] == " " else [])
            self.reply(self.server.tokenizer_status, {"tokens": tokens})
            return
        self.server.bodies.append(body)
        chunk = {"id": "x", "object": "chat.completion.chunk", "created": 0, "model": "m"}
        events = [
            {**chunk, "choices": [{"index": 0, "delta": {"role": "assistant", "content": "YES: fine"}}]},
            {**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
            {**chunk, "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}},
        ]
        payload = "".join(f"data: {json.dumps(event)}\n\n" for event in events) + "data: [DONE]\n\n"
        self.reply(200, payload.encode(), {"Content-Type": "text/event-stream"})


@pytest.fixture
def engine() -> Iterator[Engine]:
    server = Engine(("127.0.0.1", 0), EngineHandler)
    server.bodies = []
    with serving(server) as running:
        yield running


def shaped_client(engine: Engine) -> ModelClient:
    info = EndpointInfo(
        base_url=f"http://127.0.0.1:{engine.server_port}/v1", model=EMBEDDED_MODEL_NAME, dialect="llamacpp"
    )
    config = ClientSettings(cache=False, timeout=5, max_retries=0)
    return ModelClient(endpoint_component(info, config), info, config)


async def reply(client: ModelClient, shape: Shape | None) -> str:
    items = [item async for item in client.stream([UserMessage(content="hi", source="user")], shape)]
    return "".join(item for item in items if isinstance(item, str))  # the last item is the CreateResult


def test_a_shaped_request_carries_its_grammar_penalty_and_ban_asked_of_the_tokenizer_once(engine: Engine) -> None:
    banned = Shape("role", SHAPE.regex, SHAPE.grammar, frequency_penalty=0.5, ban_lone_space=True)

    async def run() -> None:
        client = shaped_client(engine)
        try:
            await asyncio.gather(*(reply(client, banned) for _ in range(3)))  # three at once: one probe
            await reply(client, SHAPE)  # no penalty, no ban asked for
            await reply(client, None)
            assert client.tokenizer_probes == 1
        finally:
            await client.close()

    asyncio.run(run())
    assert engine.tokenize_calls == 2  # "" and " ", once
    first, plain, free = engine.bodies[0], engine.bodies[3], engine.bodies[4]
    assert all(body["logit_bias"] == {"236743": -100} for body in engine.bodies[:3])  # the first ones too
    assert first["grammar"] == SHAPE.grammar and first["frequency_penalty"] == 0.5
    assert plain["grammar"] == SHAPE.grammar and "logit_bias" not in plain and "frequency_penalty" not in plain
    assert "grammar" not in free and "logit_bias" not in free


def test_an_engine_without_a_tokenizer_leaves_the_reply_merely_shaped(engine: Engine) -> None:
    engine.tokenizer_status = 404
    banned = Shape("role", SHAPE.regex, SHAPE.grammar, ban_lone_space=True)

    async def run() -> None:
        client = shaped_client(engine)
        try:
            assert await reply(client, banned) == "YES: fine"
            await reply(client, banned)
        finally:
            await client.close()

    asyncio.run(run())
    assert engine.tokenize_calls == 1  # no tokenizer is an answer: not asked again
    assert all("logit_bias" not in body and body["grammar"] == SHAPE.grammar for body in engine.bodies)


def test_a_tokenizer_that_cannot_be_reached_fails_the_request_and_is_asked_again() -> None:
    info = EndpointInfo(base_url="http://127.0.0.1:9/v1", model=EMBEDDED_MODEL_NAME, dialect="llamacpp")
    config = ClientSettings(cache=False, timeout=2)
    client = ModelClient(endpoint_component(info, config), info, config)
    for _ in range(2):
        with pytest.raises(EndpointUnreachableError, match=r"127\.0\.0\.1:9"):
            asyncio.run(client._shape_bias())
    assert client.tokenizer_probes == 2 and client._space_bias is None  # a failure is not remembered

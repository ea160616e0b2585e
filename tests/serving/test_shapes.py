"""Reply shapes: how each engine is asked for one, and when a client enforces them."""

from __future__ import annotations

import pytest

from medcouncil.serving.client import ClientSettings, ModelClient, endpoint_component, shapes_from_env
from medcouncil.serving.common.errors import ConfigError
from medcouncil.serving.dialects import Dialect, EndpointInfo, Shape, shape_args
from medcouncil.serving.model_file import EMBEDDED_MODEL_NAME

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


def test_an_engine_without_a_tokenizer_leaves_the_reply_merely_shaped() -> None:
    import asyncio

    info = EndpointInfo(base_url="http://127.0.0.1:9/v1", model=EMBEDDED_MODEL_NAME, dialect="llamacpp")
    config = ClientSettings(cache=False, timeout=2)
    client = ModelClient(endpoint_component(info, config), info, config)
    assert asyncio.run(client._shape_bias()) == {}  # nothing listens on port 9: no ban, and asked only once
    assert client._space_bias == {}

"""The real llama.cpp server on the real Gemma 3 270M GGUF, over HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest
from autogen_core.models import CreateResult, LLMMessage, SystemMessage, UserMessage

from medcouncil.serving.client import ModelClient
from medcouncil.serving.components import Choice, ClientSettings, cache_namespace, endpoint_component
from medcouncil.serving.dialects import EndpointInfo
from medcouncil.serving.state import ServerState

pytestmark = pytest.mark.integration
T = TypeVar("T")
QUESTION = UserMessage(content="Name one symptom of asthma.", source="user")


def run(info: EndpointInfo, body: Callable[[ModelClient], Awaitable[T]], **settings: object) -> T:
    config = ClientSettings(**settings)  # type: ignore[arg-type]

    async def go() -> T:
        client = ModelClient(endpoint_component(info, config), info, config)
        try:
            return await body(client)
        finally:
            await client.close()

    return asyncio.run(go())


def test_endpoint_is_recognised_as_llamacpp(embedded_server: ServerState, embedded_info: EndpointInfo) -> None:
    assert embedded_info.dialect == "llamacpp"
    assert embedded_info.model == "gemma-3-270m"
    assert embedded_info.base_url.startswith("http://127.0.0.1:")


def test_chat_returns_text_and_usage(embedded_info: EndpointInfo) -> None:
    result = run(embedded_info, lambda c: c.chat([QUESTION], max_tokens=12), cache=False)
    assert isinstance(result.content, str) and result.content.strip()
    assert result.usage.prompt_tokens > 5
    assert 0 < result.usage.completion_tokens <= 12


def test_system_prompt_reaches_the_model(embedded_info: EndpointInfo) -> None:
    """The built-in gemma format drops system messages; ours folds them into the first user turn."""
    system = SystemMessage(content="You are the critic of a clinical council. Reply APPROVE or REVISE.")

    async def both(client: ModelClient) -> tuple[CreateResult, CreateResult]:
        plain = await client.chat([QUESTION], max_tokens=1)
        with_system = await client.chat([system, QUESTION], max_tokens=1)
        return plain, with_system

    plain, with_system = run(embedded_info, both, cache=False)
    assert with_system.usage.prompt_tokens >= plain.usage.prompt_tokens + 12


def test_streaming_yields_chunks_then_usage(embedded_info: EndpointInfo) -> None:
    async def collect(client: ModelClient) -> list[str | CreateResult]:
        return [item async for item in client.stream([QUESTION], max_tokens=16)]

    items = run(embedded_info, collect, cache=False)
    chunks = [item for item in items if isinstance(item, str)]
    final = items[-1]
    assert isinstance(final, CreateResult)
    assert len(chunks) >= 2
    assert "".join(chunks) == final.content
    assert final.usage.completion_tokens == len(chunks)
    assert final.usage.prompt_tokens > 5


def test_two_streams_at_once_both_run_to_their_end(embedded_info: EndpointInfo) -> None:
    """A request arriving while another streams waits its turn: neither reply is cut short (llama-cpp-python's
    default interrupts the running stream, which then ends early as if the model had finished)."""

    async def two(client: ModelClient) -> list[int]:
        async def one(topic: str) -> int:
            ask = UserMessage(content=f"Write about {topic}.", source="user")
            items = [item async for item in client.stream([ask], max_tokens=24, temperature=0)]
            final = items[-1]
            assert isinstance(final, CreateResult)
            return final.usage.completion_tokens

        return list(await asyncio.gather(one("the heart"), one("the lungs")))

    assert run(embedded_info, two, cache=False) == [24, 24]


def test_choose_is_constrained_with_letter_probabilities(embedded_info: EndpointInfo) -> None:
    question: list[LLMMessage] = [
        UserMessage(content="Which organ pumps blood?\nA. Heart\nB. Liver\nC. Kidney\nD. Lung\nAnswer:", source="user")
    ]
    choice = run(embedded_info, lambda c: c.choose(question, ["A", "B", "C", "D"]), cache=False)
    assert choice.letter in {"A", "B", "C", "D"}
    assert choice.raw == choice.letter
    assert choice.probabilities is not None
    assert set(choice.probabilities) == {"A", "B", "C", "D"}
    assert sum(choice.probabilities.values()) == pytest.approx(1.0)
    # Greedy decoding under the grammar picks the most probable allowed letter.
    assert choice.letter == max(choice.probabilities, key=choice.probabilities.__getitem__)
    assert choice.usage.completion_tokens == choice.calls  # one token per request


def test_every_option_gets_the_models_own_probability_on_real_items(embedded_info: EndpointInfo) -> None:
    """The engine's top-20 alternatives often leave options out (they then got 0): each missing letter is asked
    for on its own, and its raw log-probability is the same as when it is among the alternatives."""
    from medcouncil.serving.client import to_openai_messages
    from medcouncil.serving.dialects import letter_logprobs
    from medcouncil.tools.mcqa import format_mcqa

    from ..conftest import SHARED

    path = SHARED / "data" / "mcqa" / "medqa_5options.test.jsonl"
    if not path.exists():
        pytest.skip(f"shared data not found at {path}")
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()[:8]]

    async def body(client: ModelClient) -> list[tuple[Choice, dict[str, float], str, float]]:
        out = []
        for row in rows:
            messages: list[LLMMessage] = [
                UserMessage(content=format_mcqa(row["question"], row["options"]), source="user")
            ]
            choice = await client.choose(messages, list(row["options"]))
            payload = to_openai_messages(messages)
            first, _ = await client._constrained(payload, list(row["options"]))
            in_top = letter_logprobs(first.logprobs, list(row["options"])) or {}
            letter = next(iter(in_top))
            forced, _ = await client._constrained(payload, [letter])
            out.append((choice, in_top, letter, (letter_logprobs(forced.logprobs, [letter]) or {})[letter]))
        return out

    results = run(embedded_info, body, cache=False)
    completed = 0
    for choice, in_top, letter, forced in results:
        probs = choice.probabilities
        assert probs is not None and set(probs) == set("ABCDE") and min(probs.values()) > 0, probs
        assert sum(probs.values()) == pytest.approx(1.0)
        assert choice.letter == max(probs, key=probs.__getitem__)
        assert forced == pytest.approx(in_top[letter], abs=1e-4)  # forced or among the top: the same number
        completed += len(in_top) < 5
        assert choice.calls == 1 + (5 - len(in_top))
    assert completed > 0, "no item had a letter outside the top alternatives: the completion was not exercised"


def test_choose_with_two_letters_never_leaves_them(embedded_info: EndpointInfo) -> None:
    question: list[LLMMessage] = [UserMessage(content="Is aspirin an NSAID? Y or N?", source="user")]
    choice = run(embedded_info, lambda c: c.choose(question, ["Y", "N"]), cache=False)
    assert choice.letter in {"Y", "N"}


def test_disk_cache_replays_identical_calls(embedded_info: EndpointInfo) -> None:
    question: list[LLMMessage] = [UserMessage(content="Options: A. Heart B. Liver. Answer:", source="user")]

    async def twice(client: ModelClient) -> tuple[CreateResult, CreateResult, Choice, Choice, Path | None]:
        first = await client.chat([QUESTION], max_tokens=8)
        second = await client.chat([QUESTION], max_tokens=8)
        first_choice = await client.choose(question, ["A", "B"])
        second_choice = await client.choose(question, ["A", "B"])
        return first, second, first_choice, second_choice, client.cache_path

    first, second, c1, c2, path = run(embedded_info, twice, cache=True)
    assert isinstance(first, CreateResult) and isinstance(second, CreateResult)
    assert second.cached and second.content == first.content
    assert c2.cached and c2.letter == c1.letter and c2.probabilities == c1.probabilities
    assert path is not None and path.name == cache_namespace(embedded_info, ClientSettings())

    uncached = run(embedded_info, lambda c: c.chat([QUESTION], max_tokens=8), cache=False)
    assert not uncached.cached


def test_cache_stores_are_per_model_as_served_and_per_sampling() -> None:
    def name(
        url: str = "http://127.0.0.1:8000/v1",
        model: str = "medgemma",
        weights: str = "",
        dialect: str = "vllm",
        temperature: float = 0.0,
    ) -> str:
        info = EndpointInfo(base_url=url, model=model, dialect=dialect, weights=weights)  # type: ignore[arg-type]
        return cache_namespace(info, ClientSettings(temperature=temperature))

    # An endpoint medcouncil does not know the weights of: its port, engine and model name each name a store.
    assert name() != name(url="http://127.0.0.1:9123/v1")
    assert name() != name(model="medgemma-ko-lora")
    assert name() != name(dialect="llamacpp")
    assert name() != name(temperature=0.7)
    # A server medcouncil started is named by its weights: a new port reuses the store, new weights do not.
    assert name(weights="llamacpp|a") == name(url="http://127.0.0.1:9123/v1", weights="llamacpp|a")
    assert name(weights="llamacpp|a") != name(weights="llamacpp|b")

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from autogen_core.models import AssistantMessage, CreateResult, LLMMessage, SystemMessage, UserMessage
from autogen_ext.models.replay import ReplayChatCompletionClient

from medcouncil.serving.adapter import CONVERSATION_OPENER, LocalEngineClient, normalize_messages


class RecordingReplay(ReplayChatCompletionClient):
    """A replay client that remembers the histories it was sent."""

    def __init__(self, responses: list[str]) -> None:
        super().__init__(responses)
        self.seen: list[Sequence[LLMMessage]] = []

    async def create(self, messages: Sequence[LLMMessage], **kwargs: Any) -> CreateResult:  # type: ignore[override]
        self.seen.append(messages)
        return await super().create(messages, **kwargs)


def roles(messages: Sequence[LLMMessage]) -> list[str]:
    return [type(m).__name__ for m in messages]


def test_normalize_merges_systems_and_same_role_runs() -> None:
    history: list[LLMMessage] = [
        SystemMessage(content="You are the diagnostician."),
        UserMessage(content="Case text", source="user"),
        SystemMessage(content="Answer briefly."),
        UserMessage(content="[1] evidence", source="retriever"),
        AssistantMessage(content="Asthma", source="diagnostician"),
        AssistantMessage(content="Final: B", source="diagnostician"),
        UserMessage(content="REVISE: dose", source="critic"),
    ]
    out = normalize_messages(history)
    assert roles(out) == ["SystemMessage", "UserMessage", "AssistantMessage", "UserMessage"]
    assert out[0].content == "You are the diagnostician.\n\nAnswer briefly."
    assert out[1].content == "Case text\n\n[1] evidence"
    assert out[2].content == "Asthma\n\nFinal: B"


def test_normalize_opens_with_a_user_turn() -> None:
    out = normalize_messages([SystemMessage(content="S"), AssistantMessage(content="Hi", source="a")])
    assert roles(out) == ["SystemMessage", "UserMessage", "AssistantMessage"]
    assert out[1].content == CONVERSATION_OPENER


def test_client_sends_normalised_history_unless_disabled() -> None:
    history: list[LLMMessage] = [UserMessage(content="a", source="u"), UserMessage(content="b", source="r")]
    inner = RecordingReplay(["ok", "ok"])
    asyncio.run(LocalEngineClient(inner).create(history))
    assert len(inner.seen[-1]) == 1
    asyncio.run(LocalEngineClient(inner, normalize=False).create(history))
    assert len(inner.seen[-1]) == 2


def test_stream_usage_is_filled_for_engines_without_stream_usage() -> None:
    class NoStreamUsage(RecordingReplay):
        async def create(self, messages: Sequence[LLMMessage], **kwargs: Any) -> CreateResult:  # type: ignore[override]
            result = await super().create(messages, **kwargs)
            result.usage.prompt_tokens = 42
            return result

        async def create_stream(self, messages: Sequence[LLMMessage], **kwargs: Any):  # type: ignore[no-untyped-def,override]
            extra: Mapping[str, Any] = kwargs.get("extra_create_args", {})
            assert "stream_options" not in extra
            for token in ("Ast", "hma"):
                yield token
            yield CreateResult(
                finish_reason="stop",
                content="Asthma",
                usage={"prompt_tokens": 0, "completion_tokens": 0},  # type: ignore[arg-type]
                cached=False,
            )

    async def run() -> list[str | CreateResult]:
        client = LocalEngineClient(NoStreamUsage(["probe"]), fill_stream_usage=True)
        return [item async for item in client.create_stream([UserMessage(content="q", source="u")])]

    items = asyncio.run(run())
    final = items[-1]
    assert items[:2] == ["Ast", "hma"]
    assert isinstance(final, CreateResult)
    assert final.usage.prompt_tokens == 42
    assert final.usage.completion_tokens == 2

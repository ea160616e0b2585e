"""A ChatCompletionClient wrapper for local engines.

* Message histories are normalised: system messages merge into one at the front, consecutive messages of one
  role merge, and the first turn after the system text is a user turn. Chat templates that demand strict
  user/assistant alternation (Gemma's, Mistral's) then never reject a multi-agent history.
* Streams from engines that report no usage (llama-cpp-python) get it filled in: completion tokens from the
  streamed chunks (one token each), prompt tokens from a one-token request that reuses the engine's prefix cache.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping, Sequence
from typing import Any, Literal

from autogen_core import CancellationToken
from autogen_core.models import (
    AssistantMessage,
    ChatCompletionClient,
    CreateResult,
    LLMMessage,
    ModelCapabilities,  # type: ignore[attr-defined]
    ModelInfo,
    RequestUsage,
    SystemMessage,
    UserMessage,
)
from autogen_core.tools import Tool, ToolSchema
from pydantic import BaseModel

CONVERSATION_OPENER = "(The conversation starts.)"
"""User turn inserted when a history would otherwise open with the assistant."""


def _role(message: LLMMessage) -> str:
    return "assistant" if isinstance(message, AssistantMessage) else "user"


def _as_list(part: Any) -> list[Any]:
    return part if isinstance(part, list) else [part]


def _join(first: Any, second: Any) -> Any:
    if isinstance(first, str) and isinstance(second, str):
        return f"{first}\n\n{second}"
    return _as_list(first) + _as_list(second)


def normalize_messages(messages: Sequence[LLMMessage]) -> list[LLMMessage]:
    """A history that any alternating chat template accepts (see the module docstring)."""
    system_parts = [m.content for m in messages if isinstance(m, SystemMessage) and m.content.strip()]
    turns: list[LLMMessage] = []
    for message in messages:
        if isinstance(message, SystemMessage):
            continue
        if isinstance(message, UserMessage | AssistantMessage) and turns and _role(turns[-1]) == _role(message):
            previous = turns[-1]
            if isinstance(previous, UserMessage) and isinstance(message, UserMessage):
                turns[-1] = UserMessage(content=_join(previous.content, message.content), source=previous.source)
                continue
            if (
                isinstance(previous, AssistantMessage)
                and isinstance(message, AssistantMessage)
                and isinstance(previous.content, str)
                and isinstance(message.content, str)
            ):
                turns[-1] = AssistantMessage(content=_join(previous.content, message.content), source=previous.source)
                continue
        turns.append(message)
    if turns and isinstance(turns[0], AssistantMessage):
        turns.insert(0, UserMessage(content=CONVERSATION_OPENER, source="user"))
    head: list[LLMMessage] = [SystemMessage(content="\n\n".join(system_parts))] if system_parts else []
    return head + turns


class LocalEngineClient(ChatCompletionClient):
    """Wraps a client for a local engine; see the module docstring."""

    def __init__(self, inner: ChatCompletionClient, *, normalize: bool = True, fill_stream_usage: bool = False):
        self.inner = inner
        self.normalize = normalize
        self.fill_stream_usage = fill_stream_usage

    def _prepare(self, messages: Sequence[LLMMessage]) -> Sequence[LLMMessage]:
        return normalize_messages(messages) if self.normalize else messages

    async def create(
        self,
        messages: Sequence[LLMMessage],
        *,
        tools: Sequence[Tool | ToolSchema] = [],
        tool_choice: Tool | Literal["auto", "required", "none"] = "auto",
        json_output: bool | type[BaseModel] | None = None,
        extra_create_args: Mapping[str, Any] = {},
        cancellation_token: CancellationToken | None = None,
    ) -> CreateResult:
        return await self.inner.create(
            self._prepare(messages),
            tools=tools,
            tool_choice=tool_choice,
            json_output=json_output,
            extra_create_args=extra_create_args,
            cancellation_token=cancellation_token,
        )

    async def create_stream(  # type: ignore[override]
        self,
        messages: Sequence[LLMMessage],
        *,
        tools: Sequence[Tool | ToolSchema] = [],
        tool_choice: Tool | Literal["auto", "required", "none"] = "auto",
        json_output: bool | type[BaseModel] | None = None,
        extra_create_args: Mapping[str, Any] = {},
        cancellation_token: CancellationToken | None = None,
    ) -> AsyncGenerator[str | CreateResult, None]:
        prepared = self._prepare(messages)
        args = dict(extra_create_args)
        if not self.fill_stream_usage:
            args.setdefault("stream_options", {"include_usage": True})
        chunks = 0
        async for item in self.inner.create_stream(
            prepared,
            tools=tools,
            tool_choice=tool_choice,
            json_output=json_output,
            extra_create_args=args,
            cancellation_token=cancellation_token,
        ):
            if isinstance(item, str):
                chunks += 1
                yield item
                continue
            if self.fill_stream_usage and item.usage.prompt_tokens == 0:
                probe_args = {k: v for k, v in extra_create_args.items() if k != "stream_options"}
                probe = await self.inner.create(
                    prepared,
                    extra_create_args={**probe_args, "max_tokens": 1},
                    cancellation_token=cancellation_token,
                )
                item.usage = RequestUsage(prompt_tokens=probe.usage.prompt_tokens, completion_tokens=chunks)
            yield item

    async def close(self) -> None:
        await self.inner.close()

    def actual_usage(self) -> RequestUsage:
        return self.inner.actual_usage()

    def total_usage(self) -> RequestUsage:
        return self.inner.total_usage()

    def count_tokens(self, messages: Sequence[LLMMessage], *, tools: Sequence[Tool | ToolSchema] = []) -> int:
        return self.inner.count_tokens(self._prepare(messages), tools=tools)

    def remaining_tokens(self, messages: Sequence[LLMMessage], *, tools: Sequence[Tool | ToolSchema] = []) -> int:
        return self.inner.remaining_tokens(self._prepare(messages), tools=tools)

    @property
    def capabilities(self) -> ModelCapabilities:  # type: ignore[override]
        return self.inner.capabilities

    @property
    def model_info(self) -> ModelInfo:
        return self.inner.model_info

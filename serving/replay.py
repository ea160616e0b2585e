"""A zero-latency model that replays scripted replies: for deterministic tests and the overhead benchmark.

It wraps AutoGen's ``ReplayChatCompletionClient`` and answers ``choose`` and ``cloze`` with the next scripted reply
(a letter).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Sequence
from typing import Any

from autogen_core.models import CreateResult, LLMMessage, RequestUsage, UserMessage
from autogen_ext.models.replay import ReplayChatCompletionClient

from medcouncil.serving.components import LOCAL_MODEL_INFO, Choice
from medcouncil.serving.dialects import Shape


class ReplayModel:
    """Scripted replies in order; records every history it was sent. A reply ``X=p`` to :meth:`choose` gives letter
    X the probability p (the others share the rest)."""

    def __init__(self, replies: Sequence[str], name: str = "replay", shapes: bool = False) -> None:
        self.client = ReplayChatCompletionClient(list(replies), model_info=LOCAL_MODEL_INFO)  # type: ignore[arg-type]
        self._name = name
        self._shapes = shapes
        self.seen: list[list[LLMMessage]] = []
        self.shapes_seen: list[str | None] = []
        """The shape asked of each streamed reply (its name; None: free)."""
        self.cloze_seen: list[tuple[str, dict[str, str]]] = []
        """The prompt and options of each :meth:`cloze` call."""
        self.args_seen: list[dict[str, Any]] = []
        """The request fields (max_tokens, ...) of each streamed reply."""

    @property
    def shapes(self) -> bool:
        """As a client that enforces shapes (the scripted replies are taken to be in them)."""
        return self._shapes

    @property
    def name(self) -> str:
        return self._name

    async def stream(
        self, messages: Sequence[LLMMessage], shape: Shape | None = None, **create_args: Any
    ) -> AsyncIterator[str | CreateResult]:
        self.seen.append(list(messages))
        self.shapes_seen.append(shape.name if shape is not None and self._shapes else None)
        self.args_seen.append(dict(create_args))
        async for item in self.client.create_stream(messages):
            if isinstance(item, CreateResult) and isinstance(item.content, str):
                # AutoGen's replay splits a reply on whitespace and loses its line breaks: stream it as written
                for chunk in re.findall(r"\s*\S+\s*", item.content):
                    yield chunk
            if isinstance(item, CreateResult):
                yield item

    async def chat(self, messages: Sequence[LLMMessage], **create_args: Any) -> CreateResult:
        self.seen.append(list(messages))
        return await self.client.create(messages)

    async def choose(self, messages: Sequence[LLMMessage], letters: Sequence[str]) -> Choice:
        result = await self.chat(messages)
        text = str(result.content).strip()
        letter = text if text in letters else None
        probabilities = {key: float(key == letter) for key in letters} if letter else None
        if (graded := re.fullmatch(r"(\w+)=([0-9.]+)", text)) and graded.group(1) in letters:
            # "A=0.7": the letter's probability, the rest shared by the others; the more probable letter is chosen
            mass = float(graded.group(2))
            others = (1.0 - mass) / max(len(letters) - 1, 1)
            probabilities = {key: mass if key == graded.group(1) else others for key in letters}
            letter = max(probabilities, key=lambda key: probabilities[key])
        usage = RequestUsage(prompt_tokens=result.usage.prompt_tokens, completion_tokens=1)
        return Choice(letter=letter, probabilities=probabilities, raw=text, usage=usage)

    async def cloze(self, prompt: str, options: dict[str, str]) -> Choice:
        """The next scripted reply names the option (as for :meth:`choose`); the prompt and options are recorded."""
        self.cloze_seen.append((prompt, dict(options)))
        return await self.choose([UserMessage(content=prompt, source="user")], list(options))

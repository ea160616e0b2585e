"""The chat REPL survives any error from a turn (AgentChat re-raises some failures as RuntimeError)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from types import SimpleNamespace

import pytest

from medcouncil.agents.protocol import Episode, Event, Question
from medcouncil.scenarios.chat.session import ChatSession


class Failing:
    name = "council"

    def __init__(self, error: Exception) -> None:
        self.error = error

    async def stream(self, question: Question, history: Sequence[Episode] = ()) -> AsyncIterator[Event]:
        raise self.error
        yield  # pragma: no cover - makes this an async generator


@pytest.mark.parametrize("error", [RuntimeError("ValueError: from the runtime"), KeyError("x"), ValueError("bad")])
def test_a_turn_that_raises_leaves_the_session_alive(error: Exception, capsys: pytest.CaptureFixture[str]) -> None:
    loop = asyncio.new_event_loop()
    try:
        answerers = SimpleNamespace(council=Failing(error), single=Failing(error), model=SimpleNamespace(name="m"))
        session = ChatSession(loop, answerers, single=False, language="auto")  # type: ignore[arg-type]
        session.turn("hello")  # must not raise
        session.turn("again")
    finally:
        loop.close()
    assert capsys.readouterr().out.count("error:") == 2
    assert session.episodes == []

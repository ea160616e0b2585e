"""The interfaces every harness relies on: a question in, an episode out, the same for the council and the single model.

``Answerer.stream`` yields events while it works (token chunks, finished turns) and ends with the ``Episode``;
:func:`run_episode` collects it. Chat, scenario replay and the benchmark all drive an ``Answerer``.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Sequence
from typing import Any, Literal, Protocol

from autogen_core.models import LLMMessage
from pydantic import BaseModel, Field

from medcouncil.serving.components import Choice
from medcouncil.tools.knowledge import Evidence, SearchGuard

RENAMED_ID = re.compile(r"#\d+$")
"""The suffix an item whose id repeats an earlier one's is given (``ID#2``, ``ID#3``:
:func:`medcouncil.scenarios.datasets.ids.unique_ids`)."""


class Question(BaseModel):
    """What the user (or a benchmark item) asks."""

    text: str
    options: dict[str, str] | None = None
    """Lettered options of a multiple-choice item; the final answer is then a constrained choice."""
    item_id: str | None = None
    """Benchmark item id: the retriever's contamination guard excludes this item's own material."""
    language: Literal["auto", "ko", "en"] = "auto"
    reply: Literal["free", "action", "diagnosis"] = "free"
    """The form the answer must take: free text, or an episode doctor's action line (``action``: ASK/EXAM/TEST/
    DIAGNOSIS, ``diagnosis``: DIAGNOSIS only), held to it by the engine where the model's client enforces shapes."""

    def guard(self) -> SearchGuard | None:
        if self.item_id is None:
            return None
        # A repeated id renamed ``ID#2`` still excludes the material indexed under ``ID``.
        return SearchGuard(item_ids={self.item_id, RENAMED_ID.sub("", self.item_id)}, question=self.text)


class Turn(BaseModel):
    """One agent's message in an episode, with what it cost."""

    agent: str
    content: str
    kind: Literal["translation", "evidence", "diagnosis", "verdict", "answer"] = "diagnosis"
    evidence: list[Evidence] = Field(default_factory=list)
    verdict: Literal["APPROVE", "REVISE"] | None = None
    choice: Choice | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    model_calls: int = 0
    model_time_s: float = 0.0
    """Time spent waiting on the model."""
    latency_s: float = 0.0
    """Wall time of the whole turn."""
    skipped: bool = False


class Episode(BaseModel):
    """A question answered: the final answer, every turn, and the totals."""

    question: Question
    answerer: str
    language: str = "en"
    answer: str = ""
    """The final answer, in the user's language."""
    case_en: str = ""
    """The question as the council read it (English)."""
    answer_en: str = ""
    letter: str | None = None
    probabilities: dict[str, float] | None = None
    turns: list[Turn] = Field(default_factory=list)
    wall_time_s: float = 0.0
    error: str | None = None
    rejected: bool = False
    """The error is the engine refusing a request outright (e.g. a prompt longer than its context): final."""
    engine_died: bool = False
    """The error is the engine process medcouncil started dying: a run stops (resumable) rather than retry."""
    verdict: Literal["APPROVE", "REVISE"] | None = None
    """The critic's last verdict (also after the last allowed revision, when it can no longer send it back)."""
    escalated: bool | None = None
    """Gated mode: whether the council convened after the single model's answer (None: not gated)."""

    @property
    def prompt_tokens(self) -> int:
        return sum(turn.prompt_tokens for turn in self.turns)

    @property
    def completion_tokens(self) -> int:
        return sum(turn.completion_tokens for turn in self.turns)

    @property
    def model_calls(self) -> int:
        return sum(turn.model_calls for turn in self.turns)

    @property
    def model_time_s(self) -> float:
        return sum(turn.model_time_s for turn in self.turns)

    @property
    def sources(self) -> list[Evidence]:
        return [evidence for turn in self.turns for evidence in turn.evidence]


class TokenEvent(BaseModel):
    agent: str
    text: str


class TurnEvent(BaseModel):
    turn: Turn


Event = TokenEvent | TurnEvent | Episode


class ChatModel(Protocol):
    """What agents need of a model: :class:`medcouncil.serving.client.ModelClient` or a replay model."""

    @property
    def name(self) -> str: ...

    def stream(self, messages: Sequence[LLMMessage], **create_args: Any) -> AsyncIterator[Any]:
        """Text chunks, then a CreateResult with usage."""
        ...

    async def choose(self, messages: Sequence[LLMMessage], letters: Sequence[str]) -> Choice: ...

    async def cloze(self, prompt: str, options: dict[str, str]) -> Choice:
        """The option whose text is likeliest after ``prompt`` (a completion, no letters shown)."""
        ...

    @property
    def shapes(self) -> bool:
        """Whether a ``shape`` given to :meth:`stream` is enforced by the engine."""
        ...


class Answerer(Protocol):
    """The council and the single-model baseline alike."""

    name: str

    def stream(self, question: Question, history: Sequence[Episode] = ()) -> AsyncIterator[Event]:
        """Events while answering; the last one is the Episode. ``history``: earlier episodes of the conversation."""
        ...


async def run_episode(answerer: Answerer, question: Question, history: Sequence[Episode] = ()) -> Episode:
    """Drive an answerer to the end and return its episode."""
    async for event in answerer.stream(question, history):
        if isinstance(event, Episode):
            return event
    raise RuntimeError(f"{answerer.name} ended without an episode")

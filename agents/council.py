"""The council team (AutoGen SelectorGroupChat with a deterministic speaker function) and the single-model baseline.

Both implement :class:`~medcouncil.agents.protocol.Answerer`, so chat, replay and the benchmark treat them alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, Literal

from autogen_agentchat.base import TaskResult
from autogen_agentchat.conditions import FunctionalTermination
from autogen_agentchat.messages import BaseAgentEvent, BaseChatMessage, ModelClientStreamingChunkEvent, TextMessage
from autogen_agentchat.teams import SelectorGroupChat
from autogen_core import CancellationToken
from autogen_core.models import AssistantMessage, LLMMessage, SystemMessage, UserMessage
from autogen_ext.models.replay import ReplayChatCompletionClient
from pydantic import BaseModel, ConfigDict, Field, field_validator

from medcouncil.agents.calls import choose_letter, final_answer, reply_shape, stream_model
from medcouncil.agents.protocol import ChatModel, Episode, Event, Question, TokenEvent, Turn, TurnEvent
from medcouncil.agents.roles import (
    CRITIC,
    DIAGNOSTICIAN,
    RETRIEVER,
    ROLES,
    TRANSLATOR,
    CouncilAgent,
    CouncilState,
    CriticAgent,
    DiagnosticianAgent,
    RetrieverAgent,
    StateHolder,
    TranslatorAgent,
)
from medcouncil.tools.language import detect_language
from medcouncil.tools.search import KnowledgeSearch

SINGLE_SYSTEM = "You are a careful clinician. Answer the question concisely."


class PanelConfig(BaseModel):
    """The panel structure of :class:`~medcouncil.agents.council.CouncilConfig`."""

    model_config = ConfigDict(extra="forbid")  # a misspelt key in a council file is an error, not a default

    specialties: list[str] = Field(default_factory=lambda: ["internal medicine", "emergency medicine", "pharmacology"])
    """The panelists; ``["auto"]``: the model picks ``size`` of :data:`SPECIALTIES` for each case."""
    size: int = Field(default=3, ge=2, le=10)
    """Panelists when the model picks them."""
    rounds: int = Field(default=2, ge=0)
    """Rounds of discussion after the independent answers (each panelist sees the others' latest answers)."""

    @property
    def auto(self) -> bool:
        return self.specialties == ["auto"]

    @field_validator("specialties")
    @classmethod
    def _enough(cls, specialties: list[str]) -> list[str]:
        if specialties != ["auto"] and len(specialties) < 2:
            raise ValueError("a panel needs at least two specialties (or [auto])")
        if len(specialties) > 10:
            raise ValueError("a panel has at most ten specialties")
        return specialties


SPECIALTIES = (
    "internal medicine",
    "emergency medicine",
    "cardiology",
    "infectious diseases",
    "neurology",
    "pharmacology",
    "surgery",
    "paediatrics",
    "obstetrics and gynaecology",
    "psychiatry",
)
"""The fixed list the model chooses a panel from when the specialties are not configured."""


class CouncilConfig(BaseModel):
    """Which roles sit on the council and how long it may deliberate."""

    structure: Literal["pipeline", "panel"] = "pipeline"
    """``pipeline``: translator, retriever, diagnostician, critic (revisions bounded); ``panel``: specialists who
    answer independently, discuss for ``panel.rounds`` and stop at consensus or by a moderator's decision."""
    panel: PanelConfig = Field(default_factory=PanelConfig)
    roles: list[str] = Field(default_factory=lambda: list(ROLES))
    max_revisions: int = Field(default=1, ge=0)
    """Critic-requested revision rounds at most."""
    approve_threshold: float | None = Field(default=None, ge=0.0, le=1.0)
    """The critic held to its shape approves when its probability of A (approve) reaches this; None: the value
    calibrated for the served model, else 0.5 (``agents/verdict.py``)."""
    max_tokens: dict[str, int] = Field(default_factory=lambda: {DIAGNOSTICIAN: 256, CRITIC: 160, TRANSLATOR: 512})

    @field_validator("roles")
    @classmethod
    def _known_roles(cls, roles: list[str]) -> list[str]:
        unknown = set(roles) - set(ROLES)
        if unknown:
            raise ValueError(f"unknown roles {sorted(unknown)}; choose from {list(ROLES)}")
        if DIAGNOSTICIAN not in roles:
            raise ValueError("the council needs a diagnostician")
        if len(set(roles)) != len(roles):
            raise ValueError(f"a role is listed twice: {roles}")
        return roles

    @field_validator("max_tokens")
    @classmethod
    def _budgets(cls, budgets: dict[str, int]) -> dict[str, int]:
        unknown = set(budgets) - {DIAGNOSTICIAN, CRITIC, TRANSLATOR}
        if unknown:
            raise ValueError(
                f"no token budget for {sorted(unknown)}: roles that write are {DIAGNOSTICIAN}, {CRITIC}, {TRANSLATOR}"
            )
        if low := {role: n for role, n in budgets.items() if n < 1}:
            raise ValueError(f"a token budget must be at least 1: {low}")
        return budgets


def _language(question: Question) -> str:
    return detect_language(question.text) if question.language == "auto" else question.language


class Council:
    """Translator, retriever, diagnostician and critic; a model per role (another endpoint or LoRA adapter is fine)."""

    name = "council"

    def __init__(
        self,
        models: ChatModel | Mapping[str, ChatModel],
        knowledge: KnowledgeSearch,
        config: CouncilConfig | None = None,
    ) -> None:
        self.config = config or CouncilConfig()
        per_role = models if isinstance(models, Mapping) else dict.fromkeys(ROLES, models)
        self.holder = StateHolder()
        self.agents: list[CouncilAgent] = self._build_agents(per_role, knowledge)

    def _build_agents(self, models: Mapping[str, ChatModel], knowledge: KnowledgeSearch) -> list[CouncilAgent]:
        return [self._agent(role, models, knowledge) for role in ROLES if role in self.config.roles]

    def _new_state(self, question: Question, history: Sequence[Episode], language: str) -> CouncilState:
        return CouncilState(
            question=question,
            history=history,
            language=language,
            roles=self.config.roles,
            max_revisions=self.config.max_revisions,
            case_en=question.text,
        )

    def _max_turns(self) -> int:
        return 4 + 2 * (self.config.max_revisions + 1)

    def _agent(self, role: str, models: Mapping[str, ChatModel], knowledge: KnowledgeSearch) -> CouncilAgent:
        limit = self.config.max_tokens.get(role, 256)
        if role == TRANSLATOR:
            return TranslatorAgent(self.holder, models[role], limit)
        if role == RETRIEVER:
            return RetrieverAgent(self.holder, knowledge)
        if role == DIAGNOSTICIAN:
            return DiagnosticianAgent(self.holder, models[role], limit)
        return CriticAgent(self.holder, models[role], limit, self.config.approve_threshold)

    def _team(self, state: CouncilState) -> SelectorGroupChat:
        def select(messages: Sequence[BaseAgentEvent | BaseChatMessage]) -> str | None:
            last = next(m.source for m in reversed(messages) if isinstance(m, BaseChatMessage))
            return state.next_speaker(last)

        def finished(messages: Sequence[BaseAgentEvent | BaseChatMessage]) -> bool:
            chat = [m for m in messages if isinstance(m, BaseChatMessage)]
            return bool(chat) and chat[-1].source != "user" and state.next_speaker(chat[-1].source) is None

        return SelectorGroupChat(
            list(self.agents),
            # Never consulted: the selector function always names the next speaker (no LLM-chosen speaker).
            model_client=ReplayChatCompletionClient([DIAGNOSTICIAN]),
            selector_func=select,
            termination_condition=FunctionalTermination(finished),
            allow_repeated_speaker=True,
            max_turns=self._max_turns(),
        )

    async def stream(self, question: Question, history: Sequence[Episode] = ()) -> AsyncIterator[Event]:
        started = time.perf_counter()
        language = _language(question)
        state = self._new_state(question, history, language)
        self.holder.state = state
        episode = Episode(question=question, answerer=self.name, language=language)
        try:
            async for item in run_cancellable(self._team(state), TextMessage(content=question.text, source="user")):
                if isinstance(item, ModelClientStreamingChunkEvent):
                    yield TokenEvent(agent=item.source, text=item.content)
                elif isinstance(item, TextMessage) and "turn" in item.metadata:
                    yield TurnEvent(turn=Turn.model_validate_json(item.metadata["turn"]))
                elif isinstance(item, TaskResult):
                    break
        finally:
            self.holder.state = None
        episode.turns = state.turns
        episode.case_en = state.case_en
        episode.answer_en = state.answer_en
        episode.answer = state.final or state.answer_en
        episode.error = state.error
        episode.rejected = state.rejected
        episode.engine_died = state.engine_died
        episode.verdict = state.verdict
        if state.choice is not None:
            episode.letter, episode.probabilities = state.choice.letter, state.choice.probabilities
        episode.wall_time_s = time.perf_counter() - started
        yield episode


class CancelledRecords(logging.Filter):
    """Drops AutoGen's log records of a cancellation: when a council turn is cancelled (Ctrl-C, SIGTERM, a
    cancelled chat turn), the runtime logs the CancelledError of every agent it was running as an ERROR with its
    traceback, although the cancellation is what was asked for and its caller reports it in one line. Other errors
    are still logged."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return not isinstance(error, asyncio.CancelledError)


AUTOGEN_LOGGERS = ("autogen_core", "autogen_agentchat")
_QUIET = CancelledRecords()


def quiet_cancellations() -> None:
    """The one way AutoGen's logging is quieted on cancellation (idempotent): :class:`CancelledRecords` on the loggers
    AutoGen reports agent failures with."""
    for name in AUTOGEN_LOGGERS:
        logger = logging.getLogger(name)
        if _QUIET not in logger.filters:
            logger.addFilter(_QUIET)


CANCEL_GRACE_S = 2.0
"""How long a cancelled council turn waits for its agents to wind down before it returns anyway."""


async def run_cancellable(team: SelectorGroupChat, task: TextMessage) -> AsyncIterator[Any]:
    """``team.run_stream(task)``, cancellable at once.

    AgentChat's stream, when its consumer is cancelled, waits for the runtime to go idle: the model call in flight
    and every later turn of the team run to the end (a Ctrl-C in ``chat`` took minutes). Here the stream is pumped
    by a task of its own; a cancellation of the consumer cancels the team's token, which each council agent ties
    to its model call (the HTTP request is closed), and returns within :data:`CANCEL_GRACE_S`.
    """
    quiet_cancellations()
    token = CancellationToken()
    queue: asyncio.Queue[Any] = asyncio.Queue()
    done = object()

    async def pump() -> None:
        try:
            async for item in team.run_stream(task=task, cancellation_token=token):
                queue.put_nowait(item)
        except BaseException as error:
            queue.put_nowait(error)
        finally:
            queue.put_nowait(done)

    pumping = asyncio.create_task(pump())
    try:
        while (item := await queue.get()) is not done:
            if isinstance(item, BaseException):
                raise item
            yield item
    except asyncio.CancelledError:
        token.cancel()
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(pumping, CANCEL_GRACE_S)
        raise
    finally:
        if not pumping.done():
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(pumping, CANCEL_GRACE_S)


class SingleModel:
    """The baseline: one call to the same model with the same question format; a constrained choice on MCQA."""

    name = "single"

    def __init__(self, model: ChatModel, max_tokens: int = 256) -> None:
        self.model = model
        self.max_tokens = max_tokens

    async def stream(self, question: Question, history: Sequence[Episode] = ()) -> AsyncIterator[Event]:
        started = time.perf_counter()
        turn = Turn(agent="single", content="", kind="answer")
        episode = Episode(question=question, answerer=self.name, language=_language(question), case_en=question.text)
        if question.options:
            choice = await choose_letter(self.model, question.text, question.options, turn)
            turn.choice = choice
            turn.content = final_answer(choice.letter, question.options) if choice.letter else ""
            episode.letter, episode.probabilities = choice.letter, choice.probabilities
            yield TokenEvent(agent="single", text=turn.content)
        else:
            messages: list[LLMMessage] = [SystemMessage(content=SINGLE_SYSTEM)]
            for earlier in history:
                messages += [
                    UserMessage(content=earlier.question.text, source="user"),
                    AssistantMessage(content=earlier.answer, source="single"),
                ]
            messages.append(UserMessage(content=question.text, source="user"))
            shape = reply_shape(question.reply, self.model)  # an episode step: its action line, where enforced
            async for chunk in stream_model(self.model, messages, turn, shape=shape, max_tokens=self.max_tokens):
                yield TokenEvent(agent="single", text=chunk)
        turn.latency_s = time.perf_counter() - started
        episode.turns = [turn]
        episode.answer = episode.answer_en = turn.content
        yield TurnEvent(turn=turn)
        episode.wall_time_s = time.perf_counter() - started
        yield episode


GATE_THRESHOLD = 0.6
"""Default gate: the council convenes when the single model gives its top option less than this probability."""


class Gated:
    """The single model answers first; the council convenes only when its top-option probability is low.

    A free-text question (no options, so no probability) always goes to the council, as does a single-model answer
    without probabilities or without a valid letter. The episode carries both stages' turns, so its cost is the
    whole strategy's.
    """

    name = "gated"

    def __init__(self, single: SingleModel, council: Council, threshold: float = GATE_THRESHOLD) -> None:
        self.single = single
        self.council = council
        self.threshold = threshold

    def confident(self, episode: Episode) -> bool:
        if episode.letter is None or not episode.probabilities:
            return False
        return max(episode.probabilities.values()) >= self.threshold

    async def stream(self, question: Question, history: Sequence[Episode] = ()) -> AsyncIterator[Event]:
        started = time.perf_counter()
        first: Episode | None = None
        async for event in self.single.stream(question, history):
            if isinstance(event, Episode):
                first = event
            else:
                yield event
        assert first is not None
        if not question.options or not self.confident(first):
            async for event in self.council.stream(question, history):
                if isinstance(event, Episode):
                    final = event.model_copy(update={"turns": first.turns + event.turns, "escalated": True})
                else:
                    yield event
        else:
            final = first.model_copy(update={"escalated": False})
        final.answerer = self.name
        final.wall_time_s = time.perf_counter() - started
        yield final

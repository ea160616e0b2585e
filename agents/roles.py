"""The four roles as AgentChat agents sharing one episode state: translator, retriever, diagnostician, critic.

Each agent streams its model's tokens as ``ModelClientStreamingChunkEvent``s and ends its turn with a
``TextMessage`` whose metadata carries the :class:`~medcouncil.agents.protocol.Turn` (usage, model calls, model
time, latency).
"""

from __future__ import annotations

import asyncio
import functools
import re
import time
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from autogen_agentchat.agents import BaseChatAgent
from autogen_agentchat.base import Response
from autogen_agentchat.messages import BaseAgentEvent, BaseChatMessage, ModelClientStreamingChunkEvent, TextMessage
from autogen_core import CancellationToken
from autogen_core.models import AssistantMessage, LLMMessage, RequestUsage, SystemMessage, UserMessage

from medcouncil.agents import prompts
from medcouncil.agents.calls import (
    SHAPED_SCORING,
    act_after_reasoning,
    choose,
    choose_after_reasoning,
    reply_shape,
    stream_model,
    translate,
)
from medcouncil.agents.preserve import unsupported_values
from medcouncil.agents.protocol import ChatModel, Episode, Question, Turn
from medcouncil.agents.verdict import ReviewKind, approve_probability, approve_threshold
from medcouncil.serving.common.errors import EngineDiedError, MedcouncilError, RequestRejectedError
from medcouncil.serving.components import Choice
from medcouncil.tools.knowledge import Evidence
from medcouncil.tools.mcqa import option_lines, option_listing
from medcouncil.tools.search import KnowledgeSearch
from medcouncil.tools.untrusted import fence, neutralise

TRANSLATOR, RETRIEVER, DIAGNOSTICIAN, CRITIC = "translator", "retriever", "diagnostician", "critic"
ROLES = (TRANSLATOR, RETRIEVER, DIAGNOSTICIAN, CRITIC)


@dataclass
class CouncilState:
    """One episode, shared by the agents and the deterministic speaker selection."""

    question: Question
    history: Sequence[Episode]
    language: str
    roles: Sequence[str]
    max_revisions: int
    case_en: str = ""
    options_en: dict[str, str] | None = None
    """The options as the council reads them: translated with the case for a Korean item, else as given."""
    evidence: list[Evidence] = field(default_factory=list)
    answer_en: str = ""
    choice: Choice | None = None
    critique: str = ""
    verdict: Literal["APPROVE", "REVISE"] | None = None
    final: str = ""
    error: str | None = None
    """A failed turn (model unreachable, ...): the episode ends with it."""
    rejected: bool = False
    """The error is the engine refusing the request itself (retrying cannot help)."""
    engine_died: bool = False
    """The error is the engine process dying (the run stops; see ``EngineDiedError``)."""
    turns: list[Turn] = field(default_factory=list)

    @property
    def translating(self) -> bool:
        return self.language == "ko" and TRANSLATOR in self.roles

    @property
    def options(self) -> dict[str, str] | None:
        return self.options_en or self.question.options

    def options_block(self) -> str:
        """The lettered options for the diagnostician's and the critic's tasks ("" without options)."""
        return options_block(self.options)

    def known_text(self) -> str:
        """What a value in the answer may come from: the case (both languages), the options, the evidence and the
        earlier turns of the conversation."""
        parts = [self.question.text, self.case_en, *(self.question.options or {}).values()]
        parts += [*(self.options_en or {}).values(), *(e.text for e in self.evidence)]
        for earlier in self.history:
            parts += [earlier.question.text, earlier.case_en, earlier.answer_en, earlier.answer]
        return " ".join(parts)

    def critiques(self) -> int:
        return sum(1 for turn in self.turns if turn.agent == CRITIC)

    def next_speaker(self, last: str) -> str | None:
        """Who speaks after ``last``; None ends the episode. A pure function of the state."""
        if self.error is not None:
            return None
        after_answer = TRANSLATOR if self.translating else None
        if last == "user":
            return TRANSLATOR if self.translating else (RETRIEVER if RETRIEVER in self.roles else DIAGNOSTICIAN)
        if last == TRANSLATOR:
            if self.final:
                return None
            return RETRIEVER if RETRIEVER in self.roles else DIAGNOSTICIAN
        if last == RETRIEVER:
            return DIAGNOSTICIAN
        if last == DIAGNOSTICIAN:
            return CRITIC if CRITIC in self.roles else after_answer
        if last == CRITIC:
            if self.verdict == "REVISE" and self.critiques() <= self.max_revisions:
                return DIAGNOSTICIAN
            return after_answer
        return None


def options_block(options: dict[str, str] | None) -> str:
    """:data:`prompts.OPTIONS_BLOCK` with the lettered options, or "" for a free-text question."""
    return prompts.OPTIONS_BLOCK.format(options=option_lines(options)) if options else ""


def split_options(text: str, letters: Sequence[str]) -> tuple[str, dict[str, str]] | None:
    """A translated "case, then lettered options" back into (case, options); None when the options did not come
    back once per letter, in order, after some case text (the caller keeps the original options then). The options
    may stand one per line (as sent) or run on in one line (as some models and streams return them)."""
    markers = [rf"(?:^|\s)\(?{re.escape(letter)}\s*[.):]\s*(?P<o{i}>.+?)" for i, letter in enumerate(letters)]
    match = re.match(r"(?P<case>.*\S)\s*?" + r"\s*".join(markers) + r"\s*$", text.strip(), re.DOTALL)
    if match is None:
        return None
    options = {letter: " ".join(match.group(f"o{i}").split()) for i, letter in enumerate(letters)}
    return match.group("case").strip(), options


class StateHolder:
    """The current episode's state, set by the council before each run."""

    state: CouncilState | None = None

    def get(self) -> CouncilState:
        if self.state is None:
            raise RuntimeError("no episode is running")
        return self.state


def _shorten(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    cut = text[:limit]
    end = max(cut.rfind(". "), cut.rfind("; "))
    return (cut[: end + 1] if end > limit // 2 else cut.rsplit(" ", 1)[0]) + " …"


def source_id(item: Evidence) -> str:
    """How a prompt cites a source: its file name and item id, never a local path (which says nothing to the
    model and may say too much about the machine)."""
    name = Path(item.source).name if "/" in item.source or "\\" in item.source else item.source
    return neutralise(f"{name}#{item.item_id}" if item.item_id else name)


def evidence_block(evidence: Sequence[Evidence]) -> str:
    """Numbered evidence for prompts, within the council's budget (prompts.EVIDENCE_*_CHARS)."""
    if not evidence:
        return prompts.NO_EVIDENCE
    lines: list[str] = []
    used = 0
    for n, item in enumerate(evidence, 1):
        line = f"[{n}] ({source_id(item)}) {fence(_shorten(item.text, prompts.EVIDENCE_ITEM_CHARS))}"
        if lines and used + len(line) > prompts.EVIDENCE_TOTAL_CHARS:
            break
        lines.append(line)
        used += len(line) + 1
    return "\n".join(lines)


def _cancel(task: asyncio.Task[Any]) -> None:
    task.cancel()


class CouncilAgent(BaseChatAgent):
    """A role: runs :meth:`act` and wraps what it yields into AgentChat events and one TextMessage."""

    def __init__(self, name: str, description: str, holder: StateHolder) -> None:
        super().__init__(name, description)
        self.holder = holder
        self._turn = Turn(agent=name, content="")

    @property
    def produced_message_types(self) -> Sequence[type[BaseChatMessage]]:
        return (TextMessage,)

    async def act(self, state: CouncilState, turn: Turn) -> AsyncIterator[str]:
        """Fill ``turn`` (content, usage, ...) and yield streamed text chunks."""
        raise NotImplementedError
        yield ""  # pragma: no cover

    async def on_messages(self, messages: Sequence[BaseChatMessage], cancellation_token: CancellationToken) -> Response:
        async for item in self.on_messages_stream(messages, cancellation_token):
            if isinstance(item, Response):
                return item
        raise RuntimeError(f"{self.name} produced no response")

    async def on_messages_stream(
        self, messages: Sequence[BaseChatMessage], cancellation_token: CancellationToken
    ) -> AsyncGenerator[BaseAgentEvent | BaseChatMessage | Response, None]:
        state = self.holder.get()
        turn = Turn(agent=self.name, content="")
        started = time.perf_counter()
        handler = asyncio.current_task()
        if handler is not None:  # a cancelled team cancels this turn's model call (and closes its HTTP request)
            cancellation_token.add_callback(functools.partial(_cancel, handler))
        try:
            async for chunk in self.act(state, turn):
                yield ModelClientStreamingChunkEvent(content=chunk, source=self.name)
        except MedcouncilError as error:  # the episode ends here; the session that runs it lives on
            state.error = f"{self.name}: {error}"
            state.rejected = isinstance(error, RequestRejectedError)
            state.engine_died = isinstance(error, EngineDiedError)
            turn.content = f"error: {error}"
        turn.latency_s = time.perf_counter() - started
        state.turns.append(turn)
        usage = RequestUsage(prompt_tokens=turn.prompt_tokens, completion_tokens=turn.completion_tokens)
        message = TextMessage(
            content=turn.content or "(empty)",
            source=self.name,
            models_usage=usage,
            metadata={"turn": turn.model_dump_json()},
        )
        yield Response(chat_message=message)

    async def on_reset(self, cancellation_token: CancellationToken) -> None:
        pass


class TranslatorAgent(CouncilAgent):
    """Korean → English for the council, and the final answer back; protected terms pass through unchanged."""

    def __init__(self, holder: StateHolder, model: ChatModel, max_tokens: int = 512) -> None:
        super().__init__(TRANSLATOR, "Translates between Korean and English, keeping terms and values.", holder)
        self.model = model
        self.max_tokens = max_tokens

    async def act(self, state: CouncilState, turn: Turn) -> AsyncIterator[str]:
        turn.kind = "translation"
        to_korean = bool(state.answer_en)
        options = state.question.options
        if to_korean:
            text = await translate(self.model, state.answer_en, turn, True, state.question.text, self.max_tokens)
        else:  # the options travel with the case, under the same placeholder protection
            source = f"{state.question.text}\n\n{option_listing(options)}" if options else state.question.text
            text = await translate(self.model, source, turn, False, max_tokens=self.max_tokens)
        if to_korean:
            state.final = text
        elif options:
            split = split_options(text, list(options))
            state.case_en, state.options_en = split if split is not None else (text, None)
        else:
            state.case_en = text
        yield text


class RetrieverAgent(CouncilAgent):
    """Calls the knowledge-search tool; numbered evidence with source ids, or says there is none."""

    def __init__(self, holder: StateHolder, knowledge: KnowledgeSearch) -> None:
        super().__init__(RETRIEVER, "Searches the knowledge base and cites numbered evidence.", holder)
        self.knowledge = knowledge

    async def act(self, state: CouncilState, turn: Turn) -> AsyncIterator[str]:
        turn.kind = "evidence"
        query = state.case_en
        if state.history:
            query = f"{state.history[-1].case_en}\n{query}"
        state.evidence = self.knowledge.search(query, guard=state.question.guard())
        turn.evidence = list(state.evidence)
        turn.content = evidence_block(state.evidence)
        yield turn.content


class DiagnosticianAgent(CouncilAgent):
    """Ranked differential and final answer; on a multiple-choice item the final answer is a constrained choice."""

    def __init__(self, holder: StateHolder, model: ChatModel, max_tokens: int = 256) -> None:
        super().__init__(DIAGNOSTICIAN, "Reasons over the case and evidence to a differential and an answer.", holder)
        self.model = model
        self.max_tokens = max_tokens

    async def act(self, state: CouncilState, turn: Turn) -> AsyncIterator[str]:
        turn.kind = "diagnosis"
        evidence = evidence_block(state.evidence)
        feedback = ""
        if state.verdict == "REVISE":  # a revision sees its previous answer and the critique
            feedback = prompts.REVISION_FEEDBACK.format(
                previous=neutralise(state.answer_en), critique=neutralise(state.critique)
            )
        messages: list[LLMMessage] = [SystemMessage(content=prompts.DIAGNOSTICIAN_SYSTEM)]
        for earlier in state.history:
            messages.append(UserMessage(content=earlier.case_en, source="user"))
            messages.append(AssistantMessage(content=earlier.answer_en, source=DIAGNOSTICIAN))
        task = prompts.DIAGNOSTICIAN_TASK.format(
            case=fence(state.case_en), options=state.options_block(), evidence=evidence, feedback=feedback
        )
        messages.append(UserMessage(content=task, source="user"))
        # A base model that does not keep a format by itself is held to the differential's (ClientSettings.shapes);
        # a follow-up turn of a conversation is answered freely (the differential fits a case, not every question).
        shaped = self.model.shapes and not state.history
        shape = prompts.diagnostician_shape() if shaped else None  # the choice of an answer follows
        async for chunk in stream_model(self.model, messages, turn, shape=shape, max_tokens=self.max_tokens):
            yield chunk
        state.answer_en = turn.content
        ranked = dict(prompts.DIFFERENTIAL_LINE.findall(turn.content)) if shape is not None else {}
        if not state.options and state.question.reply == "free" and len(ranked) > 1:
            # The shaped final answer is one of its own diagnoses, chosen as an option is (not a free line)
            yield await choose_after_reasoning(self.model, state.case_en, ranked, turn, by_text=True)
            state.answer_en = turn.content
        elif state.options:
            # A shaped base model answers a multiple-choice item jointly (letter x cloze); an episode's commit (its
            # question is the encounter's instructions and dialogue) and every model the user serves choose the letter.
            scoring = SHAPED_SCORING if self.model.shapes and state.question.reply == "free" else "letter"
            yield await choose_after_reasoning(self.model, state.case_en, state.options, turn, scoring=scoring)
            state.choice = turn.choice
            state.answer_en = turn.content
        elif shape := reply_shape(state.question.reply, self.model):
            state.answer_en = await act_after_reasoning(self.model, state.case_en, shape, turn)
            yield f"\n\n{state.answer_en}"


class CriticAgent(CouncilAgent):
    """APPROVE or REVISE with reasons; doses and values absent from the case and evidence force a revision.

    Held to its shape (:attr:`ChatModel.shapes`), the critic decides first and then writes the review in the
    decided form: the verdict is the constrained choice between A (approve) and R (revise), APPROVE when the
    probability of A reaches ``approve_threshold`` (:func:`approve_threshold`). Otherwise it reviews freely and
    the choice is made over its review."""

    def __init__(
        self, holder: StateHolder, model: ChatModel, max_tokens: int = 160, approve_threshold: float | None = None
    ) -> None:
        super().__init__(CRITIC, "Checks the answer against the case and evidence.", holder)
        self.model = model
        self.max_tokens = max_tokens
        self.threshold = approve_threshold

    async def _decide(self, prompt: str, turn: Turn, kind: ReviewKind | None) -> Literal["APPROVE", "REVISE"]:
        """The verdict as a constrained choice (recorded in ``turn.choice``), APPROVE at the threshold or above:
        the calibrated one for a shaped review of ``kind``, 0.5 for a review decided over its own text (None)."""
        turn.choice = await choose(self.model, [UserMessage(content=prompt, source="user")], ["A", "R"], turn)
        threshold = approve_threshold(self.model.name, kind, self.threshold) if kind else 0.5
        return "APPROVE" if approve_probability(turn.choice) >= threshold else "REVISE"

    async def act(self, state: CouncilState, turn: Turn) -> AsyncIterator[str]:
        turn.kind = "verdict"
        evidence = evidence_block(state.evidence)
        case = prompts.CRITIC_CASE.format(
            case=fence(state.case_en),
            options=state.options_block(),
            evidence=evidence,
            answer=neutralise(state.answer_en),
        )
        chosen = state.choice.letter if state.choice else None
        unsupported = unsupported_values(state.answer_en, state.known_text())
        # An item whose choice came back empty is reviewed freely (a shaped "Sound:" would approve no answer).
        shaped = self.model.shapes and not state.history and (not state.options or chosen is not None)
        verdict: Literal["APPROVE", "REVISE"] | None = None
        shape = None
        if shaped:
            kind: ReviewKind = "answer" if state.question.reply == "free" else "step"
            prompt = prompts.CRITIC_VERDICT.format(review=case)
            verdict = "REVISE" if unsupported else await self._decide(prompt, turn, kind)
            shape = prompts.critic_shape(list(state.options or {}) or None, chosen, verdict)
        messages: list[LLMMessage] = [
            SystemMessage(content=prompts.CRITIC_SYSTEM),
            UserMessage(content=case + prompts.CRITIC_ASK, source="user"),
        ]
        async for _ in stream_model(self.model, messages, turn, shape=shape, max_tokens=self.max_tokens):
            pass  # the review is shown with its verdict, when the turn ends
        review = turn.content
        if unsupported:
            verdict = "REVISE"
            note = "Values found in neither the case, the options, the evidence nor the conversation: "
            review = f"{review}\n{note}{', '.join(unsupported)}".strip()
        elif verdict is None:
            verdict = await self._decide(prompts.CRITIC_VERDICT.format(review=review), turn, None)
        state.verdict = verdict
        state.critique = review
        turn.verdict = verdict
        turn.content = f"{verdict}: {review}" if review else verdict
        yield turn.content

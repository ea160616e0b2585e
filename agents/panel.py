"""A deliberating council (MedAgents / MDAgents style): a panel of specialists who answer independently, then see
each other's answers for up to r rounds, and stop at consensus or by a moderator's constrained decision.

It runs on the same AutoGen SelectorGroupChat as the pipeline council, with a deterministic speaker function, the
same translator and retriever, the same per-turn cost accounting and the same :class:`Answerer` protocol. The
specialties are configured, or chosen by the model from :data:`SPECIALTIES` (constrained choices).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field

from autogen_core.models import LLMMessage, SystemMessage, UserMessage

from medcouncil.agents import prompts
from medcouncil.agents.calls import choose, choose_after_reasoning, final_answer, stream_model
from medcouncil.agents.council import SPECIALTIES, Council
from medcouncil.agents.protocol import ChatModel, Episode, Question, Turn
from medcouncil.agents.roles import (
    DIAGNOSTICIAN,
    RETRIEVER,
    TRANSLATOR,
    CouncilAgent,
    CouncilState,
    RetrieverAgent,
    StateHolder,
    TranslatorAgent,
    evidence_block,
    options_block,
)
from medcouncil.serving.components import Choice
from medcouncil.tools.mcqa import format_mcqa, option_lines
from medcouncil.tools.search import KnowledgeSearch
from medcouncil.tools.untrusted import fence, neutralise

MODERATOR = "moderator"


@dataclass
class PanelState(CouncilState):
    specialties: list[str] = field(default_factory=list)
    answers: list[dict[str, Turn]] = field(default_factory=list)
    """Per round, each panelist's turn (its reasoning and constrained choice)."""
    rounds: int = 2
    panel_size: int = 3
    moderated: bool = False

    def panelists(self) -> list[str]:
        return [f"panelist_{i + 1}" for i in range(self.panel_size)]

    def consensus(self) -> str | None:
        """The letter every panelist chose in the last complete round, if they agree."""
        if not self.answers or len(self.answers[-1]) < self.panel_size:
            return None
        letters = {turn.choice.letter if turn.choice else None for turn in self.answers[-1].values()}
        return letters.pop() if len(letters) == 1 and None not in letters else None

    def next_speaker(self, last: str) -> str | None:
        if self.error is not None:
            return None
        back = TRANSLATOR if self.translating and not self.final else None
        if last == "user":
            return TRANSLATOR if self.translating else (RETRIEVER if RETRIEVER in self.roles else self.panelists()[0])
        if last == TRANSLATOR:
            if self.final:
                return None
            return RETRIEVER if RETRIEVER in self.roles else self.panelists()[0]
        if last == RETRIEVER:
            return self.panelists()[0]
        if last in self.panelists():
            index = self.panelists().index(last)
            if index + 1 < self.panel_size:
                return self.panelists()[index + 1]
            if self.consensus() is not None:
                return back
            return self.panelists()[0] if len(self.answers) - 1 < self.rounds else MODERATOR
        if last == MODERATOR:
            return back
        return None


class PanelistAgent(CouncilAgent):
    """One specialist: a reasoning, then (with options) a constrained choice; from round 2 on, the others' answers."""

    def __init__(self, name: str, index: int, holder: StateHolder, model: ChatModel, max_tokens: int) -> None:
        super().__init__(name, f"Panelist {index + 1} of the clinical panel.", holder)
        self.index, self.model, self.max_tokens = index, model, max_tokens

    async def act(self, state: CouncilState, turn: Turn) -> AsyncIterator[str]:
        assert isinstance(state, PanelState)
        if self.index == 0 and (not state.answers or len(state.answers[-1]) == state.panel_size):
            if not state.specialties:
                state.specialties = await self._specialties(state, turn)
            state.answers.append({})
        specialty = state.specialties[self.index]
        options = state.options
        block = options_block(options)
        discussion = ""
        if len(state.answers) > 1:
            previous = state.answers[-2]
            discussion = prompts.PANEL_DISCUSSION.format(
                own=previous[self.name].content,
                others="\n".join(
                    f"- {state.specialties[i]}: {previous[n].content}"
                    for i, n in enumerate(state.panelists())
                    if n != self.name
                ),
            )
        task = prompts.PANEL_TASK.format(
            case=fence(state.case_en), options=block, evidence=evidence_block(state.evidence), discussion=discussion
        )
        messages: list[LLMMessage] = [
            SystemMessage(content=prompts.PANELIST_SYSTEM.format(specialty=specialty)),
            UserMessage(content=task, source="user"),
        ]
        turn.kind = "diagnosis"
        async for chunk in stream_model(self.model, messages, turn, max_tokens=self.max_tokens):
            yield chunk
        if options:
            yield await choose_after_reasoning(self.model, state.case_en, options, turn)
        turn.content = f"[{specialty}] {turn.content}"
        state.answers[-1][self.name] = turn
        agreed = state.consensus()
        if agreed is not None:  # the panel's answer: the agreed letter, the panelists' mean probabilities
            final = list(state.answers[-1].values())
            spread = [t.choice.probabilities for t in final if t.choice and t.choice.probabilities]
            mean = {k: sum(p.get(k, 0.0) for p in spread) / len(spread) for k in options or {}} if spread else None
            state.choice = Choice(letter=agreed, probabilities=mean, raw=agreed)
            state.answer_en = f"The panel agrees. {final_answer(agreed, options or {})}"

    async def _specialties(self, state: PanelState, turn: Turn) -> list[str]:
        """The configured specialties, or ``size`` of :data:`SPECIALTIES` picked by the model, one choice each."""
        chosen: list[str] = []
        letters = "ABCDEFGHIJ"
        while len(chosen) < state.panel_size:
            left = [s for s in SPECIALTIES if s not in chosen]
            listing = {letters[i]: s for i, s in enumerate(left)}
            prompt = prompts.PICK_SPECIALTY.format(case=fence(state.case_en), options=option_lines(listing))
            picked = await choose(self.model, [UserMessage(content=prompt, source="user")], list(listing), turn)
            chosen.append(listing[picked.letter] if picked.letter else left[0])
        return chosen


class ModeratorAgent(CouncilAgent):
    """Decides when the panel does not agree: a constrained choice over the options given every last answer."""

    def __init__(self, holder: StateHolder, model: ChatModel, max_tokens: int) -> None:
        super().__init__(MODERATOR, "Decides for the panel when it does not agree.", holder)
        self.model, self.max_tokens = model, max_tokens

    async def act(self, state: CouncilState, turn: Turn) -> AsyncIterator[str]:
        assert isinstance(state, PanelState)
        state.moderated = True
        turn.kind = "answer"
        views = "\n\n".join(t.content for t in state.answers[-1].values())
        options = state.options
        if options:
            prompt = format_mcqa(state.case_en, options, reasoning=prompts.PANEL_VIEWS.format(views=views))
            turn.choice = await choose(self.model, [UserMessage(content=prompt, source="user")], list(options), turn)
            state.choice = turn.choice
            turn.content = final_answer(turn.choice.letter, options)
        else:
            task = prompts.MODERATOR_TASK.format(case=fence(state.case_en), views=neutralise(views))
            messages: list[LLMMessage] = [
                SystemMessage(content=prompts.MODERATOR_SYSTEM),
                UserMessage(content=task, source="user"),
            ]
            async for _ in stream_model(self.model, messages, turn, max_tokens=self.max_tokens):
                pass
        state.answer_en = turn.content
        yield turn.content


class Panel(Council):
    """The panel structure (``CouncilConfig.structure: panel``); mode ``panel`` of the benchmark."""

    name = "panel"

    def _build_agents(self, models: Mapping[str, ChatModel], knowledge: KnowledgeSearch) -> list[CouncilAgent]:
        panel = self.config.panel
        size = panel.size if panel.auto else len(panel.specialties)
        budget = self.config.max_tokens.get(DIAGNOSTICIAN, 256)
        model = models[DIAGNOSTICIAN]
        agents: list[CouncilAgent] = []
        if TRANSLATOR in self.config.roles:
            agents.append(TranslatorAgent(self.holder, models[TRANSLATOR], self.config.max_tokens.get(TRANSLATOR, 512)))
        if RETRIEVER in self.config.roles:
            agents.append(RetrieverAgent(self.holder, knowledge))
        agents += [PanelistAgent(f"panelist_{i + 1}", i, self.holder, model, budget) for i in range(size)]
        agents.append(ModeratorAgent(self.holder, model, budget))
        return agents

    def _new_state(self, question: Question, history: Sequence[Episode], language: str) -> CouncilState:
        panel = self.config.panel
        size = panel.size if panel.auto else len(panel.specialties)
        return PanelState(
            question=question,
            history=history,
            language=language,
            roles=self.config.roles,
            max_revisions=0,
            case_en=question.text,
            rounds=panel.rounds,
            panel_size=size,
            specialties=[] if panel.auto else list(panel.specialties),
        )

    def _max_turns(self) -> int:
        panel = self.config.panel
        size = panel.size if panel.auto else len(panel.specialties)
        return 4 + size * (panel.rounds + 1)

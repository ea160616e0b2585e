"""An interactive episode: the doctor (any :class:`~medcouncil.agents.protocol.Answerer`: the council, a single
model) learns a case by asking the patient, examining and ordering tests, one action per step, within a budget,
then commits to a diagnosis.

Each doctor step is a question (:data:`prompts.DOCTOR_TASK`) holding the dialogue so far, the patient's and the
measurements' words fenced as data; the answer's first action line (:data:`prompts.DOCTOR_ACTION`) is carried out:
``ASK`` goes to the patient, ``EXAM`` and ``TEST`` to the measurement agent (its cost counted), ``DIAGNOSIS`` ends
the interview. A reply with no action line (or only the prompt's ``<placeholder>`` lines, echoed) is recorded as an
invalid step and costs one action. When the budget is
spent the doctor is asked to commit (:data:`prompts.DOCTOR_COMMIT`): a free-text diagnosis, or on a case with
options a constrained choice among them (by ``committer`` when given: gated mode commits through the gate).

A Korean case goes through ``translate`` both ways: the doctor reads the opening, the objective and every reply in
English (the transcript keeps the Korean original beside it); its questions reach the patient in English and Korean
(section names match the English, the patient's own words the Korean); its diagnosis is carried back into Korean for
the judge. Translation and model-patient calls are kept in ``support``: an episode's cost is doctor plus support.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable
from typing import Literal, Protocol

from pydantic import BaseModel, Field

from medcouncil.agents import prompts
from medcouncil.agents.cases import ClinicalCase
from medcouncil.agents.lookup import Reveal
from medcouncil.agents.protocol import Answerer, Episode, Question, Turn, run_episode
from medcouncil.tools.untrusted import fence

Responder = Callable[[ClinicalCase, str], Awaitable[Reveal]]
"""The patient or the measurement agent: (case, request) -> what it reveals."""
Kind = Literal["ask", "exam", "test", "diagnosis", "invalid", "reply"]
HANGUL = re.compile("[\uac00-\ud7a3]")
PLACEHOLDER = re.compile(r"\s*<")
"""An action whose text opens a template placeholder (``<a question for the patient>``, possibly cut by a line
break) is an echo of the prompt, not an action."""


class Translate(Protocol):
    """Text into ``to`` (``agents/patient.Translator``), keeping the turns it spent."""

    turns: list[Turn]

    async def __call__(self, text: str, to: Literal["en", "ko"], terms_from: str = "") -> str: ...


class Step(BaseModel):
    """One line of the encounter."""

    by: Literal["doctor", "patient", "measurement"]
    kind: Kind
    text: str
    revealed: list[str] = Field(default_factory=list)
    """Names of the facts this reply revealed."""
    cost: float = 0.0
    original: str = ""
    """The reply in the case's language, when ``text`` is its translation."""


class Interview(BaseModel):
    """The whole encounter, its costs and the committed diagnosis."""

    case_id: str
    steps: list[Step] = Field(default_factory=list)
    diagnosis: str = ""
    letter: str | None = None
    probabilities: dict[str, float] | None = None
    doctor_episodes: list[Episode] = Field(default_factory=list)
    """Every doctor step's episode (tokens, calls, the council's turns)."""
    committed_early: bool = False
    """The doctor gave its diagnosis before the budget was spent."""
    diagnosis_translated: str = ""
    """A Korean case: the diagnosis carried back into Korean (judged too)."""
    support: list[Turn] = Field(default_factory=list)
    """Model calls beside the doctor's: translation, the model patient."""
    wall_time_s: float = 0.0

    def count(self, kind: Kind) -> int:
        return sum(step.by == "doctor" and step.kind == kind for step in self.steps)

    @property
    def cost(self) -> float:
        return sum(step.cost for step in self.steps)

    @property
    def revealed(self) -> list[str]:
        return [name for step in self.steps for name in step.revealed]

    @property
    def tokens(self) -> int:
        doctor = sum(e.prompt_tokens + e.completion_tokens for e in self.doctor_episodes)
        return doctor + sum(t.prompt_tokens + t.completion_tokens for t in self.support)

    @property
    def model_calls(self) -> int:
        return sum(e.model_calls for e in self.doctor_episodes) + sum(t.model_calls for t in self.support)

    @property
    def model_time_s(self) -> float:
        return sum(e.model_time_s for e in self.doctor_episodes) + sum(t.model_time_s for t in self.support)

    @property
    def turns(self) -> int:
        """Lines of the dialogue: each doctor action and each reply."""
        return len(self.steps)


def parse_action(text: str) -> tuple[Kind, str]:
    """The first action line of a doctor's reply that is not the prompt's own placeholder echoed
    (``ASK: <a question for the patient>``); ``invalid`` and the first line when there is none."""
    for found in prompts.DOCTOR_ACTION.finditer(text):
        kind, said = found.group("kind").lower(), found.group("text")
        if not PLACEHOLDER.match(said):
            return kind, said  # type: ignore[return-value]
    return "invalid", first_line(text)


def first_line(text: str, limit: int = 200) -> str:
    """What is kept of a reply with no action line: its first non-empty line, cut at ``limit`` characters."""
    line = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return line if len(line) <= limit else line[: limit - 1] + "…"


def dialogue(steps: list[Step]) -> str:
    lines = []
    for step in steps:
        if step.by == "doctor":
            lines.append(f"Doctor ({step.kind}): {step.text}")
        else:
            lines.append(f"{step.by.capitalize()}: {fence(step.text)}")
    return "\n".join(lines) or prompts.NOTHING_YET


def doctor_step(case: ClinicalCase, steps: list[Step], remaining: int) -> Question:
    text = prompts.DOCTOR_TASK.format(
        remaining=remaining, objective=case.objective, opening=fence(case.opening), dialogue=dialogue(steps)
    )
    # The case's id guards the retriever as for a static item: its own material never comes back as evidence.
    return Question(text=text, language="en", item_id=case.id, reply="action")


def commit_step(case: ClinicalCase, steps: list[Step]) -> Question:
    text = prompts.DOCTOR_COMMIT.format(objective=case.objective, opening=fence(case.opening), dialogue=dialogue(steps))
    return Question(text=text, options=case.options, language="en", item_id=case.id, reply="diagnosis")


async def interview(
    doctor: Answerer,
    case: ClinicalCase,
    patient: Responder,
    measurement: Responder,
    budget: int = 10,
    committer: Answerer | None = None,
    translate: Translate | None = None,
) -> Interview:
    """Run the encounter: at most ``budget`` actions, then the committed diagnosis."""
    started = time.perf_counter()
    record = Interview(case_id=case.id)
    spent_before = len(translate.turns) if translate is not None else 0
    korean = case.language == "ko" and translate is not None
    shown = case
    if korean:
        assert translate is not None
        update: dict[str, object] = {
            "opening": await translate(case.opening, "en"),
            "objective": await translate(case.objective, "en"),
        }
        if case.options:
            update["options"] = {letter: await translate(text, "en") for letter, text in case.options.items()}
        shown = case.model_copy(update=update)
    for used in range(budget):
        episode = await run_episode(doctor, doctor_step(shown, record.steps, budget - used))
        record.doctor_episodes.append(episode)
        kind, text = parse_action(episode.answer_en or episode.answer)
        record.steps.append(Step(by="doctor", kind=kind, text=text))
        if kind == "diagnosis":
            record.committed_early = True
            break
        if kind == "invalid":
            continue
        by: Literal["patient", "measurement"] = "patient" if kind == "ask" else "measurement"
        request = text
        if korean and by == "patient":  # the patient hears the question in both languages (names, content words)
            assert translate is not None
            request = f"{text}\n{await translate(text, 'ko', terms_from=case.opening)}"
        reveal = await (patient if by == "patient" else measurement)(case, request)
        reply, original = reveal.reply, ""
        if korean and HANGUL.search(reveal.reply):
            assert translate is not None
            reply, original = await translate(reveal.reply, "en"), reveal.reply
        record.steps.append(
            Step(
                by=by,
                kind="reply",
                text=reply,
                revealed=[f.name for f in reveal.revealed],
                cost=reveal.cost,
                original=original,
            )
        )
    if case.options or not record.committed_early:
        final = await run_episode(committer or doctor, commit_step(shown, record.steps))
        record.doctor_episodes.append(final)
        record.letter, record.probabilities = final.letter, final.probabilities
        kind, text = parse_action(final.answer_en or final.answer)
        record.diagnosis = shown.options[final.letter] if shown.options and final.letter else text
        if not record.committed_early:
            record.steps.append(Step(by="doctor", kind="diagnosis", text=record.diagnosis))
    else:
        record.diagnosis = record.steps[-1].text
    if korean and record.diagnosis and not case.options:
        assert translate is not None
        record.diagnosis_translated = await translate(record.diagnosis, "ko", terms_from=case.opening)
    if translate is not None:
        record.support.extend(translate.turns[spent_before:])
    record.wall_time_s = time.perf_counter() - started
    return record

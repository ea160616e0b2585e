"""An interactive episode: the doctor (any :class:`~medcouncil.agents.protocol.Answerer`: the council, a single
model) learns a case by asking the patient, examining and ordering tests, one action per step, within a budget,
then commits to a diagnosis.

Each doctor step is a question (:data:`prompts.DOCTOR_TASK`) holding the dialogue so far, the patient's and the
measurements' words fenced as data; the answer's first action line (:data:`prompts.DOCTOR_ACTION`) is carried out:
``ASK`` goes to the patient, ``EXAM`` and ``TEST`` to the measurement agent (its cost counted), ``DIAGNOSIS`` ends
the interview. A reply with no action line is recorded as an invalid step and costs one action. When the budget is
spent the doctor is asked to commit (:data:`prompts.DOCTOR_COMMIT`): a free-text diagnosis, or on a case with
options a constrained choice among them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Literal

from pydantic import BaseModel, Field

from medcouncil.agents import prompts
from medcouncil.agents.cases import ClinicalCase
from medcouncil.agents.lookup import Reveal
from medcouncil.agents.protocol import Answerer, Episode, Question, run_episode
from medcouncil.tools.untrusted import fence

Responder = Callable[[ClinicalCase, str], Awaitable[Reveal]]
"""The patient or the measurement agent: (case, request) -> what it reveals."""
Kind = Literal["ask", "exam", "test", "diagnosis", "invalid", "reply"]


class Step(BaseModel):
    """One line of the encounter."""

    by: Literal["doctor", "patient", "measurement"]
    kind: Kind
    text: str
    revealed: list[str] = Field(default_factory=list)
    """Names of the facts this reply revealed."""
    cost: float = 0.0


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
        return sum(e.prompt_tokens + e.completion_tokens for e in self.doctor_episodes)


def parse_action(text: str) -> tuple[Kind, str]:
    """The first action line of a doctor's reply (``invalid`` and the whole text when there is none)."""
    found = prompts.DOCTOR_ACTION.search(text)
    if found is None:
        return "invalid", text.strip()
    kind = found.group("kind").lower()
    return (kind if kind in ("ask", "exam", "test", "diagnosis") else "invalid"), found.group("text")  # type: ignore[return-value]


def dialogue(steps: list[Step]) -> str:
    lines = []
    for step in steps:
        if step.by == "doctor":
            lines.append(f"Doctor ({step.kind}): {step.text}")
        else:
            lines.append(f"{step.by.capitalize()}: {fence(step.text)}")
    return "\n".join(lines) or prompts.NOTHING_YET


def doctor_step(case: ClinicalCase, steps: list[Step], remaining: int) -> Question:
    text = prompts.DOCTOR_TASK.format(remaining=remaining, objective=case.objective, opening=fence(case.opening),
                                      dialogue=dialogue(steps))  # fmt: skip
    return Question(text=text, language="en")


def commit_step(case: ClinicalCase, steps: list[Step]) -> Question:
    text = prompts.DOCTOR_COMMIT.format(objective=case.objective, opening=fence(case.opening), dialogue=dialogue(steps))
    return Question(text=text, options=case.options, language="en")


async def interview(doctor: Answerer, case: ClinicalCase, patient: Responder, measurement: Responder,
                    budget: int = 10) -> Interview:  # fmt: skip
    """Run the encounter: at most ``budget`` actions, then the committed diagnosis."""
    record = Interview(case_id=case.id)
    for used in range(budget):
        episode = await run_episode(doctor, doctor_step(case, record.steps, budget - used))
        record.doctor_episodes.append(episode)
        kind, text = parse_action(episode.answer_en or episode.answer)
        record.steps.append(Step(by="doctor", kind=kind, text=text))
        if kind == "diagnosis":
            record.committed_early = True
            break
        if kind == "invalid":
            continue
        by: Literal["patient", "measurement"] = "patient" if kind == "ask" else "measurement"
        reveal = await (patient if by == "patient" else measurement)(case, text)
        record.steps.append(Step(by=by, kind="reply", text=reveal.reply, revealed=[f.name for f in reveal.revealed],
                                 cost=reveal.cost))  # fmt: skip
    if case.options or not record.committed_early:
        final = await run_episode(doctor, commit_step(case, record.steps))
        record.doctor_episodes.append(final)
        record.letter, record.probabilities = final.letter, final.probabilities
        kind, text = parse_action(final.answer_en or final.answer)
        record.diagnosis = case.options[final.letter] if case.options and final.letter else text
        if not record.committed_early:
            record.steps.append(Step(by="doctor", kind="diagnosis", text=record.diagnosis))
    else:
        record.diagnosis = record.steps[-1].text
    return record

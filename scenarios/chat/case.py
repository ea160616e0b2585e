"""``medcouncil chat --case FILE[:N]``: be the doctor yourself against the patient and measurement agents.

Type a question for the patient (or ``ask ...``), ``exam ...`` for an examination, ``test ...`` to order a test and
``diagnosis ...`` to commit (on a case with options, its letter or its text); the diagnosis is judged at the end as
in the benchmark. The same patient and measurement agents as ``bench --episodes`` answer (``--patient lookup`` needs
no model; ``--patient model`` plays the patient on the local model).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Literal

from rich.markup import escape

from medcouncil.agents.cases import ClinicalCase
from medcouncil.agents.interview import Interview, Responder, Step
from medcouncil.agents.judge import Verdict
from medcouncil.serving.common.console import console

HELP = (
    "Type a question for the patient, or: exam <examination> · test <test> · diagnosis <your diagnosis> · /help · /quit"
)


class CaseSession:
    """One person-as-doctor encounter; :meth:`handle` takes one typed line."""

    def __init__(
        self, case: ClinicalCase, patient: Responder, measurement: Responder, budget: int | None = None
    ) -> None:
        self.case = case
        self.patient = patient
        self.measurement = measurement
        self.budget = budget
        self.record = Interview(case_id=case.id)
        self.finished = False

    def opening(self) -> str:
        lines = [f"Case {self.case.id}", f"Objective: {self.case.objective}", f"At presentation: {self.case.opening}"]
        if self.case.options:
            lines += [f"  {letter}. {text}" for letter, text in self.case.options.items()]
        if self.budget:
            lines.append(f"You have {self.budget} actions before you must commit.")
        return "\n".join(lines)

    def actions_used(self) -> int:
        return sum(step.by == "doctor" and step.kind != "diagnosis" for step in self.record.steps)

    async def handle(self, line: str) -> str:
        """The reply to one typed line (empty when there is nothing to say)."""
        word, _, rest = line.strip().partition(" ")
        kind = word.lower().rstrip(":")
        if kind in ("/quit", "/exit"):
            self.finished = True
            return "left without a diagnosis"
        if kind == "/help" or not line.strip():
            return HELP
        if kind in ("diagnosis", "dx"):
            return self.commit(rest.strip())
        if self.budget is not None and self.actions_used() >= self.budget:
            return "No actions left: commit with diagnosis <your diagnosis>."
        action: Literal["ask", "exam", "test"] = "exam" if kind == "exam" else "test" if kind == "test" else "ask"
        by: Literal["patient", "measurement"] = "patient" if action == "ask" else "measurement"
        request = line.strip() if action == "ask" and kind != "ask" else rest.strip()
        if not request:
            return f"{action} what? {HELP}"
        self.record.steps.append(Step(by="doctor", kind=action, text=request))
        reveal = await (self.patient if by == "patient" else self.measurement)(self.case, request)
        names = [f.name for f in reveal.revealed]
        self.record.steps.append(Step(by=by, kind="reply", text=reveal.reply, revealed=names, cost=reveal.cost))
        return reveal.reply + (f"  (cost {reveal.cost:g})" if reveal.cost else "")

    def commit(self, text: str) -> str:
        if not text:
            return "diagnosis what? Type: diagnosis <your diagnosis>"
        if self.case.options:
            letter = text.strip().rstrip(".").upper()
            if letter not in self.case.options:
                by_text = [k for k, v in self.case.options.items() if v.casefold() == text.casefold()]
                if not by_text:
                    return f"Choose one of the options: {', '.join(self.case.options)}"
                letter = by_text[0]
            self.record.letter, self.record.diagnosis = letter, self.case.options[letter]
        else:
            self.record.diagnosis = text
        self.record.steps.append(Step(by="doctor", kind="diagnosis", text=self.record.diagnosis))
        self.finished = True
        return ""


def play_case(
    session: CaseSession,
    read: Callable[[str], str],
    loop: asyncio.AbstractEventLoop,
    judge: Callable[[ClinicalCase, str, str | None], Awaitable[Verdict]],
) -> Verdict | None:
    """The encounter loop: ``read`` a line, answer it, until a diagnosis (judged) or the end of input; everything
    runs on ``loop`` (the model clients' loop)."""
    console.print(escape(session.opening()), soft_wrap=True)
    console.print(f"[notice]{escape(HELP)}[/]")
    while not session.finished:
        try:
            line = read("doctor › ")
        except EOFError:
            break
        except KeyboardInterrupt:
            console.print("\n[notice]/quit to leave[/]")
            continue
        reply = loop.run_until_complete(session.handle(line))
        if reply:
            console.print(escape(reply), soft_wrap=True)
    record = session.record
    if not record.diagnosis:
        console.print("[warning]no diagnosis given[/]")
        return None
    verdict = loop.run_until_complete(judge(session.case, record.diagnosis, record.letter))
    mark = "[notice]correct[/]" if verdict.correct else "[error]not correct[/]"
    console.print(
        f"{mark}: the diagnosis is {escape(session.case.diagnosis)} ({escape(verdict.reason)})", soft_wrap=True
    )
    console.print(
        f"[notice]{record.count('ask')} questions, {record.count('exam')} examinations, "
        f"{record.count('test')} tests, cost {record.cost:g}[/]"
    )
    return verdict

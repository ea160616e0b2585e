"""The patient case of an interactive episode: one frozen schema every episode source is normalised into.

A case holds what the doctor is told at the start (``objective``, ``opening``) and what it can only learn by
asking: the patient's facts (history, symptoms, past and social history, review of systems), the physical
examination's findings and the test results (each a named :class:`Finding`, a test with an optional cost). The
correct diagnosis (with accepted aliases) and, for cases made from multiple-choice items, the lettered options are
for scoring only and never reach the doctor.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, model_validator

LETTERS = "ABCDEFGHIJ"


class Finding(BaseModel):
    """One fact of a case: its name (``Vital signs / Blood pressure``) and its text."""

    model_config = ConfigDict(frozen=True)

    name: str
    result: str
    cost: float | None = None
    """What ordering it costs (tests), when the source prices it."""


class ClinicalCase(BaseModel):
    """One interactive episode's case."""

    model_config = ConfigDict(frozen=True)

    id: str
    objective: str
    """The doctor's task, as the doctor is told it."""
    opening: str
    """What the doctor knows before asking anything (age, sex, chief complaint)."""
    patient: tuple[Finding, ...] = ()
    """What the patient can tell when asked: history, symptoms, past and social history, review of systems."""
    exam: tuple[Finding, ...] = ()
    """Physical examination findings, revealed when that examination is asked for."""
    tests: tuple[Finding, ...] = ()
    """Test results, revealed when that test is ordered by name."""
    diagnosis: str
    aliases: tuple[str, ...] = ()
    """Other accepted names of the diagnosis."""
    options: dict[str, str] | None = None
    """Lettered options (cases made from multiple-choice items), for scoring the committed diagnosis."""
    answer: str | None = None
    """The gold letter, with ``options``."""
    language: Literal["en", "ko"] = "en"
    source: str = ""
    vignette: str = ""
    """The whole case as one text, for the static comparison (cases made from an MCQA item: its question)."""

    @model_validator(mode="after")
    def _consistent(self) -> ClinicalCase:
        if not self.diagnosis.strip():
            raise ValueError("diagnosis: empty")
        if not self.opening.strip() and not self.objective.strip():
            raise ValueError("opening: empty (and no objective): the doctor would start with nothing")
        if not (self.patient or self.exam or self.tests):
            raise ValueError("patient, exam, tests: no fact at all to ask for")
        if self.options is not None:
            letters = list(self.options)
            if not 2 <= len(letters) <= len(LETTERS) or letters != list(LETTERS[: len(letters)]):
                raise ValueError(f"options: letters must be A, B, C... in order (2 to 10), got {', '.join(letters)}")
            if self.answer not in self.options:
                raise ValueError(f"answer: {self.answer!r} is not one of the options")
        elif self.answer is not None:
            raise ValueError("answer: a gold letter needs options")
        return self

    @property
    def facts(self) -> tuple[Finding, ...]:
        return self.patient + self.exam + self.tests

    def static_text(self) -> str:
        """Everything at once, as a static benchmark item shows it: :attr:`vignette`, or the opening, every fact
        and the objective."""
        if self.vignette.strip():
            return self.vignette
        facts = " ".join(f"{fact.name}: {fact.result}" for fact in self.facts)
        return " ".join(part for part in (self.opening, facts, self.objective) if part.strip())

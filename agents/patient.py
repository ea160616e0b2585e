"""The model patient (``--patient model``) and the translation of a Korean encounter, both on the local model.

- :class:`ModelPatient` answers the doctor in the first person from the patient's own account only
  (:attr:`ClinicalCase.patient`, never the examination or the tests), fenced as data in
  :data:`prompts.PATIENT_SYSTEM`; on a Korean case it answers in Korean (the interview hands it the question in
  English and Korean). What it
  *reveals* is accounted as the lookup patient would (the facts the question names): a model may say less, or
  paraphrase, but the record of what was asked for stays exact and comparable across ``--patient`` settings.
- The measurement agent stays the lookup gatekeeper (``agents/lookup.py``) whatever ``--patient`` says: it prices
  tests, so what it returns must be exactly what was ordered by name.
- :class:`Translator` carries a Korean case's words to the English-speaking doctor and the doctor's words back,
  under the council translator's prompts and placeholder protection (``agents/preserve.py``).

Each helper keeps the turns it spent (tokens, calls, model time) in ``turns``: an episode's cost is all of it.
"""

from __future__ import annotations

from typing import Literal

from autogen_core.models import LLMMessage, SystemMessage, UserMessage

from medcouncil.agents import prompts
from medcouncil.agents.calls import stream_model, translate
from medcouncil.agents.cases import ClinicalCase
from medcouncil.agents.lookup import PATIENT_UNKNOWN, Reveal, patient_answer
from medcouncil.agents.protocol import ChatModel, Turn
from medcouncil.tools.untrusted import fence

Language = Literal["en", "ko"]
LANGUAGE_NAMES = {"en": "English", "ko": "Korean"}


class Translator:
    """Korean ↔ English for an encounter; every call's cost is kept in :attr:`turns`."""

    def __init__(self, model: ChatModel, max_tokens: int = 512) -> None:
        self.model = model
        self.max_tokens = max_tokens
        self.turns: list[Turn] = []

    async def __call__(self, text: str, to: Language, terms_from: str = "") -> str:
        """``text`` in ``to``. Going to Korean, the Latin terms of ``terms_from`` (the Korean case) and every value
        pass through unchanged; coming from Korean, every Latin-script span and value does."""
        if not text.strip():
            return text
        turn = Turn(agent="translator", content="", kind="translation")
        translated = await translate(self.model, text, turn, to == "ko", terms_from, self.max_tokens)
        self.turns.append(turn)
        return translated.strip() or text  # values that could not be placed stay listed at the end: never lost


class ModelPatient:
    """The patient played by a model from its own account; a :data:`interview.Responder`."""

    def __init__(self, model: ChatModel, max_tokens: int = 96) -> None:
        self.model = model
        self.max_tokens = max_tokens
        self.turns: list[Turn] = []

    async def __call__(self, case: ClinicalCase, request: str) -> Reveal:
        accounted = patient_answer(case, request)
        facts = "\n".join(f"- {fact.name}: {fence(fact.result)}" for fact in case.patient)
        system = prompts.PATIENT_SYSTEM.format(language=LANGUAGE_NAMES[case.language], facts=facts)
        turn = Turn(agent="patient", content="", kind="answer")
        messages: list[LLMMessage] = [SystemMessage(content=system), UserMessage(content=fence(request), source="user")]
        async for _ in stream_model(self.model, messages, turn, max_tokens=self.max_tokens):
            pass
        self.turns.append(turn)
        return Reveal(reply=turn.content.strip() or PATIENT_UNKNOWN, revealed=accounted.revealed)

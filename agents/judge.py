"""Is a committed diagnosis the correct one? Each verdict keeps its method and reason.

In order, the first that decides:

1. ``letter``: on a case with options, the constrained letter against the gold letter;
2. ``exact`` / ``alias``: the normalised diagnosis (NFKC, case-folded, punctuation, articles and a leading
   "diagnosis:" dropped) equals the correct diagnosis or one of its aliases, or contains it as whole words while
   being at most twice as long ("Myasthenia gravis, generalised" for "Myasthenia gravis");
3. ``embedding``: cosine similarity of the two under the knowledge base's embedder at least
   :data:`SIMILARITY_THRESHOLD`;
4. ``judge``: an optional judge model's constrained Y/N (:data:`prompts.JUDGE_DIAGNOSIS`);

otherwise ``none``: judged wrong, with the best similarity in the reason.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Literal

from autogen_core.models import UserMessage
from pydantic import BaseModel

from medcouncil.agents import prompts
from medcouncil.agents.cases import ClinicalCase
from medcouncil.agents.protocol import ChatModel
from medcouncil.tools.embeddings import Embedder
from medcouncil.tools.untrusted import fence, neutralise

SIMILARITY_THRESHOLD = 0.85
"""Cosine similarity (all-MiniLM-L6-v2) at which two diagnosis names count as the same. Measured on the 104
distinct diagnoses of the AgentClinic MedQA cases (5,356 pairs): the closest two different conditions score 0.836
(schizoaffective / schizophreniform disorder); the pairs above 0.85 are spellings of one condition (0.92-0.99:
"Hirschsprung disease" / "Hirschsprung's disease", "BPPV" spelt out). Rewordings score 0.85-0.99 ("Type 1 diabetes
mellitus" / "Diabetes mellitus type 1" 0.99); synonyms without shared words do not ("heart attack" / "acute
myocardial infarction" 0.51, "SLE" 0.20): they need an alias or the judge model."""
_ARTICLES = re.compile(r"\b(the|a|an)\b")
_LEAD = re.compile(r"^(final\s+)?(diagnosis|answer|dx)\s*[:：-]\s*")


class Verdict(BaseModel):
    correct: bool
    method: Literal["letter", "exact", "alias", "embedding", "judge", "none"]
    reason: str
    similarity: float | None = None


def normalise(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).casefold().strip()
    text = _LEAD.sub("", text)
    text = re.sub(r"[^\w\s]", " ", text)
    return " ".join(_ARTICLES.sub(" ", text).split())


def _quote(text: str, limit: int = 80) -> str:
    return repr(text if len(text) <= limit else text[: limit - 1] + "…")


def _names(given: str, gold: str) -> bool:
    if not given or not gold:
        return False
    return given == gold or (f" {gold} " in f" {given} " and len(given) <= 2 * len(gold))


async def judge(
    case: ClinicalCase,
    diagnosis: str,
    letter: str | None = None,
    embedder: Embedder | None = None,
    judge_model: ChatModel | None = None,
) -> Verdict:
    """The verdict on ``diagnosis`` (and ``letter`` on a case with options)."""
    if case.options is not None:
        if letter is None:
            return Verdict(correct=False, method="letter", reason="no option chosen")
        return Verdict(
            correct=letter == case.answer,
            method="letter",
            reason=f"chose {letter}, the correct option is {case.answer}",
        )
    given = normalise(diagnosis)
    if not given:
        return Verdict(correct=False, method="none", reason="no diagnosis given")
    if _names(given, normalise(case.diagnosis)):
        return Verdict(correct=True, method="exact", reason=f"{diagnosis!r} names {case.diagnosis!r}")
    for alias in case.aliases:
        if _names(given, normalise(alias)):
            return Verdict(correct=True, method="alias", reason=f"{diagnosis!r} names the alias {alias!r}")
    best = None
    if embedder is not None:
        golds = [case.diagnosis, *case.aliases]
        vectors = embedder.encode([diagnosis, *golds])
        best = float(max(vectors[1:] @ vectors[0]))
        if best >= SIMILARITY_THRESHOLD:
            return Verdict(
                correct=True,
                method="embedding",
                similarity=best,
                reason=f"similarity {best:.2f} ≥ {SIMILARITY_THRESHOLD} to {case.diagnosis!r}",
            )
    if judge_model is not None:
        prompt = prompts.JUDGE_DIAGNOSIS.format(gold=fence(case.diagnosis), given=fence(neutralise(diagnosis)))
        choice = await judge_model.choose([UserMessage(content=prompt, source="user")], ["Y", "N"])
        if choice.letter is not None:
            return Verdict(
                correct=choice.letter == "Y",
                method="judge",
                similarity=best,
                reason=f"judge model {judge_model.name} answered {choice.letter}",
            )
    shown = f" (best similarity {best:.2f} < {SIMILARITY_THRESHOLD})" if best is not None else ""
    return Verdict(
        correct=False,
        method="none",
        similarity=best,
        reason=f"{_quote(diagnosis)} does not name {case.diagnosis!r}{shown}",
    )

"""The plain-lookup patient and measurement agents of an interactive episode (``--patient lookup``).

They answer from the case's facts only, and only with the facts a request asks for:

- the **patient** tells the facts of its own account (:attr:`ClinicalCase.patient`) that the doctor's question is
  about: the question names the fact's section ("your past medical history", "social history") or shares a content
  word with it ("Do you smoke?" -> "Smokes a pack a day"); otherwise it says it does not know;
- the **measurement** agent returns an examination finding or a test result (:attr:`ClinicalCase.exam`,
  :attr:`ClinicalCase.tests`) only when the request names it ("blood pressure", "chest CT", "vital signs" for all
  of them), with its cost; otherwise it says the result is not available.

Words are compared lower-cased, with plurals folded, abbreviations spelled out and words that say nothing dropped;
a section named only by a category word ("Findings", "History 2") is never asked for by that word alone.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from pydantic import BaseModel

from medcouncil.agents.cases import ClinicalCase, Finding

PATIENT_UNKNOWN = "I'm not sure, doctor. I don't know about that."
NOT_AVAILABLE = "No result: {request} is not available for this patient."

_WORD = re.compile(r"[^\W_]+(?:[-'][^\W_]+)*", re.UNICODE)
_STOP_WORDS = """a an and any are as at be been being by can could did do does doing for from had has have having he
her hers him his how i if in into is it its me my no not of on or our please she so tell than that the their them
there these they this those to us was we were what when where which who why will with would you your ever about also
just like some more most other others patient doctor today now feel feeling currently check show order request see
get let know"""
STOP = frozenset(_STOP_WORDS.split())
"""Words that say nothing of what is asked for."""
GENERIC = frozenset(["test", "exam", "examination", "finding", "result", "history", "study", "level", "optional"])
"""Category words: a section named only by them ("Findings", "History 2") is never asked for by them alone."""
ALIASES = {
    "ecg": "electrocardiogram",
    "ekg": "electrocardiogram",
    "cxr": "chest x-ray",
    "cbc": "blood count",
    "bp": "blood pressure",
    "hr": "heart rate",
    "temp": "temperature",
    "lp": "lumbar puncture",
}


def words(text: str) -> set[str]:
    """Words that carry meaning: lower-cased, plurals folded (``symptoms`` -> ``symptom``), abbreviations spelled
    out (``ECG``), :data:`STOP` words and numbers dropped."""
    found = set()
    for word in _WORD.findall(text.lower()):
        for part in ALIASES.get(word, word).split():
            if part in STOP or part.isdigit():
                continue
            if len(part) > 4 and part.endswith("ies"):
                part = part[:-3] + "y"
            elif len(part) > 3 and part.endswith("s") and not part.endswith(("ss", "us", "is")):
                part = part[:-1]
            found.add(part)
    return found


def names_it(request: set[str], finding: Finding) -> bool:
    """The request names the finding: the words of its most specific section that is more than a category word
    ("Chest CT" of "Imaging / Chest CT / Findings"), or every word of an enclosing section ("vital signs",
    "blood tests": the category word too, so "blood pressure" does not name "Blood tests")."""
    sections = [words(part) for part in finding.name.split("/")]
    specific = [n for n, part in enumerate(sections) if part - GENERIC]
    if not specific:
        return False
    leaf = specific[-1]
    if sections[leaf] - GENERIC <= request:
        return True
    return any(sections[n] <= request for n in specific[:-1])


class Reveal(BaseModel):
    """A lookup's answer: the text, the facts it reveals and what they cost."""

    reply: str
    revealed: tuple[Finding, ...] = ()
    cost: float = 0.0


def _reveal(found: Iterable[Finding], otherwise: str) -> Reveal:
    chosen = tuple(dict.fromkeys(found))
    if not chosen:
        return Reveal(reply=otherwise)
    reply = "\n".join(f"{f.name}: {f.result}" for f in chosen)
    return Reveal(reply=reply, revealed=chosen, cost=sum(f.cost or 0.0 for f in chosen))


def patient_answer(case: ClinicalCase, question: str) -> Reveal:
    """The patient's facts the question is about (by section name or a shared content word), or "I don't know"."""
    asked = words(question)
    found = [f for f in case.patient if names_it(asked, f) or (asked - GENERIC) & words(f.result)]
    return _reveal(found, PATIENT_UNKNOWN)


def measurement_result(case: ClinicalCase, request: str) -> Reveal:
    """The examination findings and test results the request names, with their cost, or "not available"."""
    asked = words(request)
    found = [f for f in case.exam + case.tests if names_it(asked, f)]
    return _reveal(found, NOT_AVAILABLE.format(request=request.strip() or "that"))

"""A multiple-choice item as an interactive episode, deterministically.

The vignette is split into sentences. The first (age, sex, chief complaint) is the opening the doctor is given; the
closing question (the sentence that asks: "Which of the following is the most likely diagnosis?") becomes the
objective; every other sentence becomes a fact the doctor has to ask for, sorted by
:func:`facts.classify`: a test result (named by its test: ``Electrocardiogram``, ``Laboratory studies``...), an
examination finding (``Vital signs``, ``Physical examination``) or the patient's account (``History``). The options
and the gold letter stay, for scoring; the diagnosis is the gold option's text.
"""

from __future__ import annotations

import re

from medcouncil.agents.cases import ClinicalCase
from medcouncil.scenarios.datasets.samples import Sample
from medcouncil.scenarios.episodes.sources.facts import sort_sentences

_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(\uac00-\ud7a3])")
"""A sentence ends at ``.``, ``!`` or ``?`` before a capital, a digit, a quote or a Hangul syllable (Korean
vignettes)."""


def split_sentences(text: str) -> list[str]:
    flat = " ".join(text.split())
    return [s.strip() for s in _SENTENCE.split(flat) if s.strip()]


def sample_to_case(sample: Sample) -> ClinicalCase:
    """Raises: ValueError when the vignette has nothing to ask for (one sentence and a question)."""
    sentences = split_sentences(sample.question)
    asks = [n for n, s in enumerate(sentences) if s.rstrip("\"' ").endswith("?")]
    last = asks[-1] if asks else len(sentences)
    objective = " ".join(sentences[last:]).strip("\"' ") if asks else "What is the most likely diagnosis?"
    body = [s for n, s in enumerate(sentences[:last]) if n not in asks]  # a question is never a fact
    found = sort_sentences(body[1:])
    return ClinicalCase(
        id=sample.id,
        objective=objective,
        opening=body[0] if body else "",
        patient=tuple(found["patient"]),
        exam=tuple(found["exam"]),
        tests=tuple(found["test"]),
        diagnosis=sample.options[sample.answer],
        options=dict(sample.options),
        answer=sample.answer,
        language="ko" if sample.metadata.get("language") == "ko" else "en",
        source=sample.metadata.get("dataset", "mcqa"),
        vignette=sample.question,
    )

"""Terms that must cross a translation unchanged: drug names, numbers with units, lab values, Latin-script terms.

Before translating, each such span is replaced by a placeholder ``⟦n⟧``; afterwards the placeholders are put back
where that is certain (:func:`restore_spans`). A value whose placeholder the model dropped, repeated or moved out of
order is flagged and appended, never put in a place the model chose: no protected term is lost, altered or moved,
whatever the model does.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

_NUMBER = r"\d+(?:[.,]\d+)*\s*(?:%|[µμ]?[a-zA-Z]+(?:/[a-zA-Z0-9]+)*)?"  # 5 mg, 7.2 mmol/L, 62%, 24
_LATIN = r"[A-Za-z][A-Za-z0-9\-+/.]*[A-Za-z0-9+]|[A-Za-z]"  # salbutamol, FEV1, HbA1c, IV, option letters
_CODED = r"\b(?:[A-Za-z]*\d[A-Za-z0-9]*|[A-Z]{2,}[a-z]?)\b"  # in English text: FEV1, HbA1c, ECG, IV

FROM_KOREAN = re.compile(f"{_NUMBER}|{_LATIN}")
"""In Korean text every Latin-script span is a term (drug, test, unit) and passes through as written."""
PLACEHOLDER = "⟦{}⟧"
_PLACEHOLDER = re.compile(r"⟦(\d+)⟧")


def english_pattern(terms: list[str]) -> re.Pattern[str]:
    """In English text: numbers with units, coded terms (FEV1, ECG), and the Latin terms the user wrote."""
    named = sorted({term for term in terms if re.search(r"[A-Za-z]{3,}", term)}, key=len, reverse=True)
    alternatives = [_NUMBER, _CODED, *(rf"\b{re.escape(term)}\b" for term in named)]
    return re.compile("|".join(alternatives))


def protect(text: str, pattern: re.Pattern[str] = FROM_KOREAN) -> tuple[str, list[str]]:
    """Replace protected spans by placeholders; returns the masked text and the spans in order."""
    spans: list[str] = []

    def mask(match: re.Match[str]) -> str:
        spans.append(match.group(0))
        return PLACEHOLDER.format(len(spans))

    return pattern.sub(mask, text), spans


NOT_PLACED = " [not placed: {}]"
"""Appended after a translation: the values that could not be put back where they belong (shown, never moved)."""
UNPLACED = "[?]"
"""Left where a value's placeholder was, when that placeholder cannot be trusted."""


@dataclass(frozen=True)
class Restoration:
    text: str
    placed: list[int]
    """Span indices (1-based) put back in place, in text order: strictly increasing."""
    flagged: list[str]
    """Values not put back in place (dropped, repeated or out of order): appended under :data:`NOT_PLACED`."""
    missing: list[str] = field(default_factory=list)
    """Values whose placeholder the reply never wrote (a reordered or repeated one was written: not missing)."""


def restore_spans(translated: str, spans: list[str]) -> Restoration:
    """Put back only the values whose place is certain.

    A placeholder counts when it names a span, appears exactly once (a model echoing a prompt's example, or
    copying one placeholder twice, makes every copy suspect) and keeps the source's order relative to every other
    placeholder occurrence (two swapped values are both suspect). Any other value is flagged: listed at the end,
    its suspect spots marked :data:`UNPLACED`. A value is never moved to a place the model chose for another one.
    """
    found = [(int(m.group(1)), position) for position, m in enumerate(_PLACEHOLDER.finditer(translated))]
    found = [(index, position) for index, position in found if 1 <= index <= len(spans)]
    counts = Counter(index for index, _ in found)

    def consistent(index: int, position: int) -> bool:
        """Every other placeholder occurrence sits on the side the source order puts it."""
        return all((other < index) == (where < position) for other, where in found if other != index)

    in_order = {index for index, position in found if counts[index] == 1 and consistent(index, position)}

    def unmask(match: re.Match[str]) -> str:
        index = int(match.group(1))
        if index in in_order:
            return spans[index - 1]
        return UNPLACED if 1 <= index <= len(spans) else ""  # an invented placeholder carries no value

    text = _PLACEHOLDER.sub(unmask, translated).strip()
    flagged = [span for index, span in enumerate(spans, 1) if index not in in_order]
    if flagged:
        text = (text + NOT_PLACED.format("; ".join(dict.fromkeys(flagged)))).strip()
    seen = set(counts)
    missing = [span for index, span in enumerate(spans, 1) if index not in seen]
    placed = [i for i, _ in found if i in in_order]
    return Restoration(text=text, placed=placed, flagged=flagged, missing=missing)


_NOT_PLACED_TAIL = re.compile(r"\s*" + re.escape(NOT_PLACED.strip()).replace(r"\{\}", r"[^\]]*") + r"\s*$")


def placed_text(text: str) -> str:
    """A restored translation without its appended list of values not placed (:data:`NOT_PLACED`)."""
    return _NOT_PLACED_TAIL.sub("", text)


_WORD = re.compile(r"\w+")


def word_grams(text: str, n: int = 6) -> set[tuple[str, ...]]:
    """The word n-grams of ``text`` (case-folded)."""
    words = _WORD.findall(text.lower())
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def mostly_copied(text: str, source: str, n: int = 6) -> bool:
    """At least half of ``text``'s word n-grams occur in ``source``: the source given back, not new text."""
    own = word_grams(text, n)
    return bool(own) and len(own & word_grams(source, n)) >= len(own) / 2


_HANGUL = re.compile(r"[\u1100-\u11ff\u3130-\u318f\uac00-\ud7a3]")
_LETTER = re.compile(r"[A-Za-z\u1100-\u11ff\u3130-\u318f\uac00-\ud7a3]")


def written_out(value: str, text: str) -> bool:
    """``value`` occurs in ``text`` as a whole (not inside a longer word or number: "II" is not in "III")."""
    return re.search(rf"(?<!\w){re.escape(value)}(?!\w)", text) is not None


def untranslated(output: str, prompt: str, spans: list[str], missing: list[str], to_korean: bool) -> str | None:
    """Why ``output`` (restored, its list of values not placed removed) is not a translation of the masked text in
    ``prompt`` (the instructions and that text), or None when it may be one: empty; mostly the prompt given back;
    into English, still mostly Hangul; or more than half of two or more protected values lost: ``missing`` (their
    placeholder never written, :attr:`Restoration.missing`; one written out of order is not lost) and not written
    out as a whole either."""
    if not output.strip():
        return "the model gave no text"
    if mostly_copied(output, prompt):
        return "the model gave its instructions or the text back"
    letters = _LETTER.findall(output)
    if not to_korean and letters and len(_HANGUL.findall(output)) > len(letters) / 2:
        return "the model's English is mostly Korean"
    lost = [value for value in missing if not written_out(value, output)]
    if len(spans) >= 2 and len(lost) > len(spans) / 2:
        return f"the model dropped {len(lost)} of {len(spans)} protected values"
    return None


def protected_terms(text: str) -> list[str]:
    return FROM_KOREAN.findall(text)


DOSE = re.compile(r"\d+(?:[.,]\d+)?\s*(?:mg|mcg|µg|μg|g|kg|mL|ml|L|units?|IU|mmol/L|mg/dL|mEq/L|%)(?![A-Za-z])")


def unsupported_values(answer: str, *sources: str) -> list[str]:
    """Doses and lab values in ``answer`` that appear in none of ``sources`` (whitespace-insensitive)."""
    pool = re.sub(r"\s+", "", " ".join(sources)).lower()
    return [value for value in DOSE.findall(answer) if re.sub(r"\s+", "", value).lower() not in pool]

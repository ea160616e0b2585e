"""Terms that must cross a translation unchanged: drug names, numbers with units, lab values, Latin-script terms.

Before translating, each such span is replaced by a placeholder ``⟦n⟧``; afterwards the placeholders are put back.
A placeholder the model dropped is appended, so no protected term is ever lost or altered, whatever the model does.
"""

from __future__ import annotations

import re

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


def restore(translated: str, spans: list[str]) -> tuple[str, list[str]]:
    """Put the spans back; returns the text and the spans the model dropped (appended in brackets)."""
    seen: set[int] = set()

    def unmask(match: re.Match[str]) -> str:
        index = int(match.group(1))
        if 1 <= index <= len(spans):
            seen.add(index)
            return spans[index - 1]
        return ""

    text = _PLACEHOLDER.sub(unmask, translated).strip()
    missing = [span for index, span in enumerate(spans, 1) if index not in seen]
    if missing:
        text = f"{text} [{'; '.join(missing)}]".strip()
    return text, missing


def protected_terms(text: str) -> list[str]:
    return FROM_KOREAN.findall(text)


DOSE = re.compile(r"\d+(?:[.,]\d+)?\s*(?:mg|mcg|µg|μg|g|kg|mL|ml|L|units?|IU|mmol/L|mg/dL|mEq/L|%)(?![A-Za-z])")


def unsupported_values(answer: str, *sources: str) -> list[str]:
    """Doses and lab values in ``answer`` that appear in none of ``sources`` (whitespace-insensitive)."""
    pool = re.sub(r"\s+", "", " ".join(sources)).lower()
    return [value for value in DOSE.findall(answer) if re.sub(r"\s+", "", value).lower() not in pool]

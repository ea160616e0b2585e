"""Script-based language detection: Korean (Hangul) or English."""

from __future__ import annotations

from typing import Literal

Language = Literal["ko", "en"]

HANGUL_SHARE = 0.2
"""Share of Hangul among a text's letters above which the text is Korean (clinical Korean mixes in Latin terms)."""


def is_hangul(char: str) -> bool:
    code = ord(char)
    return 0xAC00 <= code <= 0xD7A3 or 0x1100 <= code <= 0x11FF or 0x3130 <= code <= 0x318F


def detect_language(text: str) -> Language:
    """``ko`` when Hangul makes up more than :data:`HANGUL_SHARE` of the letters, else ``en``."""
    letters = [char for char in text if char.isalpha()]
    if not letters:
        return "en"
    hangul = sum(1 for char in letters if is_hangul(char))
    return "ko" if hangul / len(letters) > HANGUL_SHARE else "en"

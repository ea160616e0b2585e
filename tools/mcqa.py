"""Multiple-choice items: option parsing and the single-model question format."""

from __future__ import annotations

import re

LETTERS = ("A", "B", "C", "D", "E")

MCQA_TEMPLATE = """Answer the following multiple-choice medical question with the letter of the single best option.

Question: {question}

{options}

Answer:"""
"""The single-model question format (shared by ``ask --options`` and the benchmark's baseline)."""

ANSWER_LINE = "{letter}. {text}"
"""The trained answer to :data:`MCQA_TEMPLATE`: the letter first (what the constrained choice reads), then the
option's text."""

_OPTION_SPEC = re.compile(r"^\s*([A-Ea-e])\s*[=:.)]\s*(.+?)\s*$", re.DOTALL)


def parse_options(spec: str) -> dict[str, str]:
    """Parse ``"A=Heart;B=Liver"`` (``=``, ``:``, ``.`` or ``)`` after the letter; ``;`` or newlines between).

    Raises:
        ValueError: an entry without a letter, a repeated letter, or fewer than two options.
    """
    options: dict[str, str] = {}
    for entry in filter(str.strip, re.split(r"[;\n]", spec)):
        match = _OPTION_SPEC.match(entry)
        if match is None:
            raise ValueError(f"option {entry.strip()!r} is not LETTER=TEXT (letters A-E)")
        letter = match.group(1).upper()
        if letter in options:
            raise ValueError(f"option {letter} is given twice")
        options[letter] = match.group(2)
    if len(options) < 2:
        raise ValueError("give at least two options, e.g. --options 'A=Heart;B=Liver'")
    return dict(sorted(options.items()))


def format_mcqa(question: str, options: dict[str, str]) -> str:
    """The question and its lettered options in :data:`MCQA_TEMPLATE`."""
    lines = "\n".join(f"{letter}. {text}" for letter, text in options.items())
    return MCQA_TEMPLATE.format(question=question.strip(), options=lines)


def answer_line(letter: str, options: dict[str, str]) -> str:
    """The gold answer to a multiple-choice question in :data:`ANSWER_LINE`."""
    return ANSWER_LINE.format(letter=letter, text=options[letter].strip())

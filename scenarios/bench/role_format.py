"""Does each role answer in its own format, or echo its prompt? Measured on the council's transcripts of bench runs.

``python -m medcouncil.scenarios.bench.role_format RUN [RUN ...]`` prints, per run, for the diagnostician's and the
critic's own text (what the model wrote, before medcouncil appends the constrained choice or the verdict):

- ``echo``: the share of turns whose text is mostly the prompt given back (at least half of its word 6-grams occur
  in the case and options, or it repeats the task's own headings: "Case:", "Evidence:", "Options:");
- ``format``: the share of turns in the role's trained format: the diagnostician's reasoning ends in its own
  ``Final answer:`` line naming an option; the critic's review says the answer is sound or names the better option
  (:data:`prompts.CRITIC_APPROVE` / :data:`prompts.CRITIC_REVISE`);
- ``loops``: the share of turns that repeat themselves (one word 6-gram three times or more): a role's format
  filled with a degenerate loop is not an answer;
- ``empty``: turns with no text at all;
- the median length in words.
"""

from __future__ import annotations

import re
import statistics
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel

from medcouncil.agents import prompts
from medcouncil.scenarios.bench.journal import Record, read_records

HEADINGS = re.compile(r"^(Case|Evidence|Options|Differential diagnosis and final answer):", re.MULTILINE)
_APPROVED = re.compile(r"^\s*Sound:", re.IGNORECASE)
_REVISED = re.compile(r"is not the best option", re.IGNORECASE)
_WORD = re.compile(r"\w+")
N = 6


class RoleFormat(BaseModel):
    role: str
    turns: int = 0
    echo: float = 0.0
    format: float = 0.0
    loops: float = 0.0
    empty: float = 0.0
    median_words: float = 0.0


def _grams(text: str) -> set[tuple[str, ...]]:
    words = _WORD.findall(text.lower())
    return {tuple(words[i : i + N]) for i in range(len(words) - N + 1)}


def loops(text: str) -> bool:
    """The text repeats itself: some word 6-gram occurs three times or more."""
    words = _WORD.findall(text.lower())
    counts = Counter(tuple(words[i : i + N]) for i in range(len(words) - N + 1))
    return bool(counts) and max(counts.values()) >= 3


def echoes(text: str, prompt: str) -> bool:
    """Mostly the prompt given back: at least half the 6-grams are the prompt's, or the task's headings reappear."""
    own = _grams(text)
    if HEADINGS.search(text):
        return True
    return bool(own) and len(own & _grams(prompt)) >= len(own) / 2


def own_text(record: Record, agent: str) -> list[str]:
    """The model's own text of each of ``agent``'s turns in a council record."""
    texts = []
    for turn in record.episode.turns:
        if turn.agent != agent or turn.skipped:
            continue
        text = turn.content
        if agent == "diagnostician" and turn.choice is not None:
            text = text.rsplit("\n\n" + prompts.FINAL_ANSWER.split("{")[0], 1)[0]  # the appended choice line
            text = "" if text.startswith(prompts.FINAL_ANSWER.split("{")[0]) else text
        if agent == "critic" and turn.verdict:
            text = text.removeprefix(f"{turn.verdict}: ").removeprefix(turn.verdict)
        texts.append(text.strip())
    return texts


def _in_format(role: str, text: str, options: dict[str, str]) -> bool:
    if role == "diagnostician":
        found = list(prompts.FINAL_ANSWER_PATTERN.finditer(text))
        return bool(found) and found[-1].group("answer")[:1] in options
    return bool(_APPROVED.search(text) or _REVISED.search(text))


def measure(records: Sequence[Record], mode: str = "council") -> list[RoleFormat]:
    rows = []
    for role in ("diagnostician", "critic"):
        echo = form = empty = looped = 0
        words: list[int] = []
        for record in (r for r in records if r.mode == mode):
            question, options = record.episode.question, record.episode.question.options or {}
            prompt = question.text + "\n" + "\n".join(f"{k}. {v}" for k, v in options.items())
            for text in own_text(record, role):
                words.append(len(text.split()))
                empty += not text
                echo += bool(text) and echoes(text, prompt)
                form += bool(text) and _in_format(role, text, options)
                looped += loops(text)
        n = len(words)
        rows.append(
            RoleFormat(
                role=role,
                turns=n,
                echo=echo / n if n else 0.0,
                format=form / n if n else 0.0,
                loops=looped / n if n else 0.0,
                empty=empty / n if n else 0.0,
                median_words=statistics.median(words) if words else 0.0,
            )
        )
    return rows


def main(argv: Sequence[str]) -> int:
    if not argv:
        print("usage: python -m medcouncil.scenarios.bench.role_format RUN [RUN ...]", file=sys.stderr)
        return 2
    print(f"{'run':40} {'role':14} {'turns':>5} {'echo':>6} {'format':>7} {'loops':>6} {'empty':>6} {'words':>6}")
    for run in argv:
        for row in measure(read_records(Path(run))):
            print(
                f"{Path(run).name[:40]:40} {row.role:14} {row.turns:5d} {row.echo:6.1%} {row.format:7.1%} "
                f"{row.loops:6.1%} {row.empty:6.1%} {row.median_words:6.0f}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

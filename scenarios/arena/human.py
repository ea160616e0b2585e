"""A person judging in the terminal (``arena --judge human``): blind, sides drawn at random, keys A / B / T / S / Q.

The two answers are shown as A and B without their contestants' names; which contestant is A is drawn from the
run's seed, the item and the pair (the same on every resume). ``T`` is a tie, ``S`` skips the pair (journaled as
skipped: it is not asked again and counts in no rating), ``Q`` stops (everything judged so far is kept; ``arena
--resume`` continues with the next pair).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

from rich.console import Console
from rich.markup import escape
from rich.panel import Panel

from medcouncil.agents.arena_judge import AS_SHOWN, SWAPPED, Judged

KEYS = {"a": "A", "b": "B", "t": "T", "s": "S", "q": "Q"}


class Quit(Exception):
    """The person pressed Q."""


class Skipped(Exception):
    """The person skipped the pair."""


class HumanJudge:
    """Blind pairwise judgement by a person, one pair at a time."""

    name = "human"

    def __init__(self, seed: int, ask: Callable[[str], str], console: Console) -> None:
        self.seed, self.ask, self.console = seed, ask, console

    def _key(self) -> str:
        while True:
            try:
                reply = self.ask("A / B / T(ie) / S(kip) / Q(uit)? ").strip().lower()[:1]
            except EOFError:  # Ctrl-D, or the end of piped input
                raise Quit from None
            if reply in KEYS:
                return KEYS[reply]
            self.console.print("[warning]press A, B, T, S or Q[/]")

    async def judge(self, question: str, references: Sequence[str], first: str, second: str, key: str = "") -> Judged:
        swapped = random.Random(f"{self.seed}:{key}").random() < 0.5
        shown_a, shown_b = (second, first) if swapped else (first, second)
        self.console.rule("question")
        self.console.print(escape(question))
        if references:
            self.console.print(f"[notice]reference:[/] {escape(references[0])}")
        self.console.print(Panel(escape(shown_a.strip() or "(no answer)"), title="A"))
        self.console.print(Panel(escape(shown_b.strip() or "(no answer)"), title="B"))
        key = self._key()
        if key == "Q":
            raise Quit
        if key == "S":
            raise Skipped
        outcome = (SWAPPED if swapped else AS_SHOWN)[key]
        side = "second" if swapped else "first"
        return Judged(outcome=outcome, orders=[key], consistent=True, reason=f"person chose {key}; A was the {side}")

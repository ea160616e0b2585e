"""Does each role answer in its own format, or echo its prompt? Measured on the transcripts of any run folder.

For the diagnostician's and the critic's own text (what the model wrote, before medcouncil appends the constrained
choice or the verdict), per role:

- ``echo``: the share of turns whose text is mostly the prompt given back (at least half of its word 6-grams occur
  in the case and options, or it repeats the task's own headings: "Case:", "Evidence:", "Options:");
- ``format``: the share of turns in the role's format. On a multiple-choice item the diagnostician's reasoning ends
  in its own ``Final answer:`` line naming an option, and the critic's review says the answer is sound or names the
  better option (:data:`prompts.CRITIC_APPROVE` / :data:`prompts.CRITIC_REVISE`); the diagnostician's enforced
  shape (a numbered differential, the constrained choice after it) counts as its format; in an episode step the
  diagnostician's text holds an action line (ASK/EXAM/TEST/DIAGNOSIS, not a ``<placeholder>`` of the prompt);
- ``loops``: the share of turns that repeat themselves (one word 6-gram three times or more): a role's format
  filled with a degenerate loop is not an answer;
- ``empty``: turns with no text at all; ``over_length``: turns longer than the role's token budget allows
  (:data:`OVER_LENGTH_WORDS`): cut off, not finished;
- the median length in words.

The critic's verdicts: their distribution, and how the last verdict of each item agrees with the answer's
correctness (APPROVE of a correct answer, REVISE of a wrong one). Episodes: the share of the doctor's steps that are
valid actions, and of episodes that ask, examine or test before they diagnose.
"""

from __future__ import annotations

import re
import statistics
from collections import Counter
from collections.abc import Iterable, Sequence

from pydantic import BaseModel

from medcouncil.agents import prompts
from medcouncil.agents.interview import Interview, parse_action
from medcouncil.agents.preserve import mostly_copied
from medcouncil.agents.protocol import Episode
from medcouncil.agents.verdict import approve_probability

HEADINGS = re.compile(r"^(Case|Evidence|Options|Differential diagnosis and final answer):", re.MULTILINE)
_APPROVED = re.compile(r"^\s*Sound:", re.IGNORECASE)
_REVISED = re.compile(r"is not the best option", re.IGNORECASE)
_WORD = re.compile(r"\w+")
_PROBLEMS = re.compile(r"\s*Problems:", re.IGNORECASE)
_DIFFERENTIAL = re.compile(r"1\. \w.*\n2\. \w.*\n3\. \w")
N = 6
ROLES = ("diagnostician", "critic")
OVER_LENGTH_WORDS = {"diagnostician": 190, "critic": 120}
"""Words past which a turn has run into its role's token budget (256 and 160 tokens, ~0.75 words a token)."""


class RoleFormat(BaseModel):
    role: str
    turns: int = 0
    echo: float = 0.0
    format: float = 0.0
    loops: float = 0.0
    empty: float = 0.0
    over_length: float = 0.0
    median_words: float = 0.0


class Verdicts(BaseModel):
    """The critic's verdicts: every turn's, and each item's last one against the answer's correctness."""

    turns: int = 0
    approve: float = 0.0
    """Share of critic turns that approve (the rest revise)."""
    items: int = 0
    agreement: float = 0.0
    """Share of items whose last verdict matches the answer (APPROVE and correct, or REVISE and wrong)."""
    approve_precision: float | None = None
    """Of the items approved, the share answered correctly (None: none approved)."""
    approve_recall: float | None = None
    """Of the items answered correctly, the share approved (None: none correct)."""
    approve_median: float | None = None
    """The median probability of A (approve) of each item's first verdict choice: the threshold that calibrates
    the model's verdicts (``agents/verdict.py``; None: no choice recorded, e.g. a run before it was)."""


class Actions(BaseModel):
    """The doctor's steps in interactive episodes."""

    episodes: int = 0
    steps: int = 0
    valid: float = 0.0
    """Share of the doctor's steps that are actions (not ``invalid``)."""
    gathers_first: float = 0.0
    """Share of episodes with an ASK, EXAM or TEST before the diagnosis."""
    mean_actions: float = 0.0


def loops(text: str) -> bool:
    """The text repeats itself: some word 6-gram occurs three times or more."""
    words = _WORD.findall(text.lower())
    counts = Counter(tuple(words[i : i + N]) for i in range(len(words) - N + 1))
    return bool(counts) and max(counts.values()) >= 3


def echoes(text: str, prompt: str) -> bool:
    """Mostly the prompt given back: at least half the 6-grams are the prompt's, or the task's headings reappear."""
    return bool(HEADINGS.search(text)) or mostly_copied(text, prompt, N)


def own_text(episode: Episode, agent: str) -> list[str]:
    """The model's own text of each of ``agent``'s turns in a council episode."""
    texts = []
    for turn in episode.turns:
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


def in_format(role: str, text: str, episode: Episode, step: bool = False) -> bool:
    """Whether ``text`` is in ``role``'s format (see the module's docstring); ``step``: a turn of an episode's doctor
    step (runs from before ``Question.reply`` existed say so through the run's kind)."""
    options = episode.question.options or {}
    if role == "critic":
        return bool(_APPROVED.search(text) or _REVISED.search(text) or _PROBLEMS.match(text))
    if (step or episode.question.reply != "free") and not options:  # leads to an action line
        return parse_action(text)[0] != "invalid"
    found = list(prompts.FINAL_ANSWER_PATTERN.finditer(text))
    if found and (found[-1].group("answer")[:1] in options or (not options and found[-1].group("answer").strip())):
        return True
    return bool(_DIFFERENTIAL.match(text))  # the enforced shape: the choice (among options or its lines) follows


def measure_roles(episodes: Iterable[Episode], steps: bool = False) -> list[RoleFormat]:
    """Role formats over council episodes (those without the role's turns count nothing); ``steps``: the episodes
    are an interview's doctor steps."""
    episodes = list(episodes)
    rows = []
    for role in ROLES:
        counts = Counter[str]()
        words: list[int] = []
        for episode in episodes:
            question = episode.question
            prompt = (episode.case_en or question.text) + "\n"
            prompt += "\n".join(f"{k}. {v}" for k, v in (question.options or {}).items())
            for text in own_text(episode, role):
                words.append(len(text.split()))
                counts["empty"] += not text
                counts["echo"] += bool(text) and echoes(text, prompt)
                counts["format"] += bool(text) and in_format(role, text, episode, steps)
                counts["loops"] += loops(text)
                counts["over_length"] += len(text.split()) > OVER_LENGTH_WORDS[role]
        n = len(words)
        shares = {key: counts[key] / n if n else 0.0 for key in ("echo", "format", "loops", "empty", "over_length")}
        rows.append(RoleFormat(role=role, turns=n, median_words=statistics.median(words) if words else 0.0, **shares))
    return rows


def measure_verdicts(items: Iterable[tuple[Episode, bool]]) -> Verdicts:
    """The critic's verdicts over ``(episode, answered correctly)`` pairs."""
    every = approved = 0
    pairs: list[tuple[bool, bool]] = []
    first: list[float] = []
    for episode, correct in items:
        verdicts = [turn.verdict for turn in episode.turns if turn.agent == "critic" and turn.verdict]
        chosen = [t.choice for t in episode.turns if t.agent == "critic" and t.choice is not None]
        if chosen:
            first.append(approve_probability(chosen[0]))
        every += len(verdicts)
        approved += verdicts.count("APPROVE")
        if verdicts:
            pairs.append((verdicts[-1] == "APPROVE", correct))
    agree = sum(a == c for a, c in pairs)
    yes = [c for a, c in pairs if a]
    right = [a for a, c in pairs if c]
    return Verdicts(
        turns=every,
        approve=approved / every if every else 0.0,
        items=len(pairs),
        agreement=agree / len(pairs) if pairs else 0.0,
        approve_precision=sum(yes) / len(yes) if yes else None,
        approve_recall=sum(right) / len(right) if right else None,
        approve_median=statistics.median(first) if first else None,
    )


def measure_actions(interviews: Sequence[Interview]) -> Actions:
    """Valid actions and information gathering over interactive episodes."""
    steps = valid = gathered = actions = 0
    for record in interviews:
        doctor = [step for step in record.steps if step.by == "doctor"]
        steps += len(doctor)
        valid += sum(step.kind != "invalid" for step in doctor)
        before = []
        for step in doctor:
            if step.kind == "diagnosis":
                break
            before.append(step.kind)
        gathered += any(kind in ("ask", "exam", "test") for kind in before)
        actions += sum(kind in ("ask", "exam", "test") for kind in before)
    n = len(interviews)
    return Actions(
        episodes=n,
        steps=steps,
        valid=valid / steps if steps else 0.0,
        gathers_first=gathered / n if n else 0.0,
        mean_actions=actions / n if n else 0.0,
    )

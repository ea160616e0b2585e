"""An arena run on disk: its manifest (``arena.json``), its items (``items.jsonl``), one journal line per answer
(``answers.jsonl``), per judgement (``judgements.jsonl``) and per failed attempt (``errors.jsonl``).

Every answer and judgement is appended and flushed at once, so a run killed at any moment (even ``kill -9``) loses
at most the one in flight; ``arena --resume`` reads the journals and does only what is missing: an answer is never
generated twice, a pair never judged twice by the same judge.
"""

from __future__ import annotations

import itertools
import random
from pathlib import Path
from typing import IO, Literal, NamedTuple

from pydantic import BaseModel, Field, field_validator

from medcouncil.agents.arena_judge import Outcome
from medcouncil.scenarios.arena.doctors import BUDGET, EPISODE_PREFIX
from medcouncil.scenarios.arena.items import ArenaItem
from medcouncil.scenarios.bench.journal import ServedBy
from medcouncil.scenarios.bench.modes import episode_modes, free_text_modes
from medcouncil.serving.common.errors import ConfigError
from medcouncil.serving.common.jsonl import read_versioned
from medcouncil.serving.common.runlog import RunHeader, append_line, drop_cut_line, now, read_lines, write_manifest

SCHEMA_VERSION = 1
MANIFEST, ITEMS, ANSWERS, JUDGEMENTS, ERRORS = (
    "arena.json",
    "items.jsonl",
    "answers.jsonl",
    "judgements.jsonl",
    "errors.jsonl",
)
JUDGES = ("model", "reference", "human")


class Contestant(NamedTuple):
    mode: str
    model: str | None
    """Another model on the same endpoint (a LoRA adapter ``serve --lora`` serves); None: the command's."""
    episode: bool
    """The mode's episode doctor plays the case (``episode:MODE``) instead of answering it at once."""


def parse_contestant(spec: str) -> Contestant:
    """``MODE``, ``MODE@MODEL``, ``episode:MODE`` or ``episode:MODE@MODEL``.

    Raises:
        ConfigError: a mode that does not answer in free text (or, as ``episode:``, does not play episodes).
    """
    episode = spec.startswith(EPISODE_PREFIX)
    mode, _, model = spec.removeprefix(EPISODE_PREFIX).partition("@")
    allowed = episode_modes() if episode else free_text_modes()
    if mode not in allowed:
        what = "play episodes" if episode else "answer open questions"
        raise ConfigError(
            f"contestant {spec!r}: mode {mode!r} does not {what}; choose from {', '.join(allowed)} "
            "(as MODE, MODE@MODEL, episode:MODE or episode:MODE@MODEL)"
        )
    if "@" in spec and not model.strip():
        raise ConfigError(f"contestant {spec!r}: no model after '@'")
    return Contestant(mode, model.strip() or None, episode)


class ArenaConfig(ServedBy):
    """What decides the answers and the pairings: a resumed run keeps it."""

    source: str
    limit: int | None = None
    contestants: list[str]
    pairs: int | None = None
    """Pairs judged per item, drawn with the seed; None: all pairs."""
    seed: int = 0
    judges: list[str] = Field(default_factory=lambda: ["model"])
    judge_model: str | None = None
    """The judge model's name, when it is not the contestants' model."""
    judge_endpoint: str | None = None
    budget: int = Field(default=BUDGET, ge=1)
    """Actions per encounter of an ``episode:`` contestant."""
    cache: bool = True
    """Answers and judgements may come from the response cache (``--no-cache``: False); a resume keeps it."""
    judge_identity: str | None = None
    """The judge model that judged (``URL#MODEL``, :func:`~medcouncil.scenarios.bench.journal.judged_by`), recorded
    when it first judges."""
    judge_weights: str = ""
    """The judge's weights identity where medcouncil started its server (``EndpointInfo.weights``); empty otherwise
    and in runs from before it was recorded."""

    @field_validator("contestants")
    @classmethod
    def _contestants(cls, contestants: list[str]) -> list[str]:
        unique = list(dict.fromkeys(c.strip() for c in contestants if c.strip()))
        if len(unique) < 2:
            raise ValueError("an arena needs at least two different contestants")
        for spec in unique:
            parse_contestant(spec)
        return unique

    @field_validator("judges")
    @classmethod
    def _judges(cls, judges: list[str]) -> list[str]:
        wrong = [j for j in judges if j not in JUDGES]
        if wrong or not judges:
            raise ValueError(f"judges: choose from {', '.join(JUDGES)} (got {', '.join(wrong) or 'none'})")
        return list(dict.fromkeys(judges))

    def pairings(self, item_id: str) -> list[tuple[str, str]]:
        """The pairs judged on an item, in the contestants' order: all of them, or a sample seeded by the run's
        seed and the item (the same on every resume, whatever else the run holds)."""
        every = list(itertools.combinations(self.contestants, 2))
        if self.pairs is None or self.pairs >= len(every):
            return every
        drawn = random.Random(f"{self.seed}:{item_id}").sample(range(len(every)), self.pairs)
        return [every[i] for i in sorted(drawn)]


class ArenaManifest(RunHeader):
    schema_version: int = SCHEMA_VERSION
    config: ArenaConfig
    item_ids: list[str] = Field(default_factory=list)
    skipped_rows: list[str] = Field(default_factory=list)
    finished: bool = False


class AnswerLine(BaseModel):
    item_id: str
    contestant: str
    answer: str
    model_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    wall_time_s: float = 0.0
    at: str = Field(default_factory=now)


class JudgementLine(BaseModel):
    item_id: str
    first: str
    second: str
    judge: str
    outcome: Outcome
    orders: list[str]
    consistent: bool
    reason: str = ""
    skipped: bool = False
    """A person skipped the pair: never asked again, in no rating."""
    at: str = Field(default_factory=now)


class ErrorLine(BaseModel):
    item_id: str
    stage: Literal["answer", "judge"]
    who: str
    error: str
    at: str = Field(default_factory=now)


def read_manifest(directory: Path) -> ArenaManifest:
    """Raises: ConfigError: no arena run in ``directory``, or one written by a newer medcouncil."""
    path = directory / MANIFEST
    if not path.is_file():
        raise ConfigError(f"{directory}: no arena run here ({MANIFEST} missing)")
    return read_versioned(path, ArenaManifest, SCHEMA_VERSION, "arena run")


class ArenaJournal:
    """The run folder's files, appended one flushed line at a time."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self._handles: dict[str, IO[str]] = {}

    def write_manifest(self, manifest: ArenaManifest) -> None:
        write_manifest(self.directory / MANIFEST, manifest)

    def write_items(self, items: list[ArenaItem]) -> None:
        text = "".join(item.model_dump_json() + "\n" for item in items)
        (self.directory / ITEMS).write_text(text, encoding="utf-8")

    def items(self) -> list[ArenaItem]:
        return read_lines(self.directory / ITEMS, ArenaItem)

    def answers(self) -> list[AnswerLine]:
        return read_lines(self.directory / ANSWERS, AnswerLine)

    def judgements(self) -> list[JudgementLine]:
        return read_lines(self.directory / JUDGEMENTS, JudgementLine)

    def errors(self) -> list[ErrorLine]:
        return read_lines(self.directory / ERRORS, ErrorLine)

    def _append(self, name: str, line: BaseModel) -> None:
        handle = self._handles.get(name)
        if handle is None:
            drop_cut_line(self.directory / name)
            handle = self._handles[name] = (self.directory / name).open("a", encoding="utf-8")
        append_line(handle, line.model_dump_json())

    def add_answer(self, line: AnswerLine) -> None:
        self._append(ANSWERS, line)

    def add_judgement(self, line: JudgementLine) -> None:
        self._append(JUDGEMENTS, line)

    def add_error(self, line: ErrorLine) -> None:
        self._append(ERRORS, line)

    def close(self) -> None:
        for handle in self._handles.values():
            handle.close()
        self._handles.clear()

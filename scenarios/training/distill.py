"""Rationales from a teacher model (``medcouncil distill``), by rejection sampling.

For each item the teacher (any OpenAI-compatible endpoint) is asked exactly what the council's diagnostician is
asked at run time (:data:`TEACHER_PROMPT`: the role's system prompt and task, :func:`sft.diagnostician_task`). Its
reply must end in :data:`prompts.FINAL_ANSWER`; a reply whose final answer is the gold option, with some reasoning
before it, is kept. Otherwise the teacher is asked again, up to ``tries`` times, at ``temperature``. An item with
no such reply is written too (``kept: false``, every answer tried), so a resumed run does not ask again.

Every reply is journaled whole (schema 2), so a row with a reply that reaches the gold option and one that does
not is a preference pair (:func:`distill_pairs`, read by ``finetune --method dpo --data OUT``). With
``pairs`` set, the teacher is asked on after its first gold reply until one reply misses too (or ``tries`` run out),
so that most items give a pair.

The output JSONL is the run's journal: one line per finished item, appended and flushed at once (a ``kill -9``
loses at most the items in flight), each line naming the teacher, its model and the prompt it was given. The
settings that decide the rows live beside it in ``OUT.run.json``; a resume must match them.
``medcouncil data build --rationales OUT`` turns the kept rationales into diagnostician training examples.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

from medcouncil.agents import prompts
from medcouncil.scenarios.datasets.registry import DatasetInfo
from medcouncil.scenarios.datasets.samples import Sample
from medcouncil.scenarios.training.decontamination import normalise_text
from medcouncil.scenarios.training.sft import diagnostician_task, rationale_key
from medcouncil.serving.common.errors import ConfigError, RequestRejectedError
from medcouncil.serving.common.runlog import RunHeader, append_line, drop_cut_line, now, read_lines

if TYPE_CHECKING:
    from medcouncil.serving.training.preference import PreferenceExample

SCHEMA_VERSION = 2
"""1: letters only; 2: every reply's text and the question (preference pairs)."""
TEACHER_PROMPT = "diagnostician"
"""The name recorded for the teacher's prompt: the diagnostician's system prompt and task."""
_LEADING_LETTER = re.compile(r"(?P<letter>[A-J])(?:[\s.):\]*_]|$)")

Message = dict[str, str]
Teacher = Callable[[list[Message], float, int], Awaitable[tuple[str, int, int]]]
"""Ask the teacher: (messages, temperature, max_tokens) -> (reply, prompt tokens, completion tokens)."""


class DistillSettings(BaseModel):
    """What decides the rows; a resumed run must have the same."""

    teacher_model: str
    tries: int = Field(default=4, ge=1)
    """Replies asked per item at most (rejection sampling)."""
    temperature: float = Field(default=0.7, ge=0)
    max_tokens: int = Field(default=512, ge=16)
    prompt: str = TEACHER_PROMPT
    pairs: bool = False
    """Ask on after a gold reply until one misses the gold option too (within ``tries``): a preference pair."""


class DistillManifest(RunHeader):
    """``OUT.run.json``: the dataset as loaded, the settings, the teacher's URL and the latest counts."""

    schema_version: int = SCHEMA_VERSION
    dataset: DatasetInfo
    fields: str | None = None
    settings: DistillSettings
    teacher: str
    summary: dict[str, int] = Field(default_factory=dict)
    stopped: str | None = None
    """Why the last run stopped before the end (the teacher unreachable, its engine dead); None when it did not."""


class Distilled(BaseModel):
    """One finished item: a line of the output."""

    id: str
    kept: bool
    rationale: str = ""
    """The teacher's reasoning before its final answer (kept rows only)."""
    letter: str | None = None
    """The kept reply's letter, or the last reply's."""
    gold: str
    answers: list[str | None] = []
    """The letter of every reply, in order (None: no readable final answer)."""
    replies: list[str] = []
    """Every reply's text, in the order of ``answers`` (schema 2; empty in older journals)."""
    question: str = ""
    """The item's question, the text decontamination checks (schema 2)."""
    kept_try: int | None = None
    """Which reply (1-based) is the kept one (schema 2)."""
    reason: str
    teacher: str
    teacher_model: str
    prompt_name: str
    prompt: list[Message]
    temperature: float
    prompt_tokens: int = 0
    completion_tokens: int = 0
    at: str = Field(default_factory=now)


def read_final(text: str, options: dict[str, str]) -> tuple[str | None, str]:
    """The letter of the last ``Final answer:`` line (a letter, or an option's text) and the reasoning before it."""
    matches = list(prompts.FINAL_ANSWER_PATTERN.finditer(text))
    if not matches:
        return None, text.strip()
    last = matches[-1]
    answer, rationale = last.group("answer").strip(), text[: last.start()].strip()
    if (found := _LEADING_LETTER.match(answer)) and found.group("letter") in options:
        return found.group("letter"), rationale
    said = normalise_text(answer)
    named = [letter for letter, option in options.items() if said and normalise_text(option) in (said, said[:200])]
    return (named[0] if len(named) == 1 else None), rationale


def teacher_messages(sample: Sample) -> list[Message]:
    return [
        {"role": "system", "content": prompts.DIAGNOSTICIAN_SYSTEM},
        {"role": "user", "content": diagnostician_task(sample)},
    ]


async def distil_one(sample: Sample, teacher: Teacher, settings: DistillSettings, teacher_url: str) -> Distilled:
    """Ask until a reply's final answer is the gold option (and it reasons first), at most ``settings.tries`` times.

    Raises:
        MedcouncilError: the teacher cannot be reached (a refused request is a row, not an error).
    """
    messages = teacher_messages(sample)
    answers: list[str | None] = []
    replies: list[str] = []
    used = [0, 0]
    letter, rationale, reason = None, "", ""
    kept_at: int | None = None
    for _ in range(settings.tries):
        try:
            reply, prompt_tokens, completion_tokens = await teacher(messages, settings.temperature, settings.max_tokens)
        except RequestRejectedError as error:
            if kept_at is None:  # after a kept reply, a refusal only ends the search for a miss
                reason = f"refused: {error}"
            break
        used = [used[0] + prompt_tokens, used[1] + completion_tokens]
        said, reasoning = read_final(reply, sample.options)
        answers.append(said)
        replies.append(reply)
        if kept_at is None:
            letter, rationale = said, reasoning
            if said == sample.answer and reasoning:
                kept_at = len(answers)
                reason = f"matched the gold letter at try {kept_at}"
        if kept_at is not None and (not settings.pairs or any(a != sample.answer for a in answers)):
            break
    kept = kept_at is not None
    if not reason:
        reason = f"no reply of {len(answers)} reasoned to the gold letter {sample.answer}"
    return Distilled(
        id=sample.id,
        kept=kept,
        rationale=rationale if kept else "",
        letter=letter,
        gold=sample.answer,
        answers=answers,
        replies=replies,
        question=sample.question,
        kept_try=kept_at,
        reason=reason,
        teacher=teacher_url,
        teacher_model=settings.teacher_model,
        prompt_name=settings.prompt,
        prompt=messages,
        temperature=settings.temperature,
        prompt_tokens=used[0],
        completion_tokens=used[1],
    )


def read_rows(path: Path) -> list[Distilled]:
    """The finished rows of a distillation output, first row per item kept (a cut last line is ignored)."""
    rows: dict[str, Distilled] = {}
    for row in read_lines(path, Distilled):
        rows.setdefault(row.id, row)
    return list(rows.values())


def read_rationales(path: Path) -> dict[str, str]:
    """:func:`rationale_key` (item id and question) -> kept rationale, for ``medcouncil data build --rationales``.

    Raises:
        ConfigError: no such file, or no row in it.
    """
    if not path.is_file():
        raise ConfigError(f"{path}: no such distillation output (write one with medcouncil distill)")
    rows = read_rows(path)
    if not rows:
        raise ConfigError(f"{path}: no distilled rows in it (not an output of medcouncil distill?)")
    return {rationale_key(row.id, row.question): row.rationale for row in rows if row.kept}


def tally(rows: Sequence[Distilled]) -> dict[str, int]:
    return {
        "kept": sum(r.kept for r in rows),
        "rejected": sum(not r.kept and not r.reason.startswith("refused") for r in rows),
        "refused": sum(r.reason.startswith("refused") for r in rows),
        "replies": sum(len(r.answers) for r in rows),
        "pairs": sum(pair_of(r) is not None for r in rows),
    }


def pair_of(row: Distilled) -> tuple[str, str] | None:
    """The row's (chosen, rejected) replies: the kept reply against the first that misses the gold option (a wrong
    letter before an unreadable one); None without both or without the replies' text (a schema-1 journal)."""
    if not row.kept or not row.kept_try or len(row.replies) != len(row.answers):
        return None
    chosen = row.replies[row.kept_try - 1]  # the reply that reasoned to the gold option, not a bare answer line
    missed = [(said is None, n) for n, said in enumerate(row.answers) if said != row.gold and row.replies[n].strip()]
    if not chosen.strip() or not missed:
        return None
    rejected = row.replies[min(missed)[1]]
    return (chosen, rejected) if rejected.strip() != chosen.strip() else None


def distill_pairs(path: Path) -> list[PreferenceExample]:
    """Preference pairs from a distillation output, for ``finetune --method dpo``: the teacher's prompt (the
    diagnostician's system prompt and task), a reply reasoning to the gold option as chosen and one that does not as
    rejected; the question is what decontamination checks.

    Raises:
        ConfigError: not a distillation output, or no row with both kinds of reply (hint: ``distill --pairs``).
    """
    from medcouncil.serving.training.data import Message as TrainMessage
    from medcouncil.serving.training.preference import PreferenceExample

    rows = read_rows(path) if path.is_file() else []
    if not rows:
        raise ConfigError(f"{path}: no distilled rows in it (not an output of medcouncil distill?)")
    pairs: list[PreferenceExample] = []
    for row in rows:
        if (pair := pair_of(row)) is None:
            continue
        prompt = tuple(TrainMessage(role=m["role"], content=m["content"]) for m in row.prompt)
        source = f"{path}:{row.id}"
        pairs.append(
            PreferenceExample(prompt=prompt, chosen=pair[0], rejected=pair[1], source=source, question=row.question)
        )
    if not pairs:
        raise ConfigError(
            f"{path}: no item has both a reply reaching the gold option and one missing it "
            "(distill with --pairs to ask on until one misses; journals before schema 2 keep no reply text)"
        )
    return pairs


async def distil(
    samples: Sequence[Sample],
    teacher: Teacher,
    settings: DistillSettings,
    teacher_url: str,
    out: Path,
    concurrency: int = 2,
    on_row: Callable[[Distilled], None] | None = None,
) -> list[Distilled]:
    """Distil every item not yet in ``out``, ``concurrency`` at a time, appending each finished row at once.

    Returns the rows written by this call. A teacher that cannot be reached stops the run (the rows finished
    so far stay in ``out``; the error is raised).
    """
    done = {row.id for row in read_rows(out)}
    queue: asyncio.Queue[Sample] = asyncio.Queue()
    for sample in samples:
        if sample.id not in done:
            queue.put_nowait(sample)
    written: list[Distilled] = []
    out.parent.mkdir(parents=True, exist_ok=True)
    drop_cut_line(out)
    with out.open("a", encoding="utf-8") as handle:

        async def worker() -> None:
            while not queue.empty():
                row = await distil_one(queue.get_nowait(), teacher, settings, teacher_url)
                append_line(handle, row.model_dump_json())
                written.append(row)
                if on_row is not None:
                    on_row(row)

        try:
            async with asyncio.TaskGroup() as group:
                for _ in range(max(1, min(concurrency, queue.qsize()))):
                    group.create_task(worker())
        except ExceptionGroup as failed:  # the first worker's failure, as itself (one line for the user)
            first: BaseException = failed
            while isinstance(first, BaseExceptionGroup):
                first = first.exceptions[0]
            raise first from None
    return written

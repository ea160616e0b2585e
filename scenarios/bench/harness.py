"""The benchmark harness: every item answered in every mode, journaled as it finishes, resumable, scored honestly.

The modes and their answerers are declared in ``scenarios/bench/modes.py``. All modes see the same items in the same
shown order. A failed attempt (model unreachable, ...) is journaled as an error, retried with backoff, and never scored.
"""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from medcouncil.agents.protocol import Answerer, Episode, Question, run_episode
from medcouncil.scenarios.bench.journal import ErrorRecord, Journal, Record, read_records
from medcouncil.scenarios.datasets.samples import LETTERS, Sample
from medcouncil.serving.common.errors import EngineDiedError, MedcouncilError, RequestRejectedError, first_line

R = TypeVar("R")
U = TypeVar("U")
C = TypeVar("C")


@dataclass(frozen=True)
class Item:
    """A sample as shown to the answerers: options possibly shuffled (seeded per item, so reruns agree)."""

    sample: Sample
    question: Question
    order: list[str] | None
    """Dataset letter shown at A, B, ...; None when not shuffled."""

    def unshuffle(self, letter: str | None) -> str | None:
        if letter is None or self.order is None:
            return letter
        return self.order[LETTERS.index(letter)]

    def unshuffle_probabilities(self, probabilities: Mapping[str, float] | None) -> dict[str, float] | None:
        if probabilities is None:
            return None
        return {self.unshuffle(letter) or letter: p for letter, p in probabilities.items()}


def prepare(sample: Sample, seed: int = 0, shuffle: bool = False) -> Item:
    letters = list(sample.options)
    order: list[str] | None = None
    if shuffle:
        order = letters[:]
        random.Random(f"{seed}:{sample.id}").shuffle(order)
    shown = {LETTERS[i]: sample.options[letter] for i, letter in enumerate(order or letters)}
    korean = sample.metadata.get("language") == "ko"
    question = Question(text=sample.question, options=shown, item_id=sample.id, language="ko" if korean else "auto")
    return Item(sample=sample, question=question, order=order)


Job = tuple[Item, list[str]]
"""An item and the modes it still needs."""


@dataclass
class Tally:
    """Running counts for the progress display and the end-of-run summary."""

    answered: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    correct: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    errors: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    """Items given up after their retries (by mode)."""
    resumed: int = 0

    def add(self, record: Record) -> None:
        self.answered[record.mode] += 1
        self.correct[record.mode] += record.correct

    def describe(self, modes: Sequence[str]) -> str:
        parts = []
        for mode in modes:
            n = self.answered[mode]
            parts.append(f"{mode} {self.correct[mode] / n:.0%}" if n else f"{mode} –")
        return " · ".join(parts)


@dataclass
class Attempts:
    """One unit of work (an item or a case, in one mode) tried up to ``retries`` + 1 times with exponential backoff,
    each failure journaled as an error; after ``give_up_after`` units failed in a row, :attr:`aborted` says why and
    the run stops (the rest stays pending). Shared by the MCQA and the episode harness."""

    journal: Journal
    retries: int = 2
    """Retries of a failed attempt, after the model client's own (connection-level) retries."""
    backoff_s: float = 2.0
    give_up_after: int = 8
    """Consecutive failed units after which the run stops (the server is down)."""
    unit: str = "items"
    aborted: str | None = None
    _consecutive: int = 0

    async def run(self, key: str, mode: str, once: Callable[[int], Awaitable[R | str]]) -> R | None:
        """``once(attempt)`` gives the unit's result, or an error line when it should be tried again (an exception
        is an error line too); None once every attempt failed."""
        error = ""
        for attempt in range(1, self.retries + 2):
            try:
                outcome = await once(attempt)
            except EngineDiedError as failure:
                # The engine is gone: no retry can succeed until it is back. Journaled, the run stops (resumable).
                error = first_line(failure)
                self.journal.append_error(ErrorRecord(sample_id=key, mode=mode, attempt=attempt, error=error))
                self.aborted = self.aborted or error
                return None
            except MedcouncilError as failure:
                outcome = first_line(failure)
            except Exception as failure:  # a bug in one unit must not lose the run: journaled, retried, reported
                outcome = f"{type(failure).__name__}: {failure}"
            if not isinstance(outcome, str):
                self._consecutive = 0
                return outcome
            error = outcome
            self.journal.append_error(ErrorRecord(sample_id=key, mode=mode, attempt=attempt, error=error))
            if attempt <= self.retries and self.aborted is None:
                await asyncio.sleep(self.backoff_s * 2 ** (attempt - 1))
        self._consecutive += 1
        if self._consecutive >= self.give_up_after and self.aborted is None:
            self.aborted = f"{self._consecutive} {self.unit} failed in a row (last: {error})"
        return None


async def drain(
    jobs: Sequence[tuple[U, list[str]]],
    concurrency: int,
    context: Callable[[], C],
    step: Callable[[C, U, str], Awaitable[None]],
    stopped: Callable[[], bool],
) -> None:
    """Jobs (a unit and its pending modes) shared by ``concurrency`` workers, each with its own ``context()`` (a
    council holds one episode at a time); every worker stops once ``stopped()``."""
    queue: asyncio.Queue[tuple[U, list[str]]] = asyncio.Queue()
    for job in jobs:
        queue.put_nowait(job)

    async def worker() -> None:
        own = context()
        while not queue.empty() and not stopped():
            unit, modes = queue.get_nowait()
            for mode in modes:
                if stopped():
                    break
                await step(own, unit, mode)

    await asyncio.gather(*(worker() for _ in range(max(1, concurrency))))


@dataclass
class Harness:
    """Runs ``items`` × ``modes`` with ``concurrency`` workers; each worker has its own answerers (a council holds
    one episode at a time)."""

    journal: Journal
    modes: Sequence[str]
    answerers: Callable[[], Mapping[str, Answerer]]
    concurrency: int = 1
    retries: int = 2
    """Retries of a failed attempt, after the model client's own (connection-level) retries."""
    backoff_s: float = 2.0
    give_up_after: int = 8
    """Consecutive failed items after which the run stops (the server is down): the rest stays pending."""
    on_record: Callable[[Record | None], None] = lambda record: None
    tally: Tally = field(default_factory=Tally)
    attempts: Attempts = field(init=False)

    def __post_init__(self) -> None:
        self.attempts = Attempts(self.journal, self.retries, self.backoff_s, self.give_up_after)

    @property
    def aborted(self) -> str | None:
        """Why the run stopped early (None while it goes on)."""
        return self.attempts.aborted

    def pending(self, items: Sequence[Item]) -> list[Job]:
        """What the journal does not hold yet; the tally starts from what it holds. Call once, before :meth:`run`."""
        records = read_records(self.journal.directory)
        for record in records:
            self.tally.add(record)
        self.tally.resumed = len(records)
        done = {record.key for record in records}
        jobs = [(item, [m for m in self.modes if (item.sample.id, m) not in done]) for item in items]
        return [(item, modes) for item, modes in jobs if modes]

    async def run(self, jobs: Sequence[Job]) -> Tally:
        """Answer ``jobs`` (from :meth:`pending`)."""

        async def step(answerers: Mapping[str, Answerer], item: Item, mode: str) -> None:
            self.on_record(await self.attempt(answerers[mode], item, mode))

        await drain(jobs, self.concurrency, self.answerers, step, lambda: self.aborted is not None)
        return self.tally

    async def attempt(self, answerer: Answerer, item: Item, mode: str) -> Record | None:
        """The item's record, or None after ``retries`` failed retries (each journaled as an error)."""

        async def once(attempt: int) -> Record | str:
            try:
                episode = await run_episode(answerer, item.question)
            except RequestRejectedError as failure:
                # Refused by the engine itself (too long for its context, ...): the same request would be refused
                # again. Recorded once as a failed item with its reason, never left pending.
                reason = first_line(failure)
                episode = Episode(question=item.question, answerer=mode, error=reason, rejected=True)
            if episode.engine_died:
                raise EngineDiedError(episode.error or "the engine died")
            if episode.error is not None and not episode.rejected:
                return episode.error
            return self._finish(self._record(item, mode, episode, attempt, failure=episode.error))

        record = await self.attempts.run(item.sample.id, mode, once)
        if record is None:
            self.tally.errors[mode] += 1
        return record

    def _finish(self, record: Record) -> Record:
        self.journal.append(record)
        self.tally.add(record)
        return record

    def _record(self, item: Item, mode: str, episode: Episode, attempt: int, failure: str | None = None) -> Record:
        letter = None if failure else item.unshuffle(episode.letter)
        return Record(
            sample_id=item.sample.id,
            mode=mode,
            subset=item.sample.metadata.get("subset", ""),
            gold=item.sample.answer,
            letter=letter,
            correct=letter == item.sample.answer,
            probabilities=item.unshuffle_probabilities(episode.probabilities),
            order=item.order,
            prompt_tokens=episode.prompt_tokens,
            completion_tokens=episode.completion_tokens,
            model_calls=episode.model_calls,
            latency_s=episode.wall_time_s,
            model_time_s=episode.model_time_s,
            escalated=episode.escalated,
            attempts=attempt,
            failure=failure,
            episode=episode,
        )

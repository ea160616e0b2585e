"""The episode benchmark: every case played in every mode, journaled as it finishes, resumable, judged.

A run folder holds ``run.json`` (:class:`EpisodeManifest`: the source, its fingerprint, the cases, the settings),
``samples.jsonl`` (one :class:`EpisodeRecord` per finished case × mode, fsynced) and ``errors.jsonl`` (failed
attempts, retried and never scored): the same journal as the MCQA bench (``scenarios/bench/journal.py``).

Modes (the doctor, through the same :class:`~medcouncil.agents.protocol.Answerer` protocol):

- ``single``: the single model interviews and commits;
- ``council``: the council interviews (each step is a council episode) and commits;
- ``gated``: the single model interviews; the commitment goes through the gate (the council convenes when the
  single model's top option is unsure; on a case without options it always does).

With ``static`` (the default), a case that has options (cases made from MCQA items) is also answered statically, the
whole vignette at once, by each doctor: modes ``static:single``, ``static:council``, ``static:gated``. Static vs
interactive on the same items is the headline of the report.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from medcouncil.agents.cases import ClinicalCase
from medcouncil.agents.interview import Interview, Responder, Translate, interview
from medcouncil.agents.judge import Verdict, judge
from medcouncil.agents.protocol import Answerer, ChatModel, Episode, Question, run_episode
from medcouncil.scenarios.bench.harness import Attempts, drain
from medcouncil.scenarios.bench.journal import SAMPLES, Journal, Modes, ServedBy
from medcouncil.serving.common.errors import EngineDiedError, MedcouncilError, RequestRejectedError, first_line
from medcouncil.serving.common.runlog import RunHeader, now, read_lines
from medcouncil.tools.embeddings import Embedder

SCHEMA_VERSION = 1
STATIC = "static:"
"""Prefix of the static modes: the same doctor on the whole vignette at once."""


class EpisodeConfig(ServedBy):
    """How an episode run plays its cases (``bench --episodes``); a resumed run must match it."""

    modes: Modes = Field(default_factory=lambda: ["single", "council"])
    """Doctors: the modes that play episodes (``scenarios/bench/modes.py``)."""
    budget: int = 8
    """Actions (questions, examinations, tests) before the doctor must commit."""
    patient: Literal["lookup", "model"] = "lookup"
    """Who plays the patient: the exact lookup (``agents/lookup.py``) or the local model (``agents/patient.py``)."""
    static: bool = True
    """Also answer cases that have options statically (modes ``static:MODE``)."""
    limit: int | None = None
    threshold: float = 0.6
    judge_model: str = ""
    """``URL#MODEL`` of the optional judge model (:func:`~medcouncil.scenarios.bench.journal.judged_by`); empty:
    none. A resume must be judged by the same (:func:`~medcouncil.scenarios.bench.journal.check_judge`)."""
    judge_weights: str = ""
    """The judge's weights identity where medcouncil started its server; empty otherwise."""
    cache: bool = True

    def all_modes(self, cases: Sequence[ClinicalCase]) -> list[str]:
        static = [f"{STATIC}{m}" for m in self.modes] if self.static and any(c.options for c in cases) else []
        return [*self.modes, *static]


class EpisodeManifest(RunHeader):
    schema_version: int = SCHEMA_VERSION
    kind: Literal["episodes"] = "episodes"
    source: str
    fingerprint: str
    """Of the cases as read: a resume refuses a changed source."""
    config: EpisodeConfig
    case_ids: list[str]
    option_cases: list[str] = Field(default_factory=list)
    """Cases with options: the static modes answer these only."""
    modes: Modes = Field(default_factory=list)
    """Every mode of the run, static ones included."""
    skipped_rows: list[str] = Field(default_factory=list)
    finished: bool = False


class EpisodeRecord(BaseModel):
    """One case played (or answered statically) by one mode, judged."""

    schema_version: int = SCHEMA_VERSION
    case_id: str
    mode: str
    language: str = "en"
    gold: str
    """The correct diagnosis (and ``gold_letter`` on a case with options)."""
    gold_letter: str | None = None
    diagnosis: str = ""
    letter: str | None = None
    correct: bool
    verdict: Verdict
    questions: int = 0
    exams: int = 0
    tests: int = 0
    invalid: int = 0
    cost: float = 0.0
    turns: int = 0
    tokens: int = 0
    model_calls: int = 0
    model_time_s: float = 0.0
    wall_time_s: float = 0.0
    failure: str | None = None
    interview: Interview | None = None
    static: Episode | None = None
    finished: str = Field(default_factory=now)

    @property
    def key(self) -> tuple[str, str]:
        return (self.case_id, self.mode)


def fingerprint(cases: Sequence[ClinicalCase]) -> str:
    digest = hashlib.sha256()
    for case in cases:
        digest.update(case.model_dump_json().encode())
    return digest.hexdigest()[:16]


def expected(manifest: EpisodeManifest) -> set[tuple[str, str]]:
    """Every (case, mode) the run must answer."""
    with_options = set(manifest.option_cases)
    return {
        (case, mode)
        for case in manifest.case_ids
        for mode in manifest.modes
        if not mode.startswith(STATIC) or case in with_options
    }


def read_episode_records(directory: Path) -> list[EpisodeRecord]:
    records: dict[tuple[str, str], EpisodeRecord] = {}
    for record in read_lines(directory / SAMPLES, EpisodeRecord):
        records.setdefault(record.key, record)
    return list(records.values())


@dataclass
class Players:
    """One worker's doctors and the patient side; ``helpers`` makes a fresh patient and translator per case (their
    turns are that case's cost)."""

    doctors: Mapping[str, tuple[Answerer, Answerer]]
    """mode -> (who interviews, who commits)."""
    static: Mapping[str, Answerer]
    helpers: Callable[[], tuple[Responder, Responder, Translate | None, list[object]]]
    """() -> (patient, measurement, translator, objects whose ``turns`` are support cost)."""


@dataclass
class Judging:
    embedder: Embedder | None = None
    model: ChatModel | None = None

    async def verdict(self, case: ClinicalCase, diagnosis: str, letter: str | None, translated: str = "") -> Verdict:
        verdict = await judge(case, diagnosis, letter, self.embedder, self.model)
        if verdict.correct or not translated:
            return verdict
        # A Korean case: the diagnosis carried back into Korean is matched against the Korean names (no English
        # embedder on Korean text: it would score unrelated Korean words as close).
        again = await judge(case, translated, letter, None, self.model)
        return again if again.correct else verdict


def raise_error(episode: Episode) -> None:
    """An episode's error as the exception the harness sorts by (a dead engine stops the run)."""
    if episode.error is not None:
        raise (EngineDiedError if episode.engine_died else MedcouncilError)(episode.error)


async def play(case: ClinicalCase, mode: str, players: Players, budget: int, judging: Judging) -> EpisodeRecord:
    """One case in one mode, judged (an engine refusal of a request is raised, as in the MCQA harness)."""
    started = time.perf_counter()
    base: dict[str, object] = {
        "case_id": case.id,
        "mode": mode,
        "language": case.language,
        "gold": case.diagnosis,
        "gold_letter": case.answer,
    }
    if mode.startswith(STATIC):
        question = Question(
            text=case.static_text(),
            options=case.options,
            item_id=case.id,
            language="ko" if case.language == "ko" else "en",
        )
        episode = await run_episode(players.static[mode.removeprefix(STATIC)], question)
        raise_error(episode)
        diagnosis = case.options[episode.letter] if case.options and episode.letter else episode.answer
        verdict = await judging.verdict(case, diagnosis, episode.letter)
        return EpisodeRecord.model_validate(
            {
                **base,
                "diagnosis": diagnosis,
                "letter": episode.letter,
                "correct": verdict.correct,
                "verdict": verdict,
                "tokens": episode.prompt_tokens + episode.completion_tokens,
                "model_calls": episode.model_calls,
                "model_time_s": episode.model_time_s,
                "wall_time_s": time.perf_counter() - started,
                "static": episode,
            }
        )
    doctor, committer = players.doctors[mode]
    patient, measurement, translate, spenders = players.helpers()
    record = await interview(doctor, case, patient, measurement, budget, committer, translate)
    for spender in spenders:
        record.support.extend(getattr(spender, "turns", []))
    for episode in record.doctor_episodes:
        raise_error(episode)
    verdict = await judging.verdict(case, record.diagnosis, record.letter, record.diagnosis_translated)
    return EpisodeRecord.model_validate(
        {
            **base,
            "diagnosis": record.diagnosis,
            "letter": record.letter,
            "correct": verdict.correct,
            "verdict": verdict,
            "questions": record.count("ask"),
            "exams": record.count("exam"),
            "tests": record.count("test"),
            "invalid": record.count("invalid"),
            "cost": record.cost,
            "turns": record.turns,
            "tokens": record.tokens,
            "model_calls": record.model_calls,
            "model_time_s": record.model_time_s,
            "wall_time_s": time.perf_counter() - started,
            "interview": record,
        }
    )


@dataclass
class EpisodeHarness:
    """Cases × modes with ``concurrency`` workers, each with its own players; failed attempts journaled, retried
    with backoff; the run stops after ``give_up_after`` failed cases in a row (the rest stays pending)."""

    journal: Journal
    modes: Sequence[str]
    players: Callable[[], Players]
    judging: Judging
    budget: int = 8
    concurrency: int = 1
    retries: int = 2
    backoff_s: float = 2.0
    give_up_after: int = 8
    on_record: Callable[[EpisodeRecord | None], None] = lambda record: None
    done: dict[tuple[str, str], EpisodeRecord] = field(default_factory=dict)
    attempts: Attempts = field(init=False)

    def __post_init__(self) -> None:
        self.attempts = Attempts(self.journal, self.retries, self.backoff_s, self.give_up_after, unit="cases")

    @property
    def aborted(self) -> str | None:
        """Why the run stopped early (None while it goes on)."""
        return self.attempts.aborted

    def pending(self, cases: Sequence[ClinicalCase]) -> list[tuple[ClinicalCase, list[str]]]:
        """What the journal does not hold yet (call once, before :meth:`run`)."""
        self.done = {record.key: record for record in read_episode_records(self.journal.directory)}
        jobs = [
            (case, [m for m in self.modes if (case.id, m) not in self.done and self._applies(case, m)])
            for case in cases
        ]
        return [(case, modes) for case, modes in jobs if modes]

    @staticmethod
    def _applies(case: ClinicalCase, mode: str) -> bool:
        return not mode.startswith(STATIC) or case.options is not None

    async def run(self, jobs: Sequence[tuple[ClinicalCase, list[str]]]) -> None:
        async def step(players: Players, case: ClinicalCase, mode: str) -> None:
            self.on_record(await self.attempt(case, mode, players))

        await drain(jobs, self.concurrency, self.players, step, lambda: self.aborted is not None)

    async def attempt(self, case: ClinicalCase, mode: str, players: Players) -> EpisodeRecord | None:
        async def once(_: int) -> EpisodeRecord:
            try:
                return self._finish(await play(case, mode, players, self.budget, self.judging))
            except RequestRejectedError as failure:  # the same request would be refused again: a failed case
                reason = first_line(failure)
                verdict = Verdict(correct=False, method="none", reason=f"refused by the engine: {reason}")
                return self._finish(
                    EpisodeRecord(
                        case_id=case.id,
                        mode=mode,
                        language=case.language,
                        gold=case.diagnosis,
                        gold_letter=case.answer,
                        correct=False,
                        verdict=verdict,
                        failure=reason,
                    )
                )

        return await self.attempts.run(case.id, mode, once)

    def _finish(self, record: EpisodeRecord) -> EpisodeRecord:
        self.journal.append(record)
        self.done[record.key] = record
        return record

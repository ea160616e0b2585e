"""A benchmark run on disk: its manifest (``run.json``), one journal line per finished answer (``samples.jsonl``)
and one per failed attempt (``errors.jsonl``).

Every finished answer is appended and flushed to disk at once, so a run killed at any moment (even ``kill -9``)
loses at most the answer in flight; ``--resume`` reads the journal and runs only what is missing. A line cut short
by the kill is ignored on reading and the item is run again; an answer is never journaled twice.
The run log is versioned (``SCHEMA_VERSION``); a reader refuses a newer version than it knows.
"""

from __future__ import annotations

from pathlib import Path
from typing import IO, Annotated

from pydantic import AfterValidator, BaseModel, Field, model_validator

from medcouncil.agents.protocol import Episode
from medcouncil.scenarios.bench.modes import SC_K
from medcouncil.scenarios.datasets.registry import DatasetInfo
from medcouncil.scenarios.training.leakage import TrainingOverlap
from medcouncil.serving.common.errors import ConfigError
from medcouncil.serving.common.jsonl import read_versioned
from medcouncil.serving.common.runlog import RunHeader, append_line, drop_cut_line, now, read_lines, write_manifest

SCHEMA_VERSION = 1
MANIFEST, SAMPLES, ERRORS = "run.json", "samples.jsonl", "errors.jsonl"


def distinct(modes: list[str]) -> list[str]:
    """Each mode once, in the order first given: a mode named twice (``--mode single,single``) is one mode, answered
    once per item, and a run log written with a repeat resumes as if it had none."""
    return list(dict.fromkeys(modes))


Modes = Annotated[list[str], AfterValidator(distinct)]
"""The modes of a run (MCQA or episodes): every run configuration holds them through this type."""


class ServedBy(BaseModel):
    """The model, its endpoint and the council configuration a run is answered with: a resume must use the same."""

    council: dict[str, object] = Field(default_factory=dict)
    model: str = ""
    endpoint: str = ""
    """The model's URL, or every replica's, comma-separated, when a pool answered the run (as last bound)."""
    shapes: bool | None = None
    """Whether replies with a fixed form were held to it by the engine (``ClientSettings.shapes``) for the run's
    model; None: not bound yet, or a run from before shapes existed (which was answered without them)."""

    def bind(
        self, model: str, endpoint: str, council: dict[str, object], directory: Path, shapes: bool | None = None
    ) -> None:
        """Record what answers the run in ``directory``; a resume against another model, council or shape setting
        is refused."""
        recorded = self.shapes if self.shapes is not None or not self.model else False  # older runs: unshaped
        if recorded is not None and shapes is not None and recorded != shapes:
            raise ConfigError(
                f"{directory} was run with reply shapes {'on' if recorded else 'off'}: resume it with "
                f"MEDCOUNCIL_SHAPES={'on' if recorded else 'off'}"
            )
        if self.model and self.model != model:
            raise ConfigError(
                f"{directory} was run with model {self.model!r}, not {model!r}: resume it against the same model"
            )
        if self.council and self.council != council:
            raise ConfigError(
                f"{directory} was run with another council configuration: resume it with the same --council file"
            )
        self.model, self.endpoint, self.council = model, endpoint, council
        self.shapes = shapes if shapes is not None else self.shapes


def judged_by(endpoints: str, name: str) -> str:
    """A judge model as run logs record it: ``URL#MODEL``, with every replica's URL (comma-separated) for a pool."""
    return f"{endpoints}#{name}"


def judge_parts(identity: str) -> tuple[str, str]:
    """The URLs (comma-separated) and the served name of a :func:`judged_by` identity."""
    urls, _, name = identity.rpartition("#")
    return urls, name


def check_judge(recorded: str, recorded_weights: str, identity: str, weights: str, directory: Path) -> None:
    """Refuse a resume judged by another model than the run's (``recorded``: :func:`judged_by`, empty: no judge).

    The same judge is the same served name with the same weights where both sides know them (a server medcouncil
    started: restarted on another port, it is still the same judge), else with a URL in common (a pool that lost
    or gained a replica still serves the model it served). Runs recorded before the weights keep the URL check.
    """
    if recorded == identity and (not recorded_weights or not weights or recorded_weights == weights):
        return
    (urls, name), (now_urls, now_name) = judge_parts(recorded), judge_parts(identity)
    if recorded and identity and name == now_name:
        if recorded_weights and weights:
            if recorded_weights == weights:
                return
        elif set(urls.split(",")) & set(now_urls.split(",")):
            return
    said = {"": "no judge model"}
    raise ConfigError(
        f"{directory} was judged by {said.get(recorded, recorded)}, not {said.get(identity, identity)}"
        + (" (other weights)" if recorded == identity else "")
        + ": resume it with the same judge"
    )


class RunConfig(ServedBy):
    """What decides the answers: a resumed run must match it."""

    modes: Modes
    limit: int | None = None
    fields: str | None = None
    """The generic adapter's field mapping, if one was given."""
    seed: int = 0
    shuffle_choices: bool = False
    threshold: float = 0.6
    """Gated mode's gate on the single model's top-option probability."""
    sc_k: int = SC_K
    """Self-consistency samples per item (mode ``sc``)."""
    cache: bool = True
    """Whether answers may come from the response cache (``--no-cache``: False); a resume keeps it."""


class Manifest(RunHeader):
    schema_version: int = SCHEMA_VERSION
    dataset: DatasetInfo
    config: RunConfig
    sample_ids: list[str]
    """The items of this run, in order: a resume runs exactly these."""
    label: str = ""
    finished: bool = False
    summary: dict[str, object] = Field(default_factory=dict)
    training: TrainingOverlap | None = None
    """A fine-tuned model's training data checked against the items (``scenarios/training/leakage.py``)."""


class Record(BaseModel):
    """One finished answer: scored in the dataset's own letters (unshuffled)."""

    schema_version: int = SCHEMA_VERSION
    sample_id: str
    mode: str
    subset: str = ""
    gold: str
    letter: str | None
    """The predicted letter in the dataset's order; None: the model gave no valid letter (invalid, not an error)."""
    correct: bool
    probabilities: dict[str, float] | None = None
    order: list[str] | None = None
    """With --shuffle-choices: the dataset letter shown as A, B, ... (the seeded permutation)."""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    model_calls: int = 0
    latency_s: float = 0.0
    model_time_s: float = 0.0
    escalated: bool | None = None
    attempts: int = 1
    failure: str | None = None
    """Why the engine refused this item outright (for example a prompt longer than its context): scored as a
    wrong answer with no letter, not retried (retrying cannot help)."""
    finished: str = Field(default_factory=now)
    episode: Episode

    @model_validator(mode="after")
    def _scored_by_its_letter(self) -> Record:
        # compare, report and the summary all read this row: it may not say "correct" of a letter that is not gold
        if self.correct != (self.letter is not None and self.letter == self.gold):
            raise ValueError(
                f"correct is {self.correct} but letter {self.letter!r} and gold {self.gold!r} say otherwise"
            )
        return self

    @property
    def key(self) -> tuple[str, str]:
        return (self.sample_id, self.mode)

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class ErrorRecord(BaseModel):
    """A failed attempt (model unreachable, ...): never scored; the item is retried and, on resume, run again."""

    sample_id: str
    mode: str
    attempt: int
    error: str
    at: str = Field(default_factory=now)


class Journal:
    """The run directory, opened for appending."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self._samples: IO[str] | None = None
        self._errors: IO[str] | None = None

    @property
    def manifest_path(self) -> Path:
        return self.directory / MANIFEST

    def write_manifest(self, manifest: BaseModel) -> None:
        """Replace ``run.json`` atomically (any run manifest, its ``updated`` stamp renewed)."""
        write_manifest(self.manifest_path, manifest)

    def append(self, record: BaseModel) -> None:
        if self._samples is None:
            self._samples = self._open(SAMPLES)
        append_line(self._samples, record.model_dump_json())

    def append_error(self, record: ErrorRecord) -> None:
        if self._errors is None:
            self._errors = self._open(ERRORS)
        append_line(self._errors, record.model_dump_json())

    def _open(self, name: str) -> IO[str]:
        path = self.directory / name
        drop_cut_line(path)
        return path.open("a", encoding="utf-8")

    def close(self) -> None:
        for handle in (self._samples, self._errors):
            if handle is not None:
                handle.close()
        self._samples = self._errors = None


def read_manifest(directory: Path) -> Manifest:
    """Raises: ConfigError: no run there, unreadable, or written by a newer medcouncil."""
    path = directory / MANIFEST
    if not path.is_file():
        raise ConfigError(f"{directory}: not a benchmark run (no {MANIFEST})")
    return read_versioned(path, Manifest, SCHEMA_VERSION, "a run manifest")


def read_records(directory: Path) -> list[Record]:
    """Finished answers, first record per (item, mode) kept; a truncated last line (killed run) is ignored, so the
    item runs again."""
    records: dict[tuple[str, str], Record] = {}
    for record in read_lines(directory / SAMPLES, Record):
        records.setdefault(record.key, record)
    return list(records.values())


def read_errors(directory: Path) -> list[ErrorRecord]:
    return read_lines(directory / ERRORS, ErrorRecord)

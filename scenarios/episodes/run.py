"""``medcouncil bench --episodes`` (the episode benchmark) and ``medcouncil chat --case`` (be the doctor yourself).

Both read cases with :func:`scenarios.episodes.load.load_cases`: an AgentClinic, NEJM-style or medcouncil case file,
``agentclinic`` for the shared AgentClinic cases, or any dataset the MCQA bench loads (each item made into a case).
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, field, replace
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from rich.markup import escape

from medcouncil.serving.common.console import console, err_console
from medcouncil.serving.common.errors import ConfigError

if TYPE_CHECKING:
    from medcouncil.agents.build import Answerers
    from medcouncil.agents.cases import ClinicalCase
    from medcouncil.agents.interview import Responder, Translate
    from medcouncil.agents.protocol import ChatModel
    from medcouncil.scenarios.bench.run import Answering
    from medcouncil.scenarios.episodes.harness import EpisodeConfig, EpisodeManifest, Players
    from medcouncil.scenarios.episodes.report import EpisodeSummary
    from medcouncil.serving.session import ModelSource

JUDGE_KEY_ENV = "MEDCOUNCIL_JUDGE_API_KEY"
"""The judge endpoint's API key (never on the command line)."""


def load(source: str, limit: int | None, strict: bool, data_root: Path | None) -> tuple[list[ClinicalCase], list[str]]:
    from medcouncil.scenarios.datasets.ids import print_renamed, unique_ids
    from medcouncil.scenarios.datasets.samples import MalformedRow, print_skipped
    from medcouncil.scenarios.episodes.load import load_cases

    try:
        cases, skipped = load_cases(source, limit, strict, data_root)
    except MalformedRow as error:
        raise ConfigError(f"malformed row (--strict-rows): {error}") from None
    rows = [str(row) for row in skipped]
    print_skipped(rows)
    if not cases:
        raise ConfigError(f"{source}: no valid case")
    cases, renamed = unique_ids(cases)
    print_renamed(renamed, "case")
    return cases, rows


def read_episode_manifest(directory: Path) -> EpisodeManifest | None:
    """The manifest when ``directory`` holds an episode run; None when it holds no run or another kind of run.

    Raises:
        ConfigError: its ``run.json`` is unreadable, or an episode manifest that does not fit (one line, naming it).
    """
    from medcouncil.scenarios.episodes.harness import SCHEMA_VERSION, EpisodeManifest
    from medcouncil.serving.common.jsonl import read_versioned_object, validate_versioned

    path = directory / "run.json"
    if not path.is_file():
        return None
    data = read_versioned_object(path, "a run manifest")
    if data.get("kind") != "episodes":
        return None
    return validate_versioned(path, data, EpisodeManifest, SCHEMA_VERSION, "an episode run manifest")


def _lookups() -> tuple[Responder, Responder]:
    from medcouncil.agents.lookup import Reveal, measurement_result, patient_answer

    async def patient(case: ClinicalCase, request: str) -> Reveal:
        return patient_answer(case, request)

    async def measurement(case: ClinicalCase, request: str) -> Reveal:
        return measurement_result(case, request)

    return patient, measurement


def players(answerers: Answerers, config: EpisodeConfig) -> Players:
    """One worker's doctors (fresh councils: a council plays one case at a time) and the patient side."""
    from medcouncil.agents.patient import ModelPatient, Translator
    from medcouncil.agents.roles import TRANSLATOR
    from medcouncil.scenarios.bench.modes import doctors, setting_for
    from medcouncil.scenarios.episodes.harness import Players

    made = doctors(setting_for(answerers, config.threshold), config.modes)
    lookup_patient, measurement = _lookups()

    def helpers() -> tuple[Responder, Responder, Translate | None, list[object]]:
        translator = Translator(answerers.roles.get(TRANSLATOR, answerers.model))
        if config.patient == "model":
            patient = ModelPatient(answerers.model)
            return patient, measurement, translator, [patient]
        return lookup_patient, measurement, translator, []

    return Players(
        doctors={m: (d.asker, d.decider) for m, d in made.items()},
        static={m: d.static for m, d in made.items()},
        helpers=helpers,
    )


def _judge_source(judge_endpoint: str | None, judge_model: str | None) -> ModelSource | None:
    from medcouncil.serving.session import ModelSource

    if judge_endpoint is None:
        return None
    return ModelSource(endpoint=judge_endpoint, api_key=os.environ.get(JUDGE_KEY_ENV), model=judge_model)


async def _play(
    directory: Path,
    manifest: EpisodeManifest,
    cases: list[ClinicalCase],
    answering: Answering,
    judge: ModelSource | None,
) -> tuple[EpisodeSummary, str | None]:
    from contextlib import AsyncExitStack

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from medcouncil.agents.build import open_answerers
    from medcouncil.scenarios.bench.journal import Journal, check_judge, judged_by, read_errors
    from medcouncil.scenarios.episodes.harness import EpisodeHarness, Judging, expected, read_episode_records
    from medcouncil.scenarios.episodes.report import write_report
    from medcouncil.serving.components import ClientSettings
    from medcouncil.serving.session import open_model

    config = manifest.config
    async with AsyncExitStack() as stack:
        answerers = await stack.enter_async_context(
            open_answerers(answering.source, ClientSettings(cache=answering.cache), council=answering.council)
        )
        model = answerers.model
        config.bind(model.name, model.endpoints, answerers.config.model_dump(), directory, model.shapes)
        judge_model: ChatModel | None = None
        identity, weights = "", ""
        if judge is not None:
            judge_client = await stack.enter_async_context(open_model(judge, ClientSettings(cache=answering.cache)))
            identity, weights = judged_by(judge_client.endpoints, judge_client.name), judge_client.info.weights
            judge_model = judge_client
        if read_episode_records(directory):  # episodes judged already: a resume keeps their judge
            check_judge(config.judge_model, config.judge_weights, identity, weights, directory)
        config.judge_model, config.judge_weights = identity, weights
        from medcouncil.agents.build import LazyKnowledge

        knowledge = answerers.knowledge
        embedder = knowledge.wait().embedder if isinstance(knowledge, LazyKnowledge) else None
        judging = Judging(embedder=embedder, model=judge_model)
        journal = Journal(directory)
        journal.write_manifest(manifest)
        harness = EpisodeHarness(
            journal,
            manifest.modes,
            lambda: players(answerers, config),
            judging,
            config.budget,
            answering.concurrency,
            answering.retries,
            answering.backoff,
            answering.give_up_after,
        )
        pending = harness.pending(cases)
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
        with Progress(*columns, console=err_console, transient=False) as progress:
            total = len(expected(manifest))
            task = progress.add_task("episodes", total=total, completed=len(harness.done))
            if harness.done:
                err_console.print(
                    f"[notice]resuming: {len(harness.done)} cases×modes journaled, "
                    f"{sum(len(m) for _, m in pending)} to go[/]"
                )

            def advance(record: object) -> None:
                right = sum(r.correct for r in harness.done.values())
                progress.update(task, advance=1, description=f"episodes · {right}/{len(harness.done)} correct")

            harness.on_record = advance
            try:
                await harness.run(pending)
            finally:
                journal.close()
        records = read_episode_records(directory)
        summary = write_report(directory, manifest, records, len(read_errors(directory)))
        manifest.finished = summary.pending == 0
        journal.write_manifest(manifest)
        return summary, harness.aborted


@dataclass(frozen=True)
class EpisodeRequest:
    """What ``bench --episodes`` asks for: a new run of ``episodes``, or the run in ``resume`` finished."""

    episodes: str | None = None
    resume: Path | None = None
    out: Path | None = None
    modes: list[str] = field(default_factory=lambda: ["single", "council"])
    limit: int | None = None
    budget: int = 8
    patient: str = "lookup"
    static: bool = True
    threshold: float = 0.6
    judge_endpoint: str | None = None
    judge_model: str | None = None
    strict_rows: bool = False
    data_dir: Path | None = None


def bench_episodes(request: EpisodeRequest, answering: Answering) -> int:
    """Run (or resume) an episode benchmark; the number of case × mode pairs left unscored."""
    from datetime import UTC, datetime

    from medcouncil.scenarios.bench.journal import judge_parts
    from medcouncil.scenarios.bench.modes import episode_modes
    from medcouncil.scenarios.bench.run import lock_run
    from medcouncil.scenarios.episodes.harness import EpisodeConfig, EpisodeManifest, fingerprint

    resume = request.resume
    if resume is not None:
        found = read_episode_manifest(resume)
        if found is None:  # refused before anything (a lock file) is written in it
            raise ConfigError(f"{resume}: not an episode run (no episode run.json)")
        lock_run(resume)
        manifest, directory = read_episode_manifest(resume) or found, resume  # as it is now that it is ours
        cases, _ = load(manifest.source, manifest.config.limit, False, request.data_dir)
        if fingerprint(cases) != manifest.fingerprint:
            raise ConfigError(f"{manifest.source}: the cases changed since the run started: start a new run")
        if not answering.cache and manifest.config.cache:
            raise ConfigError(f"{resume} was run with the response cache: resume it without --no-cache")
        answering = replace(answering, cache=manifest.config.cache)
    else:
        assert request.episodes is not None
        playing = episode_modes()
        if not request.modes or set(request.modes) - set(playing):
            raise ConfigError(f"--mode {','.join(request.modes)!r}: episodes are played by {', '.join(playing)}")
        if request.patient not in ("lookup", "model"):
            raise ConfigError(f"--patient {request.patient!r}: choose lookup or model")
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        directory = request.out or Path("runs") / f"episodes-{Path(request.episodes).stem.lower()}-{stamp}"
        lock_run(directory)
        if (directory / "run.json").exists():
            raise ConfigError(f"{directory} already holds a run: continue it with --resume {directory}")
        cases, skipped = load(request.episodes, request.limit, request.strict_rows, request.data_dir)
        settings = {
            "modes": request.modes,
            "budget": request.budget,
            "patient": request.patient,
            "static": request.static,
            "limit": request.limit,
            "threshold": request.threshold,
            "cache": answering.cache,
        }
        config = EpisodeConfig.model_validate(settings)
        manifest = EpisodeManifest(
            medcouncil_version=version("medcouncil"),
            source=request.episodes,
            fingerprint=fingerprint(cases),
            config=config,
            case_ids=[c.id for c in cases],
            option_cases=[c.id for c in cases if c.options],
            modes=config.all_modes(cases),
            skipped_rows=skipped,
        )
    judge = _judge_source(request.judge_endpoint, request.judge_model)
    if judge is None and resume is not None and manifest.config.judge_model:  # a resume keeps the run's judge
        judge = _judge_source(*judge_parts(manifest.config.judge_model))
    try:
        summary, aborted = asyncio.run(_play(directory, manifest, cases, answering, judge))
    except KeyboardInterrupt:
        err_console.print(
            f"[warning]interrupted: every finished case is journaled; continue with "
            f"medcouncil bench --resume {escape(str(directory))}[/]"
        )
        raise
    print_episode_summary(directory, summary)
    if aborted:
        err_console.print(f"[error]stopped early:[/] {escape(aborted)}")
    return summary.pending


def print_episode_summary(directory: Path, summary: EpisodeSummary) -> None:
    from rich.table import Table

    from medcouncil.scenarios.episodes.report import pair_rows, result_rows

    header, rows = result_rows(summary)
    parts = [range(len(header))] if console.width >= 140 else [range(8), [0, *range(8, len(header))]]
    for number, columns in enumerate(parts):
        table = Table(*(header[i] for i in columns), title=f"{summary.cases} cases" if number == 0 else None)
        for row in rows:
            table.add_row(*(row[i] for i in columns))
        console.print(table)
    for title, pairs in (("static vs interactive", summary.gaps), ("paired", summary.paired)):
        for line in pair_rows(pairs)[1]:
            console.print(
                f"{title}: {line[0]} {line[3]}% vs {line[1]} {line[4]}% on {line[2]} cases "
                f"({line[5]} pp), discordant {line[6]} vs {line[7]}, McNemar p = {line[8]}"
            )
    if summary.pending or summary.errors:
        err_console.print(
            f"[error]{summary.pending} case×mode pairs not scored ({summary.errors} failed attempts)[/]: "
            f"finish them with medcouncil bench --resume {escape(str(directory))}"
        )
    console.print(
        f"[notice]report: {escape(str(directory / 'report.md'))} · {escape(str(directory / 'report.html'))}[/]"
    )


def parse_case_spec(spec: str) -> tuple[str, int]:
    """``FILE[:N]`` -> (FILE, N) with N 1-based (default 1)."""
    path, colon, number = spec.rpartition(":")
    if colon and number.isdigit() and path:
        if int(number) < 1:
            raise ConfigError(f"--case {spec}: cases are numbered from 1")
        return path, int(number)
    return spec, 1


Language = Literal["en", "ko"]


def chat_case(
    spec: str, patient: str, budget: int | None, source: ModelSource, no_cache: bool, data_dir: Path | None = None
) -> None:
    """``chat --case FILE[:N]``: the person is the doctor; the lookup patient needs no model server."""
    from contextlib import AsyncExitStack

    from medcouncil.agents.judge import Verdict, judge
    from medcouncil.agents.patient import ModelPatient
    from medcouncil.scenarios.chat.case import CaseSession, play_case
    from medcouncil.serving.components import ClientSettings
    from medcouncil.serving.session import open_model
    from medcouncil.tools.embeddings import build_embedder

    if patient not in ("lookup", "model"):
        raise ConfigError(f"--patient {patient!r}: choose lookup or model")
    path, number = parse_case_spec(spec)
    cases, _ = load(path, number, False, data_dir)
    if len(cases) < number:
        raise ConfigError(f"--case {spec}: {path} has {len(cases)} valid cases")
    case = cases[number - 1]
    lookup_patient, measurement = _lookups()
    loop = asyncio.new_event_loop()
    stack = AsyncExitStack()
    try:
        responder = lookup_patient
        if patient == "model":
            opening = open_model(source, ClientSettings(cache=not no_cache), notice=lambda t: err_console.print(t))
            model = loop.run_until_complete(stack.enter_async_context(opening))
            responder = ModelPatient(model)
        embedder = build_embedder()

        async def judged(case: ClinicalCase, diagnosis: str, letter: str | None) -> Verdict:
            return await judge(case, diagnosis, letter, embedder)

        play_case(CaseSession(case, responder, measurement, budget), console.input, loop, judged)
    finally:
        loop.run_until_complete(stack.aclose())
        loop.close()

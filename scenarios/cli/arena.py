"""``medcouncil arena``: contestants answer open-ended items, judges compare them in pairs, ratings with CIs.

A judge model other than the contestants' (``--judge-endpoint`` / ``--judge-model``) reads its API key from
MEDCOUNCIL_JUDGE_API_KEY, never from the command line.
"""

from __future__ import annotations

import asyncio
import os
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from medcouncil.scenarios.cli.options import (
    ApiKeyOpt,
    CouncilOpt,
    DataDirOpt,
    EndpointsOpt,
    LimitOpt,
    ModelConfigOpt,
    ModelOpt,
    NoCacheOpt,
    SeedOpt,
    StrictRowsOpt,
)
from medcouncil.serving.common.console import console, err_console
from medcouncil.serving.common.errors import ConfigError, MedcouncilError

if TYPE_CHECKING:
    from rich.progress import Progress

    from medcouncil.agents.arena_judge import PairJudge
    from medcouncil.agents.build import Answerers, CouncilFile
    from medcouncil.agents.protocol import Answerer
    from medcouncil.scenarios.arena.doctors import EpisodeDoctor
    from medcouncil.scenarios.arena.journal import ArenaConfig, ArenaJournal, ArenaManifest
    from medcouncil.serving.components import ClientSettings
    from medcouncil.serving.session import ModelSource

ITEMS_HELP = (
    "Open-ended items: patient cases (an AgentClinic/NEJM/case file, or 'agentclinic'), BioASQ JSON, a chat "
    "transcript saved with /save, arena JSONL (prompt, reference), or an MCQA dataset asked without its options."
)


def _pairs(value: str) -> int | None:
    if value == "all":
        return None
    if not value.isdigit() or int(value) < 1:
        raise ConfigError(f"--pairs: 'all' or a whole number of pairs per item, not {value!r}")
    return int(value)


def _config(values: dict[str, object]) -> ArenaConfig:
    """Raises: ConfigError: one line naming the bad setting."""
    from pydantic import ValidationError

    from medcouncil.scenarios.arena.journal import ArenaConfig
    from medcouncil.scenarios.datasets.samples import validation_reason

    try:
        return ArenaConfig.model_validate(values)
    except ValidationError as error:
        raise ConfigError(validation_reason(error)) from None


def _new_run(config: ArenaConfig, strict: bool, data_dir: Path | None, out: Path) -> ArenaManifest:
    """Load the items, check them against the contestants, and write the run folder's manifest and items."""
    from importlib.metadata import version

    from medcouncil.scenarios.arena.items import load_items
    from medcouncil.scenarios.arena.journal import ArenaJournal, ArenaManifest, parse_contestant
    from medcouncil.scenarios.datasets.samples import MalformedRow

    try:
        items, skipped = load_items(config.source, config.limit, strict, data_dir)
    except MalformedRow as error:
        raise ConfigError(f"malformed row (--strict-rows): {error}") from None
    for row in skipped[:10]:
        err_console.print(f"[warning]skipped malformed row:[/] {escape(row)}", soft_wrap=True)
    players = [spec for spec in config.contestants if parse_contestant(spec).episode]
    if players and (flat := next((item.id for item in items if item.case is None), None)) is not None:
        raise ConfigError(
            f"{players[0]} plays patient cases, and {config.source} item {flat} is not one: use a case file "
            "(AgentClinic, NEJM-style, medcouncil cases)"
        )
    bare = sum(not item.references for item in items)
    if bare and "reference" in config.judges:
        err_console.print(f"[warning]{bare} of {len(items)} items have no reference: the reference judge skips them[/]")
    manifest = ArenaManifest(
        medcouncil_version=version("medcouncil"),
        config=config,
        item_ids=[item.id for item in items],
        skipped_rows=skipped[:50],
    )
    journal = ArenaJournal(out)
    journal.write_items(items)
    journal.write_manifest(manifest)
    return manifest


def _resumed(directory: Path, judges: list[str], fixed: dict[str, object], cache: bool) -> ArenaManifest:
    """The run in ``directory``, with ``judges`` added; flags that would change its answers are refused."""
    from medcouncil.scenarios.arena.journal import read_manifest
    from medcouncil.scenarios.bench.run import lock_run

    read_manifest(directory)  # no lock file is left in a folder that holds no run
    lock_run(directory)
    manifest = read_manifest(directory)
    given = [name for name, value in fixed.items() if value]
    if given:
        raise ConfigError(
            f"{', '.join(given)}: fixed by the run in {directory}; a resume only adds --judge (start a new run "
            "to change them)"
        )
    if manifest.config.cache and not cache:
        raise ConfigError(f"{directory} was run with the response cache: resume it without --no-cache")
    if judges:
        manifest.config = _config({**manifest.config.model_dump(), "judges": [*manifest.config.judges, *judges]})
    return manifest


def arena(
    items: Annotated[str | None, typer.Option("--items", help=ITEMS_HELP)] = None,
    contestant: Annotated[
        list[str] | None,
        typer.Option(
            "--contestant",
            "-c",
            help="MODE or MODE@MODEL (a model or LoRA adapter on the same endpoint), or episode:MODE (its doctor "
            "plays the case); repeatable or comma-separated. Modes: single, cot, council, panel, gated.",
        ),
    ] = None,
    pairs: Annotated[str, typer.Option(help="Pairs judged per item: 'all', or K drawn with --seed.")] = "all",
    budget: Annotated[int, typer.Option(min=1, help="Actions per encounter of an episode:MODE contestant.")] = 6,
    judge: Annotated[
        list[str] | None,
        typer.Option(
            "--judge", help="model (a judge model, both orders), reference (deterministic), human; repeatable."
        ),
    ] = None,
    judge_model: Annotated[str | None, typer.Option(help="The judge model's name (default: the contestants').")] = None,
    judge_endpoint: Annotated[
        str | None, typer.Option(help="The judge's OpenAI-compatible base URL (key: env MEDCOUNCIL_JUDGE_API_KEY).")
    ] = None,
    anchor: Annotated[
        str | None, typer.Option(help="The contestant rated 1000 (default: the mean rating is 1000).")
    ] = None,
    limit: LimitOpt = None,
    seed: SeedOpt = 0,
    data_dir: DataDirOpt = None,
    strict_rows: StrictRowsOpt = False,
    out: Annotated[Path | None, typer.Option(help="Run folder (default: ./runs/arena-ITEMS-TIME).")] = None,
    resume: Annotated[
        Path | None, typer.Option(help="Continue a run folder: answer and judge only what is missing.")
    ] = None,
    endpoint: EndpointsOpt = None,
    api_key: ApiKeyOpt = None,
    model: ModelOpt = None,
    model_config: ModelConfigOpt = None,
    no_cache: NoCacheOpt = False,
    council: CouncilOpt = None,
) -> None:
    """Rate answerers by pairwise judgement of their free-text answers (Bradley-Terry, bootstrap CIs)."""
    from medcouncil.agents.build import council_file
    from medcouncil.scenarios.bench.run import lock_run, slug
    from medcouncil.serving.session import ModelSource

    if resume is not None:
        fixed: dict[str, object] = {"--items": items, "--contestant": contestant, "--judge-model": judge_model,
                 "--judge-endpoint": judge_endpoint, "--limit": limit}  # fmt: skip
        manifest = _resumed(resume, judge or [], fixed, not no_cache)
        directory = resume
    else:
        if not items or not contestant:
            raise ConfigError("--items and at least two --contestant are needed (or --resume RUN)")
        config = _config(
            {
                "source": items,
                "limit": limit,
                "contestants": [c for spec in contestant for c in spec.split(",")],
                "pairs": _pairs(pairs),
                "seed": seed,
                "judges": judge or ["model"],
                "judge_model": judge_model,
                "judge_endpoint": judge_endpoint,
                "budget": budget,
                "cache": not no_cache,
            }
        )
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        directory = out or Path("runs") / f"arena-{slug(items)}-{stamp}"
        lock_run(directory)
        if (directory / "arena.json").exists():
            raise ConfigError(f"{directory} already holds an arena run: continue it with --resume {directory}")
        manifest = _new_run(config, strict_rows, data_dir, directory)
    if anchor is not None and anchor not in manifest.config.contestants:
        raise ConfigError(f"--anchor {anchor!r} is not a contestant: {', '.join(manifest.config.contestants)}")
    from medcouncil.scenarios.arena.journal import ArenaJournal

    if _complete(manifest, ArenaJournal(directory)):
        manifest.finished = True
        ArenaJournal(directory).write_manifest(manifest)
    else:
        source = ModelSource.resolve(model_config, endpoint, api_key, model)
        try:
            asyncio.run(_run(directory, manifest, source, manifest.config.cache, council_file(council)))
        except MedcouncilError as error:
            raise MedcouncilError(f"{error}\ncontinue with: medcouncil arena --resume {directory}") from None
    _finish(directory, anchor)
    if not manifest.finished:
        raise ConfigError(f"the run is not complete: continue it with medcouncil arena --resume {directory}")


async def _run(
    directory: Path, manifest: ArenaManifest, source: ModelSource, cache: bool, council: CouncilFile | None
) -> None:
    from medcouncil.agents.build import open_answerers
    from medcouncil.scenarios.arena.doctors import EpisodeDoctor
    from medcouncil.scenarios.arena.journal import ArenaJournal, parse_contestant
    from medcouncil.scenarios.bench.modes import MODES, doctors, setting_for
    from medcouncil.serving.components import ClientSettings
    from medcouncil.serving.session import beside

    journal = ArenaJournal(directory)
    config = manifest.config
    settings = ClientSettings(cache=cache)
    async with AsyncExitStack() as stack:
        primary = await stack.enter_async_context(open_answerers(source, settings, council=council))
        config.bind(
            primary.model.name,
            primary.model.endpoints,
            primary.config.model_dump(),
            directory,
            primary.model.shapes,
        )
        journal.write_manifest(manifest)
        by_model: dict[str | None, Answerers] = {None: primary}
        contestants: dict[str, Answerer | EpisodeDoctor] = {}
        for spec in config.contestants:
            mode, name, episode = parse_contestant(spec)
            if name not in by_model:
                other = beside(primary.model, name)
                by_model[name] = await stack.enter_async_context(open_answerers(other, settings, council=council))
            setting = setting_for(by_model[name])
            if episode:
                doctor = doctors(setting, [mode])[mode]
                contestants[spec] = EpisodeDoctor(
                    spec, doctor.asker, doctor.decider, by_model[name].model, config.budget
                )
            else:
                contestants[spec] = MODES[mode].build(setting)
        try:
            await _answer(manifest, journal, contestants)
            judges = await _judges(stack, config.judges, config, primary, settings, directory)
            for pair_judge in judges:
                await _judge(manifest, journal, pair_judge)
        finally:
            journal.close()
            manifest.finished = _complete(manifest, journal)
            journal.write_manifest(manifest)


async def _judges(
    stack: AsyncExitStack,
    names: list[str],
    config: ArenaConfig,
    primary: Answerers,
    settings: ClientSettings,
    directory: Path,
) -> list[PairJudge]:
    """The run's judges; the judge model's identity (endpoints, served name, weights) is recorded on the first run
    and a resume against another judge model is refused (:func:`check_judge`)."""
    from medcouncil.agents.arena_judge import ModelJudge, ReferenceJudge
    from medcouncil.scenarios.arena.human import HumanJudge
    from medcouncil.scenarios.bench.journal import check_judge, judged_by
    from medcouncil.scenarios.episodes.run import JUDGE_KEY_ENV
    from medcouncil.serving.session import ModelSource, beside, open_model

    made: list[PairJudge] = []
    for name in names:
        if name == "reference":
            made.append(ReferenceJudge())
        elif name == "human":
            made.append(HumanJudge(config.seed, input, err_console))
        else:
            judge_model = primary.model
            if config.judge_endpoint or config.judge_model:
                # another endpoint brings its own key (from the environment only); another model on the
                # contestants' endpoint shares theirs
                if config.judge_endpoint:
                    key = os.environ.get(JUDGE_KEY_ENV)
                    other = ModelSource(endpoint=config.judge_endpoint, api_key=key, model=config.judge_model)
                else:
                    other = beside(primary.model, config.judge_model)
                judge_model = await stack.enter_async_context(open_model(other, settings))
            identity, weights = judged_by(judge_model.endpoints, judge_model.name), judge_model.info.weights
            if config.judge_identity:
                check_judge(config.judge_identity, config.judge_weights, identity, weights, directory)
            config.judge_identity, config.judge_weights = identity, weights
            made.append(ModelJudge(judge_model, name="model"))
    return made


def _progress() -> Progress:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    return Progress(*columns, console=err_console, transient=False)


async def _answer(
    manifest: ArenaManifest, journal: ArenaJournal, contestants: dict[str, Answerer | EpisodeDoctor]
) -> None:
    from medcouncil.scenarios.arena.run import answer_all, missing_answers

    items = journal.items()
    todo = len(missing_answers(manifest, items, journal))
    done = len(journal.answers())
    if done:
        err_console.print(f"[notice]resuming: {done} answers already journaled, {todo} to go[/]")
    if not todo:
        return
    progress = _progress()
    with progress:
        task = progress.add_task("answering", total=todo)
        tally = await answer_all(manifest, items, journal, contestants, lambda: progress.advance(task))
    if tally.stopped:
        raise ConfigError(f"answering stopped: {tally.stopped}; continue with arena --resume {journal.directory}")


async def _judge(manifest: ArenaManifest, journal: ArenaJournal, pair_judge: PairJudge) -> None:
    from medcouncil.scenarios.arena.human import HumanJudge
    from medcouncil.scenarios.arena.run import judge_all, missing_judgements

    items = journal.items()
    todo = len(missing_judgements(manifest, items, journal, pair_judge.name))
    if not todo:
        return
    if isinstance(pair_judge, HumanJudge):  # no progress bar over the person's screen
        err_console.print(f"[notice]{todo} pairs to judge: the answers are shown as A and B, sides drawn at random[/]")
        tally = await judge_all(manifest, items, journal, pair_judge)
    else:
        progress = _progress()
        with progress:
            task = progress.add_task(f"judging ({pair_judge.name})", total=todo)
            tally = await judge_all(manifest, items, journal, pair_judge, lambda: progress.advance(task))
    if tally.no_reference:
        err_console.print(
            f"[warning]{pair_judge.name}: {tally.no_reference} pairs have no reference answer: not judged[/]"
        )
    if tally.stopped:
        err_console.print(f"[warning]{escape(pair_judge.name)}: {escape(tally.stopped)}[/]")


def _complete(manifest: ArenaManifest, journal: ArenaJournal) -> bool:
    from medcouncil.scenarios.arena.run import missing_answers, missing_judgements

    items = journal.items()
    if missing_answers(manifest, items, journal):
        return False
    return not any(missing_judgements(manifest, items, journal, j) for j in manifest.config.judges)


def _finish(directory: Path, anchor: str | None) -> None:
    from rich.table import Table

    from medcouncil.scenarios.arena.report import rating_rows, write_report

    try:
        md, page, found = write_report(directory, anchor)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    if not found:
        err_console.print("[warning]no judgement yet: nothing to rate[/]")
    for result in found:
        header, rows = rating_rows(result)
        table = Table(*header, title=f"judge: {result.judge}")
        for row in rows:
            table.add_row(*(str(cell) for cell in row))
        console.print(table)
        if result.consistency is not None and result.two_orders:
            console.print(f"position consistency: {result.consistency:.0%} of {result.judged} pairs")
    console.print(f"[notice]report: {escape(str(md))} · {escape(str(page))}[/]")

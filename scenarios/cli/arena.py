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
    EndpointOpt,
    LimitOpt,
    ModelConfigOpt,
    ModelOpt,
    NoCacheOpt,
    SeedOpt,
    StrictRowsOpt,
)
from medcouncil.serving.common.console import console, err_console
from medcouncil.serving.common.errors import ConfigError

if TYPE_CHECKING:
    from rich.progress import Progress

    from medcouncil.agents.arena_judge import PairJudge
    from medcouncil.agents.build import Answerers, CouncilFile
    from medcouncil.agents.protocol import Answerer
    from medcouncil.scenarios.arena.journal import ArenaConfig, ArenaJournal, ArenaManifest
    from medcouncil.serving.client import ClientSettings
    from medcouncil.serving.session import ModelSource

JUDGE_KEY_ENV = "MEDCOUNCIL_JUDGE_API_KEY"
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


def _new_manifest(
    items_source: str,
    contestants: list[str],
    pairs: str,
    judges: list[str],
    limit: int | None,
    seed: int,
    strict: bool,
    data_dir: Path | None,
    judge_model: str | None,
    judge_endpoint: str | None,
    out: Path,
) -> ArenaManifest:
    from importlib.metadata import version

    from pydantic import ValidationError

    from medcouncil.scenarios.arena.items import load_items
    from medcouncil.scenarios.arena.journal import ArenaConfig, ArenaJournal, ArenaManifest
    from medcouncil.scenarios.datasets.samples import MalformedRow, validation_reason

    try:
        config = ArenaConfig(
            source=items_source,
            limit=limit,
            contestants=[c for spec in contestants for c in spec.split(",")],
            pairs=_pairs(pairs),
            seed=seed,
            judges=judges,
            judge_model=judge_model,
            judge_endpoint=judge_endpoint,
        )
    except ValidationError as error:
        raise ConfigError(validation_reason(error)) from None
    try:
        items, skipped = load_items(items_source, limit, strict, data_dir)
    except MalformedRow as error:
        raise ConfigError(f"malformed row (--strict-rows): {error}") from None
    for row in skipped[:10]:
        err_console.print(f"[warning]skipped malformed row:[/] {escape(row)}", soft_wrap=True)
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


def arena(
    items: Annotated[str | None, typer.Option("--items", help=ITEMS_HELP)] = None,
    contestant: Annotated[
        list[str] | None,
        typer.Option(
            "--contestant",
            "-c",
            help="MODE or MODE@MODEL (a model or LoRA adapter on the same endpoint); repeatable or comma-separated. "
            "Modes: single, cot, council, panel, gated.",
        ),
    ] = None,
    pairs: Annotated[str, typer.Option(help="Pairs judged per item: 'all', or K drawn with --seed.")] = "all",
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
    endpoint: EndpointOpt = None,
    api_key: ApiKeyOpt = None,
    model: ModelOpt = None,
    model_config: ModelConfigOpt = None,
    no_cache: NoCacheOpt = False,
    council: CouncilOpt = None,
) -> None:
    """Rate answerers by pairwise judgement of their free-text answers (Bradley-Terry, bootstrap CIs)."""
    from medcouncil.scenarios.arena.journal import read_manifest
    from medcouncil.scenarios.bench.run import lock_run, slug
    from medcouncil.serving.session import ModelSource

    if resume is not None:
        read_manifest(resume)
        directory = resume
        lock_run(directory)
        manifest = read_manifest(directory)
        if judge:
            manifest.config.judges = list(dict.fromkeys([*manifest.config.judges, *judge]))
            manifest.config = type(manifest.config).model_validate(manifest.config.model_dump())
    else:
        if not items or not contestant:
            raise ConfigError("--items and at least two --contestant are needed (or --resume RUN)")
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        directory = out or Path("runs") / f"arena-{slug(items)}-{stamp}"
        lock_run(directory)
        if (directory / "arena.json").exists():
            raise ConfigError(f"{directory} already holds an arena run: continue it with --resume {directory}")
        manifest = _new_manifest(
            items, contestant, pairs, judge or ["model"], limit, seed, strict_rows, data_dir,
            judge_model, judge_endpoint, directory,
        )  # fmt: skip
    source = ModelSource.resolve(model_config, endpoint, api_key, model)
    from medcouncil.agents.build import council_file

    asyncio.run(_run(directory, manifest, source, not no_cache, council_file(council)))
    _finish(directory, anchor)


async def _run(
    directory: Path, manifest: ArenaManifest, source: ModelSource, cache: bool, council: CouncilFile | None
) -> None:
    from medcouncil.agents.build import open_answerers
    from medcouncil.scenarios.arena.journal import ArenaJournal, parse_contestant
    from medcouncil.scenarios.bench.modes import MODES, setting_for
    from medcouncil.serving.client import ClientSettings
    from medcouncil.serving.session import ModelSource

    journal = ArenaJournal(directory)
    config = manifest.config
    settings = ClientSettings(cache=cache)
    async with AsyncExitStack() as stack:
        primary = await stack.enter_async_context(open_answerers(source, settings, council=council))
        config.bind(
            primary.model.name,
            primary.model.info.base_url,
            primary.config.model_dump(),
            directory,
            primary.model.shapes,
        )
        journal.write_manifest(manifest)
        by_model: dict[str | None, Answerers] = {None: primary}
        contestants: dict[str, Answerer] = {}
        for spec in config.contestants:
            mode, name = parse_contestant(spec)
            if name not in by_model:
                other = ModelSource(
                    endpoint=primary.model.info.base_url, api_key=primary.model.info.api_key, model=name
                )
                by_model[name] = await stack.enter_async_context(open_answerers(other, settings, council=council))
            contestants[spec] = MODES[mode].build(setting_for(by_model[name]))
        try:
            await _answer(manifest, journal, contestants)
            judges = await _judges(stack, config.judges, config, primary, settings)
            for pair_judge in judges:
                await _judge(manifest, journal, pair_judge)
        finally:
            journal.close()
            manifest.finished = _complete(manifest, journal)
            journal.write_manifest(manifest)


async def _judges(
    stack: AsyncExitStack, names: list[str], config: ArenaConfig, primary: Answerers, settings: ClientSettings
) -> list[PairJudge]:
    from medcouncil.agents.arena_judge import ModelJudge, ReferenceJudge
    from medcouncil.scenarios.arena.human import HumanJudge
    from medcouncil.serving.session import ModelSource, open_model

    made: list[PairJudge] = []
    for name in names:
        if name == "reference":
            made.append(ReferenceJudge())
        elif name == "human":
            made.append(HumanJudge(config.seed, input, err_console))
        elif config.judge_endpoint or config.judge_model:
            endpoint = config.judge_endpoint or primary.model.info.base_url
            key = os.environ.get(JUDGE_KEY_ENV) or (None if config.judge_endpoint else primary.model.info.api_key)
            other = ModelSource(endpoint=endpoint, api_key=key, model=config.judge_model)
            made.append(ModelJudge(await stack.enter_async_context(open_model(other, settings)), name="model"))
        else:
            made.append(ModelJudge(primary.model, name="model"))
    return made


def _progress() -> Progress:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    return Progress(*columns, console=err_console, transient=False)


async def _answer(manifest: ArenaManifest, journal: ArenaJournal, contestants: dict[str, Answerer]) -> None:
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
    for result in found:
        header, rows = rating_rows(result)
        table = Table(*header, title=f"judge: {result.judge}")
        for row in rows:
            table.add_row(*(str(cell) for cell in row))
        console.print(table)
        if result.consistency is not None and result.two_orders:
            console.print(f"position consistency: {result.consistency:.0%} of {result.judged} pairs")
    console.print(f"[notice]report: {escape(str(md))} · {escape(str(page))}[/]")

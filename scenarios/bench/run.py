"""Running MCQA benchmark requests: new and resumed runs, the lock on a run folder, the harness with its progress
bar, and the printed summary."""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING

from rich.markup import escape

from medcouncil.scenarios.bench.modes import MODES, build, needs, setting_for
from medcouncil.serving.common.console import console, err_console
from medcouncil.serving.common.errors import ConfigError, EndpointUnreachableError, MedcouncilError, first_line

if TYPE_CHECKING:
    from medcouncil.agents.build import Answerers, CouncilFile
    from medcouncil.agents.protocol import ChatModel
    from medcouncil.scenarios.bench.journal import Manifest
    from medcouncil.scenarios.bench.report import Run
    from medcouncil.scenarios.datasets.registry import Selection
    from medcouncil.scenarios.datasets.samples import Sample
    from medcouncil.serving.session import ModelSource


REFERENCE_SUITE = [
    ("KorMedMCQA dentist", "kormedmcqa", "dentist"),
    ("KorMedMCQA doctor", "kormedmcqa", "doctor"),
    ("KorMedMCQA nurse", "kormedmcqa", "nurse"),
    ("KorMedMCQA pharm", "kormedmcqa", "pharm"),
    ("MedQA 5 options", "medqa5", None),
    ("MedQA 4 options", "medqa", None),
]
"""The reference Korean MedGemma setup's table: its rows, in its order."""


SUITES = {"reference": REFERENCE_SUITE}


@dataclass(frozen=True)
class Answering:
    """Who answers a run and how it persists (the model and persistence blocks of the options, ranges checked by
    them): shared by the MCQA and the episode benchmark."""

    source: ModelSource
    cache: bool = True
    """Answers may come from the response cache (``--no-cache``: False)."""
    council: CouncilFile | None = None
    concurrency: int = 1
    retries: int = 2
    backoff: float = 2.0
    give_up_after: int = 8


@dataclass
class RunRequest:
    """One run to do: a new one (dataset + options) or a resumed one (its manifest)."""

    directory: Path
    manifest: Manifest
    samples: list[Sample]


def lock_run(directory: Path) -> None:
    """One writer per run folder, held until this process exits (a second ``bench`` on it is an error)."""
    from medcouncil.serving.common.locks import acquire

    acquire(directory / ".lock", f"the run folder {directory}")


def new_run(directory: Path, selection: Selection, config: dict[str, object], label: str = "") -> RunRequest:
    """A new run of ``selection`` in ``directory`` (locked; refused when it already holds a run)."""
    from medcouncil.scenarios.bench.journal import Manifest, RunConfig
    from medcouncil.scenarios.datasets.ids import print_renamed
    from medcouncil.scenarios.datasets.samples import MalformedRow, print_skipped

    selection.mapping()  # checked before the run folder is made
    lock_run(directory)
    if (directory / "run.json").exists():
        raise ConfigError(f"{directory} already holds a run: continue it with --resume {directory}")
    try:
        chosen, info = selection.load()
    except MalformedRow as error:
        raise ConfigError(f"malformed row (--strict-rows): {error}") from None
    print_skipped(info.skipped_rows, info.skipped)
    print_renamed(info.renamed_ids)
    if not chosen:
        raise ConfigError(f"{selection.dataset}: no valid items")
    run_config = RunConfig.model_validate({**config, "limit": selection.limit, "fields": selection.fields})
    manifest = Manifest(
        medcouncil_version=version("medcouncil"),
        dataset=info,
        config=run_config,
        sample_ids=[s.id for s in chosen],
        label=label,
    )
    return RunRequest(directory, manifest, chosen)


def resumed_run(directory: Path, data_root: Path | None) -> RunRequest:
    """Raises: ConfigError: no run there, or its dataset changed since."""
    from medcouncil.scenarios.bench.journal import read_manifest
    from medcouncil.scenarios.datasets.generic import FieldMap
    from medcouncil.scenarios.datasets.registry import load_dataset

    read_manifest(directory)  # a folder that holds no run is refused before anything (a lock file) is written in it
    lock_run(directory)
    manifest = read_manifest(directory)
    data, fields = manifest.dataset, manifest.config.fields
    samples, info = load_dataset(
        data.dataset, data.subset, data.split, FieldMap.parse(fields) if fields else None, False, data_root
    )
    if info.fingerprint != data.fingerprint:
        raise ConfigError(
            f"{data.source}: the dataset changed since the run started (fingerprint differs): start a new run"
        )
    by_id = {s.id: s for s in samples}
    return RunRequest(directory, manifest, [by_id[i] for i in manifest.sample_ids])


CLOZE_PROBE = ("Question: What colour is a clear daytime sky?\nAnswer:", {"A": "blue", "B": "green"})
"""Scored once before a run with a cloze mode: an engine that cannot score options says so before any item, not as
an error on every item."""


async def check_cloze(model: ChatModel, asked: str = "--debias cloze") -> None:
    """Raises: ConfigError: the engine cannot score options by cloze (its reason, naming it, after ``asked``: the
    option that needs it)."""
    try:
        await model.cloze(*CLOZE_PROBE)
    except EndpointUnreachableError:
        raise  # said as it is: the server is not there
    except MedcouncilError as error:
        raise ConfigError(f"{asked}: {first_line(error)}") from error


async def execute(request: RunRequest, answerers: Answerers, answering: Answering) -> Run:
    """Run what is missing from the journal, with a progress bar; the manifest and report are written at the end."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from medcouncil.agents.protocol import Answerer
    from medcouncil.scenarios.bench.harness import Harness, prepare
    from medcouncil.scenarios.bench.journal import Journal, read_errors, read_records
    from medcouncil.scenarios.bench.report import Run, write_report
    from medcouncil.scenarios.bench.summary import summarize

    manifest, config = request.manifest, request.manifest.config
    journal = Journal(request.directory)
    journal.write_manifest(manifest)

    items = [prepare(sample, config.seed, config.shuffle_choices) for sample in request.samples]
    estimator = None
    if needs(config.modes, "prior"):
        from medcouncil.agents.baselines import PriorEstimator
        from medcouncil.agents.council import SingleModel

        estimator = PriorEstimator(SingleModel(answerers.model), [item.question for item in items], seed=config.seed)

    if methods := [MODES[m].debias or m for m in config.modes if needs([m], "cloze")]:
        await check_cloze(answerers.model, "--debias " + ",".join(methods))

    def per_worker() -> dict[str, Answerer]:
        return build(setting_for(answerers, config.threshold, config.sc_k, estimator), config.modes)

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=err_console, transient=False) as progress:
        task = progress.add_task("starting", total=len(items) * len(config.modes))
        harness = Harness(
            journal,
            config.modes,
            per_worker,
            concurrency=answering.concurrency,
            retries=answering.retries,
            backoff_s=answering.backoff,
            give_up_after=answering.give_up_after,
        )

        def advance(record: object) -> None:
            progress.update(task, advance=1, description=harness.tally.describe(config.modes))

        harness.on_record = advance
        pending = harness.pending(items)
        progress.update(task, completed=harness.tally.resumed, description=harness.tally.describe(config.modes))
        if harness.tally.resumed:
            err_console.print(
                f"[notice]resuming: {harness.tally.resumed} answers already journaled, "
                f"{sum(len(m) for _, m in pending)} to go[/]"
            )
        try:
            await harness.run(pending)
        finally:
            journal.close()
    records = read_records(request.directory)
    summary = summarize(manifest, records, read_errors(request.directory))
    manifest.finished = summary.pending == 0 and summary.errors == 0
    manifest.summary = summary.model_dump(include={"items", "pending", "errors", "skipped_rows"})
    journal.write_manifest(manifest)
    run = Run(manifest, records, summary)
    write_report(request.directory, run)
    if harness.aborted:
        err_console.print(f"[error]stopped early:[/] {escape(harness.aborted)}")
    return run


def print_summary(directory: Path, run: Run) -> int:
    """Print the results table; the number of item × mode pairs not scored (errors + pending)."""
    from rich.table import Table

    from medcouncil.scenarios.bench.report import result_rows

    manifest, summary = run.manifest, run.summary
    _, rows = result_rows(summary)
    header = ["mode", "subset", "n", "acc%", "95% CI", "F1", "inv", "err", "tok/q", "calls/q", "s/q", "esc"]
    title = f"{manifest.label or manifest.dataset.dataset} · {summary.items} items"
    # A narrow console (80 columns when output is not a terminal: CI logs, pipes) gets quality and cost as two
    # tables that fit, instead of one table with every header cut short.
    parts = [range(len(header))] if console.width >= 120 else [range(8), [0, 1, *range(8, len(header))]]
    for number, columns in enumerate(parts):
        table = Table(*(header[i] for i in columns), title=title if number == 0 else None)
        for row in rows:
            table.add_row(*(str(row[i]) for i in columns))
        console.print(table)
    for pair in summary.paired:
        console.print(
            f"{pair.first} vs {pair.second}: {pair.only_first} vs {pair.only_second} discordant, "
            f"McNemar p = {pair.p_value:.3g} (n = {pair.n})"
        )
    if summary.errors or summary.pending:
        where = escape(str(directory))
        err_console.print(
            f"[error]{summary.errors} errors and {summary.pending} pending item×mode pairs were not "
            f"scored[/]: finish them with medcouncil bench --resume {where}"
        )
    console.print(
        f"[notice]report: {escape(str(directory / 'report.md'))} · {escape(str(directory / 'report.html'))}[/]"
    )
    return summary.errors + summary.pending


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", Path(text).stem.lower() if "/" in text or "." in text else text.lower()).strip(
        "-"
    )


async def open_and_run(requests: list[RunRequest], answering: Answering, model_card: Path | None = None) -> list[Run]:
    """Every request answered by one model (opened once), each checked for training-data overlap first."""
    from medcouncil.agents.build import open_answerers
    from medcouncil.serving.components import ClientSettings

    runs: list[Run] = []
    settings = ClientSettings(cache=answering.cache)
    async with open_answerers(answering.source, settings, council=answering.council) as answerers:
        for request in requests:
            config = request.manifest.config
            model = answerers.model
            config.bind(model.name, model.endpoints, answerers.config.model_dump(), request.directory, model.shapes)
            card = model_card or (Path(answerers.model.info.adapter_dir) if answerers.model.info.adapter_dir else None)
            if card is not None:
                from medcouncil.scenarios.training.leakage import check

                request.manifest.training = check(card, request.samples)
                if request.manifest.training.overlapping or request.manifest.training.note:
                    err_console.print(
                        f"[warning]warning: {escape(request.manifest.training.warning())}[/]", soft_wrap=True
                    )
            runs.append(await execute(request, answerers, answering))
    return runs

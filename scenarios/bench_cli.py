"""``medcouncil bench`` and ``medcouncil report``: run the agent-vs-single benchmark and report on it."""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from medcouncil.scenarios.episodes_cli import JUDGE_KEY_ENV
from medcouncil.scenarios.modes import MODES, build, debias_modes, episode_modes, help_text, needs, setting_for
from medcouncil.serving.console import console, err_console
from medcouncil.serving.errors import ConfigError, MedcouncilError
from medcouncil.serving.options import ApiKeyOpt, CouncilOpt, EndpointOpt, ModelConfigOpt, ModelOpt, NoCacheOpt

if TYPE_CHECKING:
    from medcouncil.agents.build import Answerers, CouncilFile
    from medcouncil.scenarios.journal import Manifest
    from medcouncil.scenarios.report import Run
    from medcouncil.scenarios.samples import Sample
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


@dataclass
class RunRequest:
    """One run to do: a new one (dataset + options) or a resumed one (its manifest)."""

    directory: Path
    manifest: Manifest
    samples: list[Sample]


def lock_run(directory: Path) -> None:
    """One writer per run folder, held until this process exits (a second ``bench`` on it is an error)."""
    from medcouncil.serving.locks import acquire

    acquire(directory / ".lock", f"the run folder {directory}")


def new_run(
    directory: Path,
    dataset: str,
    subset: str | None,
    split: str | None,
    limit: int | None,
    fields: str | None,
    strict: bool,
    data_root: Path | None,
    config: dict[str, object],
    label: str = "",
) -> RunRequest:
    from medcouncil.scenarios.datasets.generic import FieldMap
    from medcouncil.scenarios.journal import Manifest, RunConfig
    from medcouncil.scenarios.registry import load_dataset
    from medcouncil.scenarios.samples import MalformedRow

    mapping = FieldMap.parse(fields) if fields else None  # checked before the run folder is made
    lock_run(directory)
    if (directory / "run.json").exists():
        raise ConfigError(f"{directory} already holds a run: continue it with --resume {directory}")
    try:
        samples, info = load_dataset(dataset, subset, split, mapping, strict, data_root)
    except MalformedRow as error:
        raise ConfigError(f"malformed row (--strict-rows): {error}") from None
    for row in info.skipped_rows[:10]:
        err_console.print(f"[warning]skipped malformed row:[/] {escape(str(row))}", soft_wrap=True)
    if info.skipped > 10:
        err_console.print(f"[warning]… and {info.skipped - 10} more malformed rows skipped[/]")
    if info.renamed_ids:
        shown = ", ".join(info.renamed_ids[:5]) + (" …" if len(info.renamed_ids) > 5 else "")
        err_console.print(f"[warning]{len(info.renamed_ids)} items repeat an earlier item's id: renamed "
                          f"{escape(shown)}[/]", soft_wrap=True)  # fmt: skip
    if not samples:
        raise ConfigError(f"{dataset}: no valid items")
    chosen = samples[:limit] if limit else samples
    run_config = RunConfig.model_validate({**config, "limit": limit, "fields": fields})
    manifest = Manifest(medcouncil_version=version("medcouncil"), dataset=info, config=run_config,
                        sample_ids=[s.id for s in chosen], label=label)  # fmt: skip
    return RunRequest(directory, manifest, chosen)


def resumed_run(directory: Path, data_root: Path | None) -> RunRequest:
    """Raises: ConfigError: no run there, or its dataset changed since."""
    from medcouncil.scenarios.datasets.generic import FieldMap
    from medcouncil.scenarios.journal import read_manifest
    from medcouncil.scenarios.registry import load_dataset

    read_manifest(directory)  # a folder that holds no run is refused before anything (a lock file) is written in it
    lock_run(directory)
    manifest = read_manifest(directory)
    data, fields = manifest.dataset, manifest.config.fields
    samples, info = load_dataset(data.dataset, data.subset, data.split, FieldMap.parse(fields) if fields else None,
                                 False, data_root)  # fmt: skip
    if info.fingerprint != data.fingerprint:
        raise ConfigError(f"{data.source}: the dataset changed since the run started (fingerprint differs): "
                          "start a new run")  # fmt: skip
    by_id = {s.id: s for s in samples}
    return RunRequest(directory, manifest, [by_id[i] for i in manifest.sample_ids])


async def execute(request: RunRequest, answerers: Answerers, concurrency: int, retries: int, backoff: float = 2.0,
                  give_up_after: int = 8) -> Run:  # fmt: skip
    """Run what is missing from the journal, with a progress bar; the manifest and report are written at the end."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from medcouncil.agents.protocol import Answerer
    from medcouncil.scenarios.bench import Harness, prepare
    from medcouncil.scenarios.journal import Journal, read_errors, read_records
    from medcouncil.scenarios.report import Run, write_report
    from medcouncil.scenarios.summary import summarize

    manifest, config = request.manifest, request.manifest.config
    journal = Journal(request.directory)
    journal.write_manifest(manifest)

    items = [prepare(sample, config.seed, config.shuffle_choices) for sample in request.samples]
    estimator = None
    if needs(config.modes, "prior"):
        from medcouncil.agents.baselines import PriorEstimator
        from medcouncil.agents.council import SingleModel

        estimator = PriorEstimator(SingleModel(answerers.model), [item.question for item in items], seed=config.seed)

    def per_worker() -> dict[str, Answerer]:
        return build(setting_for(answerers, config.threshold, config.sc_k, estimator), config.modes)

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=err_console, transient=False) as progress:
        task = progress.add_task("starting", total=len(items) * len(config.modes))
        harness = Harness(journal, config.modes, per_worker, concurrency=concurrency, retries=retries,
                          backoff_s=backoff, give_up_after=give_up_after)  # fmt: skip

        def advance(record: object) -> None:
            progress.update(task, advance=1, description=harness.tally.describe(config.modes))

        harness.on_record = advance
        pending = harness.pending(items)
        progress.update(task, completed=harness.tally.resumed, description=harness.tally.describe(config.modes))
        if harness.tally.resumed:
            err_console.print(f"[notice]resuming: {harness.tally.resumed} answers already journaled, "
                              f"{sum(len(m) for _, m in pending)} to go[/]")  # fmt: skip
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

    from medcouncil.scenarios.report import result_rows

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
        console.print(f"{pair.first} vs {pair.second}: {pair.only_first} vs {pair.only_second} discordant, "
                      f"McNemar p = {pair.p_value:.3g} (n = {pair.n})")  # fmt: skip
    if summary.errors or summary.pending:
        where = escape(str(directory))
        err_console.print(f"[error]{summary.errors} errors and {summary.pending} pending item×mode pairs were not "
                          f"scored[/]: finish them with medcouncil bench --resume {where}")  # fmt: skip
    console.print(
        f"[notice]report: {escape(str(directory / 'report.md'))} · {escape(str(directory / 'report.html'))}[/]"
    )
    return summary.errors + summary.pending


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", Path(text).stem.lower() if "/" in text or "." in text else text.lower()).strip(
        "-"
    )


async def _open_and_run(requests: list[RunRequest], source: ModelSource, no_cache: bool, council: CouncilFile | None,
                        concurrency: int, retries: int, backoff: float, give_up_after: int,
                        model_card: Path | None = None) -> list[Run]:  # fmt: skip
    from medcouncil.agents.build import open_answerers
    from medcouncil.serving.client import ClientSettings

    runs: list[Run] = []
    async with open_answerers(source, ClientSettings(cache=not no_cache), council=council) as answerers:
        for request in requests:
            config = request.manifest.config
            config.bind(
                answerers.model.name, answerers.model.info.base_url, answerers.config.model_dump(), request.directory
            )
            card = model_card or (Path(answerers.model.info.adapter_dir) if answerers.model.info.adapter_dir else None)
            if card is not None:
                from medcouncil.scenarios.leakage import check

                request.manifest.training = check(card, request.samples)
                if request.manifest.training.overlapping or request.manifest.training.note:
                    err_console.print(f"[warning]warning: {escape(request.manifest.training.warning())}[/]",
                                      soft_wrap=True)  # fmt: skip
            runs.append(await execute(request, answerers, concurrency, retries, backoff, give_up_after))
    return runs


FIELDS_HELP = (
    "Field mapping of a file in no known format: 'question=stem;options=opt1,opt2,opt3;answer=correct' plus optional "
    "'answer_format=letter|index0|index1|text', 'id=qid', 'subset=subject'. Without it, common names are guessed "
    "and the guess printed."
)
FieldsOpt = Annotated[str | None, typer.Option(help=FIELDS_HELP)]


def bench(
    dataset: Annotated[str | None, typer.Option(help="Registered name, HF dataset id (owner/name) or path.")] = None,
    subset: Annotated[str | None, typer.Option(help="KorMedMCQA exam, MedQA step, MMLU subject, HF config.")] = None,
    split: Annotated[str | None, typer.Option(help="HF split (default: the dataset's test split).")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="The first N items.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of --shuffle-choices and the bootstrap.")] = 0,
    shuffle_choices: Annotated[bool, typer.Option(help="Shuffle options per item (seeded, recorded).")] = False,
    mode: Annotated[
        str,
        typer.Option(help=f"Comma-separated modes: {help_text()}. Episodes: {', '.join(episode_modes())}."),
    ] = "single,council",
    sc_k: Annotated[int, typer.Option(min=1, help="Self-consistency (sc) samples per item.")] = 2,
    debias: Annotated[
        str | None,
        typer.Option(help=f"Comma-separated, adds the debiased single model: {', '.join(debias_modes())}."),
    ] = None,
    concurrency: Annotated[int, typer.Option(min=1, help="Items answered at once.")] = 1,
    threshold: Annotated[float, typer.Option(min=0, max=1, help="Gated: convene below this top probability.")] = 0.6,
    out: Annotated[Path | None, typer.Option(help="Run folder (default: ./runs/DATASET-TIME).")] = None,
    resume: Annotated[Path | None, typer.Option(help="Finish a run folder (after a kill or errors).")] = None,
    suite: Annotated[str | None, typer.Option(help="'reference': KorMedMCQA ×4 and MedQA 5/4-option table.")] = None,
    fields: FieldsOpt = None,
    strict_rows: Annotated[bool, typer.Option(help="A malformed row stops the run.")] = False,
    retries: Annotated[int, typer.Option(min=0, help="Retries of a failed item (with backoff).")] = 2,
    backoff: Annotated[float, typer.Option(min=0, help="Seconds before the first retry; doubles each time.")] = 2.0,
    give_up_after: Annotated[int, typer.Option(min=1, help="Stop after this many items fail in a row.")] = 8,
    data_dir: Annotated[Path | None, typer.Option(help="Where registered datasets live (MEDCOUNCIL_DATA_DIR).")] = None,
    endpoint: EndpointOpt = None,
    api_key: ApiKeyOpt = None,
    model: ModelOpt = None,
    model_config: ModelConfigOpt = None,
    no_cache: NoCacheOpt = False,
    council: CouncilOpt = None,
    model_card: Annotated[
        Path | None,
        typer.Option(
            help="A fine-tuned model's folder or run.json: warn if it was "
            "trained on these items (default: the served adapter's)."
        ),
    ] = None,
    episodes: Annotated[
        str | None,
        typer.Option(
            help="Play patient episodes: an episode file (AgentClinic, "
            "NEJM-style, cases JSONL), 'agentclinic', or a dataset."
        ),
    ] = None,
    budget: Annotated[int, typer.Option(min=1, help="Episodes: actions before the doctor must commit.")] = 8,
    patient: Annotated[str, typer.Option(help="Episodes: the patient is a lookup or the model.")] = "lookup",
    static: Annotated[bool, typer.Option(help="Episodes: also answer cases with options statically.")] = True,
    judge_endpoint: Annotated[
        str | None, typer.Option(help=f"Episodes: a judge model's URL (key: {JUDGE_KEY_ENV}).")
    ] = None,
    judge_model: Annotated[str | None, typer.Option(help="Episodes: the judge endpoint's model name.")] = None,
) -> None:
    """Benchmark the council against the single model on MCQA or patient episodes (--episodes); every answer
    journaled, resumable, then a report."""
    from medcouncil.agents.build import council_file
    from medcouncil.scenarios.episodes_cli import bench_episodes, read_episode_manifest
    from medcouncil.scenarios.report import SUITE, write_report
    from medcouncil.serving.session import ModelSource

    modes = [m.strip() for m in mode.split(",") if m.strip()]
    if episodes is not None or (resume is not None and read_episode_manifest(resume) is not None):
        council_config = council_file(council)
        unscored = bench_episodes(episodes, resume, out, modes, limit, budget, patient, static, threshold,
                                  judge_endpoint, judge_model, strict_rows, data_dir,
                                  ModelSource.resolve(model_config, endpoint, api_key, model), no_cache, council_config,
                                  concurrency, retries, backoff, give_up_after)  # fmt: skip
        if unscored:
            raise typer.Exit(1)
        return
    debiased = debias_modes()
    for method in filter(None, (m.strip() for m in (debias or "").split(","))):
        if method not in debiased:
            raise ConfigError(f"--debias {method!r}: choose {' or '.join(debiased)}")
        modes.append(debiased[method])
    if not modes or set(modes) - set(MODES):
        raise ConfigError(f"--mode {mode!r}: choose from {', '.join(MODES)}")
    config: dict[str, object] = {"modes": modes, "seed": seed, "shuffle_choices": shuffle_choices,
                                 "threshold": threshold, "sc_k": sc_k, "cache": not no_cache}  # fmt: skip
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    requests: list[RunRequest] = []
    suite_dir: Path | None = None
    if resume is not None:
        if (resume / SUITE).exists():
            requests = [resumed_run(d, data_dir) for d in sorted(resume.iterdir()) if (d / "run.json").exists()]
            suite_dir = resume
        else:
            requests = [resumed_run(resume, data_dir)]
    elif suite is not None:
        if suite not in SUITES:
            raise ConfigError(f"--suite {suite!r}: choose from {', '.join(SUITES)}")
        suite_dir = out or Path("runs") / f"{suite}-{stamp}"
        suite_dir.mkdir(parents=True, exist_ok=True)
        entries = []
        for label, name, part in SUITES[suite]:
            folder = _slug(label)
            note = ""
            try:
                requests.append(new_run(suite_dir / folder, name, part, split, limit, None, strict_rows, data_dir,
                                        config, label))  # fmt: skip
            except MedcouncilError as error:
                note = f"not run: {str(error).splitlines()[0]}"
                err_console.print(f"[warning]{escape(label)}: {escape(note)}[/]", soft_wrap=True)
            entries.append({"label": label, "dir": folder, "note": note})
        (suite_dir / SUITE).write_text(json.dumps({"suite": suite, "modes": modes, "runs": entries}, indent=2))
    else:
        if dataset is None:
            raise ConfigError("--dataset is required (or --suite reference, or --resume DIR)")
        directory = out or Path("runs") / f"{_slug(dataset)}-{stamp}"
        requests = [new_run(directory, dataset, subset, split, limit, fields, strict_rows, data_dir, config)]
    if resume is not None and requests:
        saved = {request.manifest.config.cache for request in requests}
        if no_cache and True in saved:
            raise ConfigError(f"{resume} was run with the response cache: resume it without --no-cache (cold answers "
                              "and cache hits would mix in one report)")  # fmt: skip
        no_cache = False in saved  # a cold run stays cold when resumed
    source = ModelSource.resolve(model_config, endpoint, api_key, model)
    runs: list[Run] = []
    try:
        if requests:
            runs = asyncio.run(_open_and_run(requests, source, no_cache, council_file(council), concurrency, retries,
                                             backoff, give_up_after, model_card))  # fmt: skip
    except KeyboardInterrupt:
        where = suite_dir or (requests[0].directory if requests else "")
        err_console.print(f"[warning]interrupted: every finished answer is journaled; continue with "
                          f"medcouncil bench --resume {escape(str(where))}[/]")  # fmt: skip
        raise
    unscored = sum(print_summary(request.directory, run) for request, run in zip(requests, runs, strict=True))
    if suite_dir is not None:
        md_path, _ = write_report(suite_dir)
        console.print(md_path.read_text(encoding="utf-8"), markup=False)
        console.print(f"[notice]reference table: {escape(str(md_path))}[/]")
    if unscored:
        raise typer.Exit(1)


def report(
    directory: Annotated[Path, typer.Argument(metavar="DIR", help="A run (or suite) folder of medcouncil bench.")],
) -> None:
    """Write DIR/report.md and DIR/report.html (tables, accuracy-vs-tokens plot, per-item transcripts)."""
    from medcouncil.scenarios.report import SUITE, load_run, write_report

    if (directory / SUITE).exists():
        md_path, html_path = write_report(directory)
        console.print(md_path.read_text(encoding="utf-8"), markup=False)
    else:
        run = load_run(directory)
        md_path, html_path = write_report(directory, run)
        print_summary(directory, run)
    console.print(f"[notice]wrote {escape(str(md_path))} and {escape(str(html_path))}[/]")

"""``medcouncil bench`` and ``medcouncil report``: run the agent-vs-single benchmark and report on it."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from medcouncil.scenarios.bench.modes import MODES, debias_modes, episode_modes, help_text
from medcouncil.scenarios.bench.run import (
    SUITES,
    Answering,
    RunRequest,
    new_run,
    open_and_run,
    print_summary,
    resumed_run,
    slug,
)
from medcouncil.scenarios.cli.options import (
    ApiKeyOpt,
    BackoffOpt,
    ConcurrencyOpt,
    CouncilOpt,
    DataDirOpt,
    DatasetOpt,
    EndpointsOpt,
    FieldsOpt,
    GiveUpAfterOpt,
    LimitOpt,
    ModelConfigOpt,
    ModelOpt,
    NoCacheOpt,
    RetriesOpt,
    SeedOpt,
    SplitOpt,
    StrictRowsOpt,
    SubsetOpt,
)
from medcouncil.scenarios.episodes.run import JUDGE_KEY_ENV
from medcouncil.serving.common.console import console, err_console
from medcouncil.serving.common.errors import ConfigError, MedcouncilError, first_line

if TYPE_CHECKING:
    from medcouncil.scenarios.bench.report import Run
    from medcouncil.scenarios.datasets.registry import Selection


def bench(
    dataset: DatasetOpt = None,
    subset: SubsetOpt = None,
    split: SplitOpt = None,
    limit: LimitOpt = None,
    seed: SeedOpt = 0,
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
    concurrency: ConcurrencyOpt = 1,
    threshold: Annotated[float, typer.Option(min=0, max=1, help="Gated: convene below this top probability.")] = 0.6,
    out: Annotated[Path | None, typer.Option(help="Run folder (default: ./runs/DATASET-TIME).")] = None,
    resume: Annotated[Path | None, typer.Option(help="Finish a run folder (after a kill or errors).")] = None,
    suite: Annotated[str | None, typer.Option(help="'reference': KorMedMCQA ×4 and MedQA 5/4-option table.")] = None,
    fields: FieldsOpt = None,
    strict_rows: StrictRowsOpt = False,
    retries: RetriesOpt = 2,
    backoff: BackoffOpt = 2.0,
    give_up_after: GiveUpAfterOpt = 8,
    data_dir: DataDirOpt = None,
    endpoint: EndpointsOpt = None,
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
    from medcouncil.scenarios.datasets.registry import Selection
    from medcouncil.scenarios.episodes.run import EpisodeRequest, bench_episodes, read_episode_manifest
    from medcouncil.serving.session import ModelSource

    # The council file is read where it always was: before an episode run, and before an MCQA run's model opens
    # (after its runs are prepared), so the same mistake gets the same message first.
    answering = Answering(
        ModelSource.resolve(model_config, endpoint, api_key, model),
        not no_cache,
        None,
        concurrency,
        retries,
        backoff,
        give_up_after,
    )
    modes = [m.strip() for m in mode.split(",") if m.strip()]
    if episodes is not None or (resume is not None and read_episode_manifest(resume) is not None):
        answering = replace(answering, council=council_file(council))
        request = EpisodeRequest(
            episodes,
            resume,
            out,
            modes,
            limit,
            budget,
            patient,
            static,
            threshold,
            judge_endpoint,
            judge_model,
            strict_rows,
            data_dir,
        )
        if bench_episodes(request, answering):
            raise typer.Exit(1)
        return
    debiased = debias_modes()
    for method in filter(None, (m.strip() for m in (debias or "").split(","))):
        if method not in debiased:
            raise ConfigError(f"--debias {method!r}: choose {' or '.join(debiased)}")
        modes.append(debiased[method])
    if not modes or set(modes) - set(MODES):
        raise ConfigError(f"--mode {mode!r}: choose from {', '.join(MODES)}")
    config: dict[str, object] = {
        "modes": modes,
        "seed": seed,
        "shuffle_choices": shuffle_choices,
        "threshold": threshold,
        "sc_k": sc_k,
        "cache": not no_cache,
    }
    selection = Selection(
        dataset=dataset or "",
        subset=subset,
        split=split,
        limit=limit,
        fields=fields,
        strict=strict_rows,
        data_dir=data_dir,
    )
    if _bench_mcqa(selection, config, answering, resume, suite, out, model_card, council):
        raise typer.Exit(1)


def _requests(
    selection: Selection, config: dict[str, object], resume: Path | None, suite: str | None, out: Path | None
) -> tuple[list[RunRequest], Path | None]:
    """The MCQA runs to do (resumed, a suite's, or one new run) and the suite folder, if any."""
    from medcouncil.scenarios.bench.report import SUITE

    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    if resume is not None:
        if (resume / SUITE).exists():
            runs = [d for d in sorted(resume.iterdir()) if (d / "run.json").exists()]
            return [resumed_run(d, selection.data_dir) for d in runs], resume
        return [resumed_run(resume, selection.data_dir)], None
    if suite is not None:
        if suite not in SUITES:
            raise ConfigError(f"--suite {suite!r}: choose from {', '.join(SUITES)}")
        suite_dir = out or Path("runs") / f"{suite}-{stamp}"
        suite_dir.mkdir(parents=True, exist_ok=True)
        requests, entries = [], []
        for label, name, part in SUITES[suite]:
            folder = slug(label)
            note = ""
            try:
                chosen = selection.model_copy(update={"dataset": name, "subset": part, "fields": None})
                requests.append(new_run(suite_dir / folder, chosen, config, label))
            except MedcouncilError as error:
                note = f"not run: {first_line(error)}"
                err_console.print(f"[warning]{escape(label)}: {escape(note)}[/]", soft_wrap=True)
            entries.append({"label": label, "dir": folder, "note": note})
        suite_file = {"suite": suite, "modes": config["modes"], "runs": entries}
        (suite_dir / SUITE).write_text(json.dumps(suite_file, indent=2))
        return requests, suite_dir
    if not selection.dataset:
        raise ConfigError("--dataset is required (or --suite reference, or --resume DIR)")
    directory = out or Path("runs") / f"{slug(selection.dataset)}-{stamp}"
    return [new_run(directory, selection, config)], None


def _bench_mcqa(
    selection: Selection,
    config: dict[str, object],
    answering: Answering,
    resume: Path | None,
    suite: str | None,
    out: Path | None,
    model_card: Path | None,
    council: Path | None = None,
) -> int:
    """Run (or resume) MCQA runs, print their summaries; the number of item × mode pairs left unscored."""
    from medcouncil.scenarios.bench.report import write_report

    requests, suite_dir = _requests(selection, config, resume, suite, out)
    if resume is not None and requests:
        saved = {request.manifest.config.cache for request in requests}
        if not answering.cache and True in saved:
            raise ConfigError(
                f"{resume} was run with the response cache: resume it without --no-cache (cold answers "
                "and cache hits would mix in one report)"
            )
        answering = replace(answering, cache=False not in saved)  # a cold run stays cold when resumed
    runs: list[Run] = []
    try:
        if requests:
            from medcouncil.agents.build import council_file

            answering = replace(answering, council=council_file(council))
            runs = asyncio.run(open_and_run(requests, answering, model_card))
    except KeyboardInterrupt:
        where = suite_dir or (requests[0].directory if requests else "")
        err_console.print(
            f"[warning]interrupted: every finished answer is journaled; continue with "
            f"medcouncil bench --resume {escape(str(where))}[/]"
        )
        raise
    unscored = sum(print_summary(request.directory, run) for request, run in zip(requests, runs, strict=True))
    if suite_dir is not None:
        md_path, _ = write_report(suite_dir)
        console.print(md_path.read_text(encoding="utf-8"), markup=False)
        console.print(f"[notice]reference table: {escape(str(md_path))}[/]")
    return unscored


def report(
    directory: Annotated[Path, typer.Argument(metavar="DIR", help="A run (or suite) folder of medcouncil bench.")],
) -> None:
    """Write DIR/report.md and DIR/report.html (tables, accuracy-vs-tokens plot, per-item transcripts)."""
    from medcouncil.scenarios.bench.report import SUITE, load_run, write_report

    if (directory / SUITE).exists():
        md_path, html_path = write_report(directory)
        console.print(md_path.read_text(encoding="utf-8"), markup=False)
    else:
        run = load_run(directory)
        md_path, html_path = write_report(directory, run)
        print_summary(directory, run)
    console.print(f"[notice]wrote {escape(str(md_path))} and {escape(str(html_path))}[/]")

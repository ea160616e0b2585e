"""``medcouncil bench`` and ``medcouncil report``: run the agent-vs-single benchmark and report on it."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from medcouncil.scenarios.bench.modes import MODES, debias_modes, episode_modes, help_text
from medcouncil.scenarios.bench.run import (
    SUITES,
    RunRequest,
    new_run,
    open_and_run,
    print_summary,
    resumed_run,
    slug,
)
from medcouncil.scenarios.cli.options import ApiKeyOpt, CouncilOpt, EndpointOpt, ModelConfigOpt, ModelOpt, NoCacheOpt
from medcouncil.scenarios.episodes.run import JUDGE_KEY_ENV
from medcouncil.serving.common.console import console, err_console
from medcouncil.serving.common.errors import ConfigError, MedcouncilError

if TYPE_CHECKING:
    from medcouncil.scenarios.bench.report import Run

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
    from medcouncil.scenarios.bench.report import SUITE, write_report
    from medcouncil.scenarios.episodes.run import bench_episodes, read_episode_manifest
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
            folder = slug(label)
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
        directory = out or Path("runs") / f"{slug(dataset)}-{stamp}"
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
            runs = asyncio.run(open_and_run(requests, source, no_cache, council_file(council), concurrency, retries,
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
    from medcouncil.scenarios.bench.report import SUITE, load_run, write_report

    if (directory / SUITE).exists():
        md_path, html_path = write_report(directory)
        console.print(md_path.read_text(encoding="utf-8"), markup=False)
    else:
        run = load_run(directory)
        md_path, html_path = write_report(directory, run)
        print_summary(directory, run)
    console.print(f"[notice]wrote {escape(str(md_path))} and {escape(str(html_path))}[/]")

"""``medcouncil index eval``: retrieval quality of dense, lexical and hybrid search on labelled sets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from medcouncil.scenarios.retrieval.evaluate import (
    CUTOFFS,
    QueryCandidates,
    QueryRanks,
    calibrate,
    decision,
    decision_score,
    evaluate,
    summarise,
)
from medcouncil.scenarios.retrieval.sets import BUILT_IN, RetrievalSet, load_set
from medcouncil.serving.common.console import console, err_console
from medcouncil.serving.common.errors import ConfigError
from medcouncil.serving.common.paths import data_dir
from medcouncil.serving.common.runlog import now
from medcouncil.tools.chunking import chunk_document
from medcouncil.tools.knowledge import KnowledgeBase, KnowledgeConfig, validate_collection_name
from medcouncil.tools.retrieval import LEXICAL_WEIGHTS, METHODS, RELEVANCE_WEIGHTS, RRF_K, Method
from medcouncil.tools.starter_pack import open_knowledge

METRICS = (*(f"recall@{c}" for c in CUTOFFS), "MRR", "nDCG@10")


def _knowledge(labelled: RetrievalSet, store: Path, collection: str, progress: Progress, rrf_k: int) -> KnowledgeBase:
    """The set's own collection in the evaluation store (built once: re-adding embeds nothing new; chunks the set no
    longer has, after its data changed, are removed), or, for a file of queries, the user's collection."""
    if labelled.documents is None:
        knowledge = open_knowledge(KnowledgeConfig(collection=validate_collection_name(collection), rrf_k=rrf_k))
        if knowledge.count() == 0:
            raise ConfigError(f"collection {collection!r} in {knowledge.path} is empty: index add a corpus first")
        return knowledge
    knowledge = KnowledgeBase(KnowledgeConfig(path=store, collection=f"eval-{labelled.name}", rrf_k=rrf_k))
    chunks = sum(len(chunk_document(document)) for document in labelled.documents)
    task = progress.add_task(f"{labelled.name}: indexing (chunks)", total=chunks)
    report = knowledge.add(labelled.documents, progress=lambda done: progress.advance(task, done))
    knowledge.prune(report.written)
    knowledge.lexical()
    return knowledge


def _table(labelled: RetrievalSet, ranks: list[QueryRanks], methods: list[Method], language: str | None) -> Table:
    scope = f" ({language})" if language else ""
    table = Table(title=f"{labelled.name}{scope}: {labelled.note}", title_justify="left", show_lines=True)
    table.add_column("method")
    table.add_column("n", justify="right")
    for metric in METRICS:
        table.add_column(metric, justify="right")
    for method in methods:
        row = summarise(ranks, labelled.name, method, language)
        cells = [f"{mean:.3f}\n[dim]{low:.3f}–{high:.3f}[/]" for mean, low, high in row.values.values()]
        table.add_row(method, str(row.queries), *cells)
    return table


def eval_command(
    sets: Annotated[
        list[str] | None,
        typer.Option("--set", help=f"A built-in set ({', '.join(BUILT_IN)}) or a JSONL file of labelled queries."),
    ] = None,
    methods: Annotated[
        list[str] | None, typer.Option("--method", help="dense, lexical, hybrid (default: all).")
    ] = None,
    data: Annotated[Path | None, typer.Option(help="Shared data folder (with raw/ and mcqa/).")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Queries per set at most (the first ones).")] = None,
    ranks_out: Annotated[Path | None, typer.Option("--ranks", help="Per-query ranks file (JSONL).")] = None,
    store: Annotated[Path | None, typer.Option(help="Evaluation store (default: user data/eval-knowledge).")] = None,
    collection: Annotated[str, typer.Option(help="Collection a file of queries is searched in.")] = "medcouncil",
    rrf_k: Annotated[int, typer.Option(min=1, help="Reciprocal rank fusion's constant.")] = RRF_K,
    calibrate: Annotated[bool, typer.Option(help="Fit the relevance decision on these sets and print it.")] = False,
) -> None:
    """Recall@1/5/10, MRR and nDCG@10 of dense, lexical and hybrid search, with bootstrap 95% intervals (default:
    every built-in set whose data is found)."""
    chosen = [m for m in (methods or list(METHODS))]
    unknown = [m for m in chosen if m not in METHODS]
    if unknown:
        raise ConfigError(f"--method {unknown[0]}: choose from {', '.join(METHODS)}")
    method_list: list[Method] = [m for m in METHODS if m in chosen]
    names = sets or list(BUILT_IN)
    store = store or data_dir() / "eval-knowledge"
    ranks_path = ranks_out or store / f"ranks-{now().replace(':', '')}.jsonl"
    try:
        ranks_path.parent.mkdir(parents=True, exist_ok=True)
        ranks_path.open("a").close()
    except OSError as error:
        raise ConfigError(f"{ranks_path}: cannot be written ({error.strerror or error})") from error
    every: list[QueryRanks] = []
    groups: list[QueryCandidates] = []
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with ranks_path.open("w", encoding="utf-8") as out:
        for name in names:
            try:
                labelled = load_set(name, data)
            except ConfigError as error:
                if sets:  # asked for by name: an error
                    raise
                err_console.print(f"[warning]{name} skipped:[/] {escape(str(error))}")  # the default list
                continue
            labelled.queries = labelled.queries[:limit]
            with Progress(*columns, console=err_console, transient=True) as progress:
                knowledge = _knowledge(labelled, store, collection, progress, rrf_k)
                task = progress.add_task(f"{labelled.name}: queries", total=len(labelled.queries))

                def advance(task: TaskID = task) -> None:
                    progress.advance(task)

                ranks, found = evaluate(knowledge, labelled, method_list, advance)
            for rank in ranks:  # written per set: an interrupted run keeps the sets already done
                out.write(json.dumps(rank.model_dump(), ensure_ascii=False) + "\n")
            out.flush()
            every += ranks
            groups += found
            _print_set(labelled, ranks, method_list)
    console.print(f"[usage]per-query ranks: {escape(str(ranks_path))}[/]")
    if calibrate:
        _calibration(groups)


def _print_set(labelled: RetrievalSet, ranks: list[QueryRanks], methods: list[Method]) -> None:
    if labelled.guard_note:
        console.print(f"[warning]{escape(labelled.guard_note)}[/]")
    languages = sorted({r.language for r in ranks if r.relevant and r.language})
    for language in languages if len(languages) > 1 else [None]:
        console.print(_table(labelled, ranks, methods, language))
    for method in methods:
        verdict = decision(ranks, method)
        off = "" if verdict.silent_off_topic is None else ", off-topic queries answered 'no evidence' "
        off += "" if verdict.silent_off_topic is None else f"{verdict.silent_off_topic:.0%}"
        console.print(
            f"[usage]{method} decision: relevant document kept for {verdict.answered_with_relevant:.0%} of on-topic "
            f"queries, nothing kept for {verdict.silent_on_topic:.0%}{off}[/]"
        )


def _calibration(groups: list[QueryCandidates]) -> None:
    if not groups:
        raise ConfigError("--calibrate needs the hybrid method")
    for readable, in_use in ((True, RELEVANCE_WEIGHTS), (False, LEXICAL_WEIGHTS)):
        family = [group for group in groups if group.readable == readable]
        if not family:
            continue
        weights, score = calibrate(family, readable)
        label = "queries the embedder reads" if readable else "queries it cannot read (lexical only)"
        console.print(
            f"{label} ({len(family)}): best line (intercept, cosine, coverage) "
            f"{tuple(round(w, 2) for w in weights)} scores {score:.3f}; in use {in_use} "
            f"scores {decision_score(family, in_use):.3f}"
        )

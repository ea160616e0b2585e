"""``medcouncil index``: add, stats, query, remove (``eval`` is in ``index_eval.py``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from medcouncil.scenarios.retrieval.leaks import Leak, describe, find_leaks, record_leaks, recorded_labels
from medcouncil.scenarios.training.decontamination import EvalItem, local_eval_sets
from medcouncil.serving.common.console import console, err_console
from medcouncil.serving.common.errors import ConfigError
from medcouncil.tools.chunking import Document, chunk_document
from medcouncil.tools.corpora import corpus_files, read_documents
from medcouncil.tools.knowledge import (
    DEFAULT_COLLECTION,
    TOP_K,
    KnowledgeBase,
    KnowledgeConfig,
    validate_collection_name,
)
from medcouncil.tools.retrieval import Method, default_threshold
from medcouncil.tools.starter_pack import open_knowledge

CollectionOpt = Annotated[str, typer.Option("--collection", help="Chroma collection.")]
StoreOpt = Annotated[
    Path | None, typer.Option("--store", help="Store folder (env MEDCOUNCIL_KNOWLEDGE_DIR; default: user data).")
]

index_app = typer.Typer(
    help="Build and search the knowledge base (ChromaDB, offline embeddings).", no_args_is_help=True
)


def _open(collection: str, store: Path | None, method: Method = "hybrid") -> KnowledgeBase:
    config = KnowledgeConfig(collection=validate_collection_name(collection), path=store, method=method)
    with console.status("Loading the embedding model…"):
        return open_knowledge(config)


def _warn(message: str) -> None:
    err_console.print(f"[warning]warning:[/] {escape(message)}", markup=True, soft_wrap=True)


def _read(
    path: Path, evals: list[EvalItem], store: Path, collection: str
) -> tuple[list[Document], list[Leak], set[str]]:
    """A file's or folder's documents, leak-labelled; the leaks found; the files whose reading warned (read in part
    or not at all: their chunks from an earlier add are kept)."""
    documents: list[Document] = []
    warned: set[str] = set()
    for file in corpus_files(path, _warn) if path.is_dir() else [path]:

        def warn(message: str, file: Path = file) -> None:
            warned.add(str(file))
            _warn(message)

        documents += read_documents(file, warn)
    if evals:
        documents, found = find_leaks(documents, evals)
        return documents, found, warned
    # No check this time: the labels an earlier check recorded still guard.
    return recorded_labels(store, collection, documents)[0], [], warned


def add(
    paths: Annotated[list[Path], typer.Argument(help="Files or folders (.txt .md .pdf .jsonl .json .csv).")],
    collection: CollectionOpt = DEFAULT_COLLECTION,
    store: StoreOpt = None,
    leak_check: Annotated[
        bool, typer.Option(help="Record which local benchmark items each document would leak (and guard them).")
    ] = True,
    data: Annotated[Path | None, typer.Option(help="Benchmark data folder for the leak check.")] = None,
) -> None:
    """Ingest files (.txt .md .pdf .jsonl .json .csv): sentence-bounded chunks, content-hash ids (re-ingesting embeds
    nothing again; an edited file replaces its old chunks), the documents that would leak a local benchmark item
    recorded and guarded."""
    missing = [path for path in paths if not path.exists()]
    if len(missing) == len(paths):
        raise ConfigError(f"not found: {', '.join(map(str, missing))}")
    for path in missing:
        _warn(f"{path}: skipped, no such file or folder")
    knowledge = _open(collection, store)
    evals = local_eval_sets(data) if leak_check else []
    if leak_check and not evals:
        _warn("no local benchmark files found: leak check skipped (give --data)")
    leaks: list[Leak] = []
    totals = [0, 0, 0, 0, 0]
    kept_old: list[str] = []
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=err_console) as progress:
        for path in (path.resolve() for path in paths if path not in missing):  # one source name per file
            documents, found, warned = _read(path, evals, knowledge.path, collection)
            leaks += found
            # Chunking is cheap next to embedding (0.1 s for 2.6 MB): counted first, the bar has a total and an ETA.
            task = progress.add_task(f"{path.name} chunks", total=sum(len(chunk_document(d)) for d in documents))

            def advance(chunks: int, task: TaskID = task) -> None:
                progress.advance(task, chunks)

            # A file read whole replaces what it gave before (a folder: its files); one read in part only adds.
            report = knowledge.add(documents, progress=advance, replace=[str(path)], keep=warned)
            totals = [total + part for total, part in zip(totals, report.counts(), strict=True)]
            kept_old += sorted(Path(source).name for source in report.kept_sources)
    changes = ((totals[3], "with new metadata (e.g. a leak label)"), (totals[4], "removed (no longer in their file)"))
    console.print(
        f"{totals[0]} documents → {totals[1]} chunks, {totals[2]} new"
        + "".join(f", {count} {what}" for count, what in changes if count)
        + "; "
        f"collection [bold]{collection}[/] holds {knowledge.count()} chunks ({knowledge.path})"
    )
    if kept_old:
        _warn(
            f"{', '.join(kept_old)}: not read whole, so chunks from an earlier version of these files were kept "
            "(fix the file and add it again to replace them)"
        )
    if leaks:
        record = record_leaks(knowledge.path, collection, leaks)
        console.print(
            f"{len(leaks)} documents would leak benchmark items ({describe(leaks)}): recorded in {record}; "
            "the contamination guard keeps each out of its own item's evidence",
            markup=False,
        )
    elif evals:
        console.print(f"leak check: no document matches any of {len(evals)} local benchmark items")
    if missing:  # the others are in; the command still fails, naming what was not found
        err_console.print(f"[error]error:[/] not found: {escape(', '.join(map(str, missing)))}", soft_wrap=True)
        raise typer.Exit(1)


def stats(collection: CollectionOpt = DEFAULT_COLLECTION, store: StoreOpt = None) -> None:
    """Chunks per source and language, embedder and distance."""
    info = _open(collection, store).stats()
    console.print(
        f"[bold]{info['collection']}[/] in {info['path']}: {info['chunks']} chunks, "
        f"embeddings {info['embedder']}, distance {info['space']}"
    )
    table = Table("source", "chunks")
    for source, count in sorted(info["sources"].items(), key=lambda item: -item[1])[:30]:
        table.add_row(source, str(count))
    console.print(table)
    console.print("languages: " + ", ".join(f"{lang or '?'} {n}" for lang, n in info["languages"].items()))


def query(
    text: Annotated[str, typer.Argument(help="What to search for.")],
    k: Annotated[int, typer.Option("-k", min=1, help="Results at most.")] = TOP_K,
    method: Annotated[Method, typer.Option(help="hybrid (dense + BM25), dense or lexical.")] = "hybrid",
    threshold: Annotated[
        float | None,
        typer.Option(min=-1, max=1, help="Cutoff: relevance (hybrid, lexical; default 0.5) or cosine (dense; 0.4)."),
    ] = None,
    collection: CollectionOpt = DEFAULT_COLLECTION,
    store: StoreOpt = None,
) -> None:
    """Search: numbered evidence with its relevance, cosine, ranks in either list, and source ids."""
    knowledge = _open(collection, store, method)
    results = knowledge.search(text, k=k, threshold=threshold)
    if not results:
        cutoff = default_threshold(method) if threshold is None else threshold
        console.print(f"No evidence: nothing reaches the {method} cutoff {cutoff}.")
        return
    table = Table("#", "score", "cosine", "dense #", "BM25 #", "source", "text", show_lines=True)
    for number, evidence in enumerate(results, 1):
        snippet = evidence.text if len(evidence.text) <= 300 else evidence.text[:297] + "…"
        source = f"{evidence.source}\n[dim]{evidence.title}[/]\n[dim]id {evidence.id[:12]}[/]"
        ranks = [str(rank) if rank else "–" for rank in (evidence.dense_rank, evidence.lexical_rank)]
        table.add_row(str(number), f"{evidence.score:.3f}", f"{evidence.cosine or 0:.3f}", *ranks, source, snippet)
    console.print(table)


def remove(
    source: Annotated[str, typer.Argument(help="Source as shown by `index stats`.")],
    collection: CollectionOpt = DEFAULT_COLLECTION,
    store: StoreOpt = None,
) -> None:
    """Remove every chunk of a source."""
    if Path(source).exists():
        source = str(Path(source).resolve())
    removed = _open(collection, store).remove(source)
    console.print(f"Removed {removed} chunks of {source}." if removed else f"No chunks of {source}.", markup=False)

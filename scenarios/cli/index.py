"""``medcouncil index``: add, stats, query, remove."""

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

from medcouncil.serving.common.console import console, err_console
from medcouncil.serving.common.errors import ConfigError
from medcouncil.tools.chunking import chunk_document
from medcouncil.tools.corpora import read_documents
from medcouncil.tools.knowledge import (
    DEFAULT_COLLECTION,
    THRESHOLD,
    TOP_K,
    KnowledgeBase,
    KnowledgeConfig,
    open_knowledge,
    validate_collection_name,
)

CollectionOpt = Annotated[str, typer.Option("--collection", help="Chroma collection.")]
StoreOpt = Annotated[
    Path | None, typer.Option("--store", help="Store folder (env MEDCOUNCIL_KNOWLEDGE_DIR; default: user data).")
]

index_app = typer.Typer(
    help="Build and search the knowledge base (ChromaDB, offline embeddings).", no_args_is_help=True
)


def _open(collection: str, store: Path | None) -> KnowledgeBase:
    config = KnowledgeConfig(collection=validate_collection_name(collection), path=store)
    with console.status("Loading the embedding model…"):
        return open_knowledge(config)


def _warn(message: str) -> None:
    err_console.print(f"[warning]warning:[/] {escape(message)}", markup=True, soft_wrap=True)


def add(
    paths: Annotated[list[Path], typer.Argument(help="Files or folders (.txt .md .jsonl .json .csv).")],
    collection: CollectionOpt = DEFAULT_COLLECTION,
    store: StoreOpt = None,
) -> None:
    """Ingest files: sentence-bounded chunks, content-hash ids (re-ingesting changes nothing)."""
    missing = [path for path in paths if not path.exists()]
    if len(missing) == len(paths):
        raise ConfigError(f"not found: {', '.join(map(str, missing))}")
    for path in missing:
        _warn(f"{path}: skipped, no such file or folder")
    knowledge = _open(collection, store)
    totals = [0, 0, 0]
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=err_console) as progress:
        for path in (path.resolve() for path in paths if path not in missing):  # one source name per file
            documents = list(read_documents(path, _warn))
            # Chunking is cheap next to embedding (0.1 s for 2.6 MB): counted first, the bar has a total and an ETA.
            task = progress.add_task(f"{path.name} chunks", total=sum(len(chunk_document(d)) for d in documents))

            def advance(chunks: int, task: TaskID = task) -> None:
                progress.advance(task, chunks)

            report = knowledge.add(documents, progress=advance)
            totals = [totals[0] + report.documents, totals[1] + report.chunks, totals[2] + report.new]
    console.print(
        f"{totals[0]} documents → {totals[1]} chunks, {totals[2]} new; "
        f"collection [bold]{collection}[/] holds {knowledge.count()} chunks ({knowledge.path})"
    )
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
    threshold: Annotated[float, typer.Option(min=-1, max=1, help="Cosine similarity at least.")] = THRESHOLD,
    collection: CollectionOpt = DEFAULT_COLLECTION,
    store: StoreOpt = None,
) -> None:
    """Search: numbered evidence with scores and source ids."""
    results = _open(collection, store).search(text, k=k, threshold=threshold)
    if not results:
        console.print(f"No evidence at or above similarity {threshold}.")
        return
    table = Table("#", "score", "source", "text", show_lines=True)
    for number, evidence in enumerate(results, 1):
        snippet = evidence.text if len(evidence.text) <= 300 else evidence.text[:297] + "…"
        source = f"{evidence.source}\n[dim]{evidence.title}[/]\n[dim]id {evidence.id[:12]}[/]"
        table.add_row(str(number), f"{evidence.score:.3f}", source, snippet)
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

"""Files → documents: plain text, Markdown, PDF (its text layer), JSONL, CSV and JSON, recognising the shared medical
corpora.

Recognised formats (``../shared/data/raw``): MedMCQA rows (``exp`` explanations, one document per item, the item id
kept for the contamination guard), BioASQ golden files (``questions[].snippets[].text``) and PubMedQA's labelled
set (id → ``CONTEXTS``). Anything else: one document per file, or per row with a ``text``-like field.
"""

from __future__ import annotations

import csv
import itertools
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from medcouncil.serving.common.errors import first_line
from medcouncil.serving.common.jsonl import BadLine, iter_jsonl, read_json
from medcouncil.tools.chunking import Document

SUPPORTED = (".txt", ".md", ".jsonl", ".json", ".csv", ".pdf")
TEXT_FIELDS = ("text", "content", "contents", "body", "abstract", "exp")
Warn = Callable[[str], None]


def _first_heading(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.lstrip("# ").strip() if line.startswith("#") else ""
    return ""


def _row_document(row: dict[str, Any], source: str) -> Document | None:
    if "exp" in row and ("opa" in row or "cop" in row):  # MedMCQA
        text = str(row.get("exp") or "").strip()
        if not text:
            return None
        topic = " / ".join(str(row[key]) for key in ("subject_name", "topic_name") if row.get(key))
        return Document(
            text=text,
            source=source,
            title=topic,
            item_id="" if row.get("id") is None else str(row["id"]),
            extra={"corpus": "medmcqa"},
            question=str(row.get("question") or ""),
        )
    for name in TEXT_FIELDS:
        if isinstance(row.get(name), str) and row[name].strip():
            item = next((row[key] for key in ("item_id", "id") if row.get(key) is not None), "")
            title = str(row.get("title") or "")
            return Document(text=row[name].strip(), source=source, title=title, item_id=str(item))
    return None


def _jsonl(path: Path, warn: Warn) -> Iterator[Document]:
    for number, row in iter_jsonl(path):
        if isinstance(row, BadLine):
            warn(f"{path}:{number}: skipped, {row.reason}")
            continue
        document = _row_document(row, str(path)) if isinstance(row, dict) else None
        if document is None:
            warn(f"{path}:{number}: skipped, no text field ({', '.join(TEXT_FIELDS)})")
            continue
        yield document


def _json(path: Path, warn: Warn) -> Iterator[Document]:
    data = read_json(path)
    source = str(path)
    if isinstance(data, dict) and isinstance(data.get("questions"), list):  # BioASQ
        for number, question in enumerate(data["questions"]):
            snippets = (question.get("snippets") or []) if isinstance(question, dict) else None
            if not isinstance(snippets, list) or not all(isinstance(snippet, dict) for snippet in snippets):
                warn(f"{path}: question {number} skipped, not an object with a list of snippet objects")
                continue
            for snippet in snippets:
                text = str(snippet.get("text") or "").strip()
                if text:
                    title = str(snippet.get("document") or "")
                    yield Document(
                        text=text,
                        source=source,
                        title=title,
                        item_id="" if question.get("id") is None else str(question["id"]),
                        extra={"corpus": "bioasq"},
                        question=str(question.get("body") or ""),
                    )
        return
    if isinstance(data, dict) and data and all(isinstance(v, dict) and "CONTEXTS" in v for v in data.values()):
        for pmid, entry in data.items():  # PubMedQA: the abstract's contexts, never its conclusion
            text = " ".join(str(part) for part in entry["CONTEXTS"]).strip()
            if text:
                yield Document(
                    text=text,
                    source=source,
                    title=f"PubMed {pmid}",
                    item_id=str(pmid),
                    extra={"corpus": "pubmedqa"},
                    question=str(entry.get("QUESTION") or ""),
                )
        return
    rows = data if isinstance(data, list) else [data]
    for number, row in enumerate(rows):
        document = _row_document(row, source) if isinstance(row, dict) else None
        if document is None:
            warn(f"{path}: entry {number} skipped, no text field")
            continue
        yield document


_NUMBER = re.compile(r"[-+]?\d[\d,.]*%?")


def _is_data_row(cells: list[str]) -> bool:
    """A first row that cannot be column names: only numbers, a cell longer than a name, or a sentence (four words
    or more ending in . ! ?). Anything else is taken for a header, as CSV files have one (and the reading is told)."""
    filled = [cell.strip() for cell in cells if cell.strip()]
    return bool(filled) and (
        all(_NUMBER.fullmatch(cell) for cell in filled)
        or any(len(cell) > 64 or (len(cell.split()) >= 4 and cell[-1] in ".!?") for cell in filled)
    )


def _csv(path: Path, warn: Warn) -> Iterator[Document]:
    """One document per row: its text column, or, in a file without one, the whole row. Without a text column, the
    first row is a header unless it is plainly data (:func:`_is_data_row`); either reading is told."""
    with path.open(encoding="utf-8-sig", newline="") as handle:  # a spreadsheet's byte-order mark is no name
        reader = csv.reader(handle)
        first = 1
        for header in reader:  # blank lines before the first row are not it
            if any(cell.strip() for cell in header):
                break
            first += 1
        else:
            return
        names = [cell.strip().lower() for cell in header]
        has_text_field = bool(set(names) & set(TEXT_FIELDS))
        kept: list[list[str]] = []
        if not has_text_field and _is_data_row(header):
            warn(f"{path}: no header row with a text column: each row is read whole, row {first} included")
            kept = [header]
        elif not has_text_field:
            shown = ", ".join(cell.strip() for cell in header)[:80]
            warn(
                f"{path}: no text column ({', '.join(TEXT_FIELDS)}): each row is read whole, row {first} ({shown}) "
                "taken for the header"
            )
        rows = itertools.chain(kept, reader)
        for number, cells in enumerate(rows, first if kept else first + 1):
            if not cells:  # a blank line
                continue
            if has_text_field:
                document = _row_document(dict(zip(names, cells, strict=False)), str(path))
            else:  # no text column: the whole row is the text
                text = " ".join(cell.strip() for cell in cells if cell.strip())
                document = Document(text=text, source=str(path)) if text else None
            if document is None:
                warn(f"{path}:{number}: skipped, empty text")
                continue
            yield document


def _pdf(path: Path, warn: Warn) -> Iterator[Document]:
    """One document per PDF: the text layer of its pages (a scanned PDF without one has no text: say so)."""
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(path)
        if reader.is_encrypted:
            warn(f"{path}: skipped, encrypted PDF")
            return
        pages = [page.extract_text() or "" for page in reader.pages]
    except (PdfReadError, ValueError, KeyError, TypeError) as error:
        warn(f"{path}: skipped, not a readable PDF ({type(error).__name__}: {error})")
        return
    text = "\n\n".join(page.strip() for page in pages if page.strip())
    if not text:
        warn(f"{path}: skipped, no text layer (a scanned PDF needs OCR first)")
        return
    metadata: Any = reader.metadata or {}
    title = str(metadata.get("/Title") or "") or path.stem
    yield Document(text=text, source=str(path), title=title)


def corpus_files(folder: Path, warn: Warn) -> list[Path]:
    """The supported files under a folder (hidden ones left out); the others are counted in one warning."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
    others = [p for p in files if p.suffix.lower() not in SUPPORTED]
    if others:
        warn(f"{folder}: {len(others)} files of unsupported types skipped (e.g. {others[0].name})")
    return [p for p in files if p.suffix.lower() in SUPPORTED]


def read_documents(path: Path, warn: Warn) -> Iterator[Document]:
    """Documents of one file, or of every supported file under a folder.

    An unreadable or malformed file is reported through ``warn`` (naming it) and skipped; the rest continues.
    """
    if path.is_dir():
        for child in corpus_files(path, warn):
            yield from read_documents(child, warn)
        return
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED:
        warn(f"{path}: skipped, unsupported file type (supported: {', '.join(SUPPORTED)})")
        return
    try:
        if suffix in (".txt", ".md"):
            text = path.read_text(encoding="utf-8").strip()
            if text:
                yield Document(text=text, source=str(path), title=_first_heading(text) or path.stem)
        elif suffix == ".jsonl":
            yield from _jsonl(path, warn)
        elif suffix == ".json":
            yield from _json(path, warn)
        elif suffix == ".pdf":
            yield from _pdf(path, warn)
        else:
            yield from _csv(path, warn)
    except BadLine as error:  # the whole JSON file: not UTF-8, not JSON (its line), nested too deeply...
        warn(f"{error}: skipped")
    except (OSError, UnicodeDecodeError, csv.Error, ValueError, RecursionError) as error:
        warn(f"{path}: skipped, unreadable ({type(error).__name__}: {first_line(error)})")

"""Labelled retrieval sets: a corpus, queries, and for each query the items that answer it.

A query's ``relevant`` keys name what should be found; a chunk matches a key when the key equals its id, its
document's ``item_id``, its source, or its source's file name (``acs.md`` matches ``starter/acs.md``). A query
with no relevant key is off-topic: nothing should be returned for it (it measures the no-evidence decision).

Built in: ``starter`` (the starter pack and its written vignettes, English and Korean), ``bioasq`` (BioASQ 11B
golden questions against all their snippets), ``medmcqa`` (MedMCQA dev questions that are in no test file, against
all dev explanations: each question's own explanation is its relevant item, so the contamination guard is off).
A user's set is a JSONL file of ``{"id", "text", "relevant": [...]}`` queries run against an existing collection.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medcouncil.scenarios.datasets.registry import data_dir
from medcouncil.scenarios.training.decontamination import normalise_text
from medcouncil.serving.common.errors import ConfigError
from medcouncil.serving.common.jsonl import BadLine, iter_jsonl
from medcouncil.tools.chunking import Document
from medcouncil.tools.starter_pack import VIGNETTES, starter_documents

BUILT_IN = ("starter", "bioasq", "medmcqa")


@dataclass(frozen=True)
class LabelledQuery:
    id: str
    text: str
    relevant: frozenset[str]
    language: str = ""


@dataclass
class RetrievalSet:
    name: str
    queries: list[LabelledQuery]
    documents: list[Document] | None
    """The corpus to index; None: search an existing collection."""
    note: str = ""
    guard_note: str = ""
    """Set when the contamination guard would hide the relevant items (it is off for every evaluation)."""


def _rows(path: Path) -> Iterator[tuple[int, Any]]:
    """(line number, value) of a JSONL file; an unreadable file or line is a one-line error naming it."""
    try:
        for number, value in iter_jsonl(path):
            if isinstance(value, BadLine):
                raise ConfigError(str(value))
            yield number, value
    except OSError as error:
        raise ConfigError(f"{path}: cannot be read ({error.strerror or error})") from error


def read_queries(path: Path) -> list[LabelledQuery]:
    """A JSONL file of labelled queries; a malformed line is an error naming it."""
    queries: list[LabelledQuery] = []
    seen: set[str] = set()
    for number, row in _rows(path):
        where = f"{path}:{number}"
        if not isinstance(row, dict) or not isinstance(row.get("text"), str) or not row["text"].strip():
            raise ConfigError(f"{where}: a labelled query needs a non-empty 'text'")
        relevant = row.get("relevant", [])
        if not isinstance(relevant, list) or not all(isinstance(key, str) for key in relevant):
            raise ConfigError(f"{where}: 'relevant' must be a list of strings (ids, item ids or sources)")
        query_id = str(row.get("id", number))
        if query_id in seen:
            raise ConfigError(f"{where}: query id {query_id!r} repeats an earlier one")
        seen.add(query_id)
        queries.append(LabelledQuery(query_id, row["text"].strip(), frozenset(relevant), str(row.get("language", ""))))
    if not queries:
        raise ConfigError(f"{path}: no labelled queries")
    return queries


def starter_set() -> RetrievalSet:
    return RetrievalSet(
        "starter",
        read_queries(VIGNETTES),
        starter_documents(),
        note="written vignettes, English and Korean, 2+ per starter note, and off-topic queries",
    )


def _shared_raw(root: Path | None) -> Path:
    base = data_dir(root)
    if base is None or not (base / "raw").is_dir():
        raise ConfigError("no raw data folder (…/data/raw): give --data (the shared data folder)")
    return base / "raw"


def bioasq_set(root: Path | None = None) -> RetrievalSet:
    folder = _shared_raw(root) / "bioasq"
    files = sorted(folder.glob("*.json"))
    if not files:
        raise ConfigError(f"{folder}: no BioASQ golden files (*.json)")
    snippets: dict[str, str] = {}
    queries: list[LabelledQuery] = []
    for path in files:
        for number, question in enumerate(_bioasq_questions(path), 1):
            where = f"{path}: question {number}"
            if not isinstance(question, dict):
                raise ConfigError(f"{where}: not an object")
            body, snippet_list = question.get("body"), question.get("snippets") or []
            if not isinstance(question.get("id"), str | int) or not str(question["id"]).strip():
                raise ConfigError(f"{where}: no 'id'")
            question_id = str(question["id"]).strip()
            if not isinstance(body, str) or not isinstance(snippet_list, list):
                raise ConfigError(f"{where} ({question_id}): 'body' must be text and 'snippets' a list")
            keys = set()
            for snippet in snippet_list:
                text = snippet.get("text") if isinstance(snippet, dict) else None
                if not isinstance(text, str):
                    raise ConfigError(f"{where} ({question_id}): a snippet without a 'text'")
                text = " ".join(text.split())
                if text:
                    key = "snippet-" + hashlib.sha256(text.encode()).hexdigest()[:16]
                    snippets[key] = text
                    keys.add(key)
            if keys and body.strip():
                queries.append(LabelledQuery(question_id, body.strip(), frozenset(keys), "en"))
    if not queries:
        raise ConfigError(f"{folder}: no BioASQ question with a body and gold snippets")
    documents = [Document(text=text, source="bioasq", item_id=key, language="en") for key, text in snippets.items()]
    return RetrievalSet("bioasq", queries, documents, note=f"{len(files)} golden files; gold snippets are relevant")


def _bioasq_questions(path: Path) -> list[Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ConfigError(f"{path}: not a BioASQ golden file ({error})") from error
    questions = data.get("questions") if isinstance(data, dict) else None
    if not isinstance(questions, list):
        raise ConfigError(f"{path}: not a BioASQ golden file (no 'questions' list)")
    return questions


def medmcqa_set(root: Path | None = None, is_test: Callable[[str, str], bool] | None = None) -> RetrievalSet:
    """``is_test(id, question)``: whether a dev item is in a test file (default: the local MCQA test files)."""
    raw = _shared_raw(root)
    path = raw / "medmcqa_dev.jsonl"
    if is_test is None:
        is_test = _test_items(raw.parent / "mcqa")
    documents: list[Document] = []
    queries: list[LabelledQuery] = []
    for number, row in _rows(path):
        if not isinstance(row, dict) or "question" not in row:
            raise ConfigError(f"{path}:{number}: not a MedMCQA row")
        explanation = str(row.get("exp") or "").strip()
        if not explanation:
            continue
        item = str(row.get("id", number))
        documents.append(Document(text=explanation, source="medmcqa-dev-exp", item_id=item, language="en"))
        if not is_test(item, str(row["question"])):
            queries.append(LabelledQuery(item, str(row["question"]).strip(), frozenset({item}), "en"))
    return RetrievalSet(
        "medmcqa",
        queries,
        documents,
        note="dev questions in no test file; each question's own explanation is relevant",
        guard_note="contamination guard off for this evaluation only: each question's own explanation is the item "
        "to find (a benchmark run keeps it out of its own item's evidence)",
    )


def _test_items(folder: Path) -> Callable[[str, str], bool]:
    ids: set[str] = set()
    questions: set[str] = set()
    for path in sorted(folder.glob("*.jsonl")):
        for _, row in _rows(path):
            if isinstance(row, dict):
                ids.add(str(row.get("realidx", "")))
                questions.add(normalise_text(str(row.get("question", ""))))
    return lambda item, question: item in ids or normalise_text(question) in questions


def load_set(name: str, root: Path | None = None) -> RetrievalSet:
    """A built-in set by name, or a JSONL file of labelled queries (searched against a collection)."""
    if name == "starter":
        return starter_set()
    if name == "bioasq":
        return bioasq_set(root)
    if name == "medmcqa":
        return medmcqa_set(root)
    path = Path(name)
    if not path.is_file():
        raise ConfigError(f"{name}: not a built-in set ({', '.join(BUILT_IN)}) nor a file of labelled queries")
    return RetrievalSet(path.stem, read_queries(path), None, note=str(path))

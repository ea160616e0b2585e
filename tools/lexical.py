"""Lexical search beside the dense one: clinical tokenisation and a BM25 index (``bm25s``) kept next to the store.

Tokens (:func:`tokenize`), after NFKC normalisation and case-folding:

* Latin words and numbers; a hyphenated or slashed compound gives its parts and the joined form
  (``ST-elevation`` → ``st``, ``elevation``, ``stelevation``), so every spelling meets the others;
* a number with its unit gives the number, the unit and the two joined (``300 mg`` → ``300``, ``mg``, ``300mg``);
  decimals keep their point (``7.5``), percentages their sign (``90%``);
* a light English suffix rule folds plurals (``arms`` → ``arm``, ``arteries`` → ``artery``);
* Hangul runs give their character bigrams (a one-syllable run itself): Korean attaches particles to words
  (``흉통이``, ``흉통을``) and bigrams match a term whatever follows it, with no dictionary;
* English stop words are dropped; a Hangul particle is not a token of its own, only part of bigrams.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import re
import shutil
import time
import unicodedata
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

K1 = 1.2
B = 0.75
"""BM25 parameters (Lucene's formula); the usual values, not tuned on the evaluation sets."""

UNITS = (
    "mg|mcg|ug|g|kg|ml|mcl|l|dl|mcmol|mmol|mol|meq|iu|u|mmhg|cmh2o|bpm|min|mins|h|hr|hrs|s|sec|d|wk|wks|mo|yr|yrs|cm|mm|"
    "°c|c|°f|mg/dl|mmol/l|mcmol/l|g/dl|mg/kg|mcg/kg|mcg/min|mg/h|ml/min|ml/h|u/l|iu/l|ng/ml|pg/ml|meq/l|mosm/kg|l/min"
)
_NUMBER_UNIT = re.compile(rf"(\d+(?:\.\d+)?)\s?({UNITS})(?![a-z0-9/])")
_TOKEN = re.compile(r"\d+(?:\.\d+)?%?|[a-z0-9µ°]+(?:[-/'][a-z0-9µ°]+)*|[\uac00-\ud7a3]+")
_HANGUL = re.compile(r"[\uac00-\ud7a3]+")
_STOP = """a about above after again against all also am an and any are as at be because been before being below
    between both but by can could did do does doing down during each few for from further had has have having he
    her here hers herself him himself his how i if in into is it its itself just me more most my myself no nor
    not now of off on once only or other our ours ourselves out over own same she should so some such than that
    the their theirs them themselves then there these they this those through to too under until up very was we
    were what when where which while who whom why will with would you your yours yourself yourselves s t"""
STOP_WORDS = frozenset(re.findall(r"[a-z]+", _STOP))


def _fold(word: str) -> str:
    """Plural folding: a light rule, never shorter than 3 letters; words ending in -ss, -us, -is are left alone."""
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")) and not word[-2].isdigit():
        return word[:-1]
    return word


TOKENIZER_VERSION = "3"
"""Part of a saved index's fingerprint: an index saved by another tokeniser is rebuilt."""
_GREEK = {"α": "alpha", "β": "beta", "γ": "gamma", "δ": "delta", "ε": "epsilon", "θ": "theta", "κ": "kappa"}
_GREEK.update({"λ": "lambda", "μ": "mu", "σ": "sigma", "τ": "tau", "ω": "omega"})
_MICRO = re.compile(r"μ(?=(?:g|l|mol|m)\b)")  # casefold turns the micro sign into Greek mu: µg is mcg
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")


def tokenize(text: str) -> list[str]:
    """The lexical tokens of ``text`` (see the module's docstring); repeated tokens stay repeated (BM25 counts)."""
    folded = _THOUSANDS.sub("", _MICRO.sub("mc", unicodedata.normalize("NFKC", text).casefold()))
    folded = "".join(_GREEK.get(character, character) for character in folded)
    tokens: list[str] = []
    for match in _NUMBER_UNIT.finditer(folded):
        tokens.append(match.group(1) + match.group(2).replace("/", ""))
    for word in _TOKEN.findall(folded):
        if _HANGUL.fullmatch(word):
            tokens += [word] if len(word) == 1 else [word[i : i + 2] for i in range(len(word) - 1)]
            continue
        parts = [part for part in re.split(r"[-/']", word) if part]
        if len(parts) > 1:
            tokens.append("".join(parts))
        tokens += [_fold(part) for part in parts if part not in STOP_WORDS]
    return tokens


def _bm25s() -> Any:
    """The BM25 library, imported on first use (``tokenize`` alone costs nothing), its debug logging silenced."""
    import bm25s

    logging.getLogger("bm25s").setLevel(logging.WARNING)
    return bm25s


@dataclass(frozen=True)
class LexicalHit:
    index: int
    """Position in the index's documents (see :attr:`LexicalIndex.ids`)."""
    score: float


class LexicalIndex:
    """BM25 over a list of documents, with their ids and benchmark item ids alongside (for the guard)."""

    def __init__(self, ids: Sequence[str], item_ids: Sequence[str], tokens: Sequence[list[str]]) -> None:
        bm25s = _bm25s()

        self.ids = list(ids)
        self.item_ids = list(item_ids)
        bm25 = bm25s.BM25(k1=K1, b=B)
        bm25.index([list(t) or [""] for t in tokens] or [[""]], show_progress=False)
        self._attach(bm25)
        frequency: dict[str, int] = {}
        for document in tokens:
            for token in set(document):
                frequency[token] = frequency.get(token, 0) + 1
        self.document_frequency = frequency

    @classmethod
    def build(cls, chunks: Iterable[tuple[str, str, dict[str, Any]]]) -> LexicalIndex:
        """The index of ``(id, text, metadata)`` chunks: each read as :func:`lexical_text` (title, Korean terms)."""
        ids: list[str] = []
        item_ids: list[str] = []
        tokens: list[list[str]] = []
        for chunk_id, text, metadata in chunks:
            ids.append(chunk_id)
            item_ids.append(str(metadata.get("item_id", "")))
            tokens.append(tokenize(lexical_text(text, metadata)))
        return cls(ids, item_ids, tokens)

    def __len__(self) -> int:
        return len(self.ids)

    def idf(self, token: str) -> float:
        """Inverse document frequency; a token no document has gets the highest (it is what the corpus lacks)."""
        count = len(self.ids)
        return math.log(1 + (count + 0.5) / (self.document_frequency.get(token, 0) + 0.5))

    def search(self, tokens: list[str], depth: int) -> list[LexicalHit]:
        """The ``depth`` best documents with a positive score, best first."""
        known = [token for token in tokens if token in self.document_frequency]
        if not known or not self.ids:
            return []
        depth = min(depth, len(self.ids))
        documents, scores = self._bm25.retrieve([known], k=depth, show_progress=False, n_threads=1)
        return [
            LexicalHit(int(index), float(score))
            for index, score in zip(documents[0], scores[0], strict=True)
            if score > 0
        ]

    def coverages(self, query: list[str], positions: Sequence[int]) -> list[float]:
        """Share of the query's (distinct) tokens found in each document at ``positions``, each token weighted by its
        idf: 1.0 when the document has every query term, low when it matches only common words or the query's rarest
        terms are missing from the whole corpus. Read from the index (no re-tokenising)."""
        wanted = set(query)
        found = np.zeros(len(positions), dtype=np.float64)
        if not wanted or not positions:
            return found.tolist()
        targets = np.asarray(positions, dtype=np.int64)
        scores = self._bm25.scores
        indptr, indices = scores["indptr"], scores["indices"]
        vocabulary = self._bm25.vocab_dict
        total = 0.0
        for token in wanted:
            weight = self.idf(token)
            total += weight
            column = vocabulary.get(token)
            if column is None or column + 1 >= len(indptr) or indptr[column] == indptr[column + 1]:
                continue
            postings = indices[indptr[column] : indptr[column + 1]]  # sorted (bm25s builds canonical CSC columns)
            at = np.minimum(np.searchsorted(postings, targets), len(postings) - 1)
            found[postings[at] == targets] += weight
        shares: list[float] = (found / total).tolist()
        return shares

    # Persistence: the index is rebuilt from the store when its fingerprint differs (see KnowledgeBase).

    def save(self, folder: Path, fingerprint: str) -> None:
        temporary = folder.with_name(folder.name + ".tmp")
        shutil.rmtree(temporary, ignore_errors=True)
        temporary.mkdir(parents=True)
        self._bm25.save(str(temporary), show_progress=False)
        (temporary / "documents.json").write_text(
            json.dumps({"ids": self.ids, "item_ids": self.item_ids, "df": self.document_frequency}),
            encoding="utf-8",
        )
        (temporary / "fingerprint").write_text(fingerprint, encoding="utf-8")
        shutil.rmtree(folder, ignore_errors=True)
        temporary.rename(folder)

    @classmethod
    def load(cls, folder: Path, fingerprint: str) -> LexicalIndex | None:
        """The saved index if it was built for ``fingerprint``, else None (missing, stale or unreadable)."""
        bm25s = _bm25s()
        try:
            if (folder / "fingerprint").read_text(encoding="utf-8") != fingerprint:
                return None
            saved = json.loads((folder / "documents.json").read_text(encoding="utf-8"))
            bm25 = bm25s.BM25.load(str(folder), show_progress=False, verbosity=0)
            index = cls.__new__(cls)
            index.ids, index.item_ids = list(saved["ids"]), list(saved["item_ids"])
            index.document_frequency = dict(saved["df"])
            if len(index.item_ids) != len(index.ids) or int(bm25.scores["num_docs"]) != max(1, len(index.ids)):
                return None
        except Exception:
            return None
        index._attach(bm25)
        return index

    def _attach(self, bm25: Any) -> None:
        """Takes ``bm25`` (built or loaded) and derives what searches need from ``ids`` and ``item_ids``."""
        _sort_postings(bm25.scores)
        self._bm25 = bm25
        self.position = {chunk_id: number for number, chunk_id in enumerate(self.ids)}
        self.item_chunks = Counter(self.item_ids)
        """Chunks per benchmark item id (how far a guarded search must over-fetch)."""


def _sort_postings(scores: dict[str, Any]) -> None:
    """Document ids in ascending order within each token's column (what :meth:`LexicalIndex.coverages` bisects):
    bm25s builds them so; an index that is not is put in order."""
    indptr, indices = scores["indptr"], scores["indices"]
    if len(indices) < 2:
        return
    columns = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))
    if np.all((np.diff(indices.astype(np.int64)) > 0) | (np.diff(columns) > 0)):
        return
    order = np.lexsort((indices, columns))
    scores["indices"], scores["data"] = indices[order], scores["data"][order]


def fingerprint(ids: Sequence[str]) -> str:
    """Names a set of chunk ids, whatever their order."""
    digest = hashlib.sha256()
    for chunk_id in sorted(ids):
        digest.update(chunk_id.encode() + b"\0")
    return f"{TOKENIZER_VERSION}:{len(ids)}:{digest.hexdigest()[:32]}"


def lexical_text(text: str, metadata: dict[str, Any] | None) -> str:
    """What the lexical index reads of a chunk: its text, its document's title and Korean terms (kept out of the
    dense embedding, which reads Hangul as noise)."""
    meta = metadata or {}
    return " ".join(str(part) for part in (meta.get("title", ""), meta.get("korean_terms", ""), text) if part)


COUNT_CHECK_SECONDS = 30.0
"""How often a cached index is also checked against the collection's chunk count (a write made outside medcouncil
leaves no generation token)."""


class LexicalStore:
    """A collection's BM25 index, cached in memory and saved under ``<folder>/<collection>``.

    Every change to the collection, in any process, calls :meth:`changed` before and after it: the saved index is
    deleted and ``<collection>.generation`` gets a new token. A cached index of another generation is dropped, and
    a saved index carries the generation it was read under, so one built while another process was changing the
    collection is not reused.
    """

    def __init__(self, folder: Path, collection: str) -> None:
        self.folder = folder / collection
        self.generation_file = folder / f"{collection}.generation"
        self._index: LexicalIndex | None = None
        self._generation = ""
        self._checked = 0.0

    def generation(self) -> str:
        try:
            return self.generation_file.read_text(encoding="utf-8")
        except OSError:
            return ""

    def drop(self) -> None:
        self._index = None

    def changed(self) -> None:
        self._index = None
        shutil.rmtree(self.folder, ignore_errors=True)
        with contextlib.suppress(OSError):  # a read-only store cannot change anyway
            self.generation_file.parent.mkdir(parents=True, exist_ok=True)
            self.generation_file.write_text(uuid.uuid4().hex, encoding="utf-8")

    def index(
        self,
        count: Callable[[], int],
        ids: Callable[[], list[str]],
        chunks: Callable[[list[str]], Iterable[tuple[str, str, dict[str, Any]]]],
    ) -> LexicalIndex:
        """The index: cached, else saved for these chunks and this generation, else built from ``chunks(ids())``."""
        generation = self.generation()
        if self._index is not None and (
            generation != self._generation
            or (time.monotonic() - self._checked > COUNT_CHECK_SECONDS and len(self._index) != count())
        ):
            self._index = None
        if self._index is None:
            every = ids()
            stamp = f"{fingerprint(every)}:{generation}"
            index = LexicalIndex.load(self.folder, stamp)
            if index is None:
                index = LexicalIndex.build(chunks(every))
                with contextlib.suppress(OSError):  # a read-only or full store still searches (rebuilt next time)
                    index.save(self.folder, stamp)
            self._index, self._generation, self._checked = index, generation, time.monotonic()
        return self._index

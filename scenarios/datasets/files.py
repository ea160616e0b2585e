"""Reading a dataset file or folder whatever its format: told from its first records, by the formats the adapter
modules declare (``base.py``), else a mapping guessed from common field names (``generic.py``), printed.

A CSV whose first row names its columns is read through those names; a folder reads each data file in it, the file
name being the subset. What one record cannot tell (an index counting from 0 or 1) is settled from the first
:data:`SAMPLE_ROWS`.
"""

from __future__ import annotations

import itertools
import logging
from pathlib import Path
from types import ModuleType
from typing import Any

from medcouncil.scenarios.datasets import generic
from medcouncil.scenarios.datasets.base import Adapter, Format, Registered, declaring_modules, file_subset
from medcouncil.scenarios.datasets.parquet import parquet_rows
from medcouncil.scenarios.datasets.samples import (
    MalformedRow,
    Sample,
    csv_rows,
    json_items,
    jsonl_rows,
    load_samples,
)
from medcouncil.serving.common.errors import ConfigError, first_line

DATA_FILES = (".jsonl", ".json", ".csv", ".parquet")
SNIFF_ROWS = 20
"""Bad rows read before giving up on finding the first record."""
SAMPLE_ROWS = 200
"""Records read to settle what one cannot tell (an index from 0 or from 1)."""

log = logging.getLogger(__name__)


def _adapter_modules() -> list[ModuleType]:
    """Every module of ``scenarios/datasets/`` that declares a ``FORMAT``, in the formats' order."""
    from medcouncil.scenarios import datasets

    found = declaring_modules(datasets, "FORMAT", Format, skip=frozenset({"registry"}))
    return sorted(found, key=lambda module: (module.FORMAT.order, module.__name__))


def discover() -> tuple[tuple[Format, ...], dict[str, Registered]]:
    """The declared formats (in their order) and dataset names of every adapter module."""
    modules = _adapter_modules()
    names = {entry.name: entry for module in modules for entry in getattr(module, "DATASETS", ())}
    return tuple(module.FORMAT for module in modules), names


FORMATS, DATASETS = discover()
"""Record shapes, tried in this order on a file's first record (then the generic mapping's guess); ``--dataset``
names, as their modules declare them."""


def sniff(records: list[Any], path: Path) -> tuple[Format | None, dict[str, Any]]:
    """The format of a file's first records (None with ``fields``: the generic mapping guessed); ``path`` names the
    file in the error and may give the subset. The shape is told from the first record, what one record cannot tell
    (an index counting from 0 or 1) from all of them.

    Raises:
        ConfigError: no known format and no clear guess; records that contradict each other.
    """
    record = records[0] if records else {}
    if isinstance(record, list) and record and all(isinstance(item, dict) for item in record):
        raise ConfigError(
            f"{path}: its first line is a JSON array of {len(record)} records, not one record: a "
            "JSON Lines file holds one object per line; save the array as .json"
        )
    for shape in FORMATS:
        args = shape.matches(record, path)
        if args is not None:
            return shape, _settled(shape, args, records, path)
    if isinstance(record, dict):
        guessed = _guess(records, path)
        if guessed is not None:
            log.warning(
                "%s: no known format; read with the guessed mapping --fields %r (pass --fields to change it)",
                path,
                guessed.describe(),
            )
            return None, {"fields": guessed}
    shown = sorted(map(str, record))[:8] if isinstance(record, dict) else type(record).__name__
    raise ConfigError(
        f"{path}: cannot tell the dataset format from its first record ({shown}); "
        "pass --fields question=...;options=...;answer=..."
    )


def _guess(records: list[Any], path: Path) -> generic.FieldMap | None:
    """:func:`generic.guess`. Raises: ConfigError: naming the file, when its answers contradict each other."""
    try:
        return generic.guess(records)
    except ValueError as error:
        raise ConfigError(f"{path}: {first_line(error)}") from None


def _settled(shape: Format, args: dict[str, Any], records: list[Any], path: Path) -> dict[str, Any]:
    """``args`` with what the format settles from the records. Raises: ConfigError: records that contradict."""
    if shape.settle is None:
        return args
    try:
        return {**args, **shape.settle(records)}
    except ValueError as error:
        raise ConfigError(f"{path}: {first_line(error)}") from None


def _first_records(path: Path) -> list[Any]:
    """The first readable records, up to :data:`SAMPLE_ROWS` (the format is told from them); bad rows among them
    are left to the loader to report.

    Raises:
        ConfigError: the file is empty, unreadable, or none of its first records is readable (naming the first).
    """
    suffix = path.suffix.lower()
    if suffix == ".json":
        return [record for _, record in itertools.islice(json_items(path), SAMPLE_ROWS)]
    if suffix == ".parquet":
        return [record for _, record in itertools.islice(parquet_rows(path), SAMPLE_ROWS)]
    rows = csv_rows(path) if suffix == ".csv" else jsonl_rows(path)
    first_bad: MalformedRow | None = None
    found: list[Any] = []
    for count, (_, record) in enumerate(rows):
        if not isinstance(record, MalformedRow):
            found.append(record)
            if len(found) >= SAMPLE_ROWS:
                break
            continue
        first_bad = first_bad or record
        if count >= SNIFF_ROWS and not found:
            break
    if found:
        return found
    if first_bad is not None:
        hint = "; it looks like one JSON document: save it as .json" if _starts_a_document(path) else ""
        if suffix not in DATA_FILES:
            hint += f" (a {suffix or 'file without an extension'} is read as JSON Lines: the known kinds are "
            hint += ".jsonl, .json, .csv and .parquet; save tab-separated data as .csv)"
        raise ConfigError(f"{first_bad}; no readable record among the first {SNIFF_ROWS} to tell the format from{hint}")
    raise ConfigError(f"{path}: empty file (no records)")


def _starts_a_document(path: Path) -> bool:
    """A JSON Lines file whose first line is only ``[`` or ``{``: a pretty-printed JSON document saved as .jsonl."""
    if path.suffix.lower() == ".csv":
        return False
    with path.open("rb") as handle:
        return handle.readline(64).strip().removeprefix(b"\xef\xbb\xbf") in (b"[", b"{")


def _csv_with_header(
    path: Path, rows: list[Any], adapter: Adapter | None, strict: bool
) -> tuple[list[Sample], list[MalformedRow]] | None:
    """A CSV whose first row names its columns (``id,question,opa..opd,cop``, KorMedMCQA's ``question,A..E,answer``,
    ``qid,stem,opt1..opt4,correct``): its samples through the format the named columns have (the one ``adapter``
    reads, when given) or a guessed mapping (printed); None when the first row is not a header."""
    header = rows[0]
    records = [
        dict(zip(header, row, strict=True)) for row in rows[1:] if isinstance(row, list) and len(row) == len(header)
    ]
    if len(set(header)) != len(header):
        return None
    if not records:
        named = {str(name).strip().lower() for name in header} & {*generic.QUESTION_NAMES, *generic.ANSWER_NAMES}
        if len(rows) == 1 and named:
            raise ConfigError(f"{path}: a header row ({', '.join(map(str, header))[:80]}) and no items")
        return None
    for shape in FORMATS:
        args = shape.matches(records[0], path)
        if args is not None and (adapter is None or shape.adapter is adapter):
            return load_samples(path, shape.adapter, strict, csv_header=True, **_settled(shape, args, records, path))
    if adapter is not None:
        return None
    guessed = _guess(records, path)
    if guessed is None:
        return None
    log.warning("%s: read with the guessed mapping --fields %r (pass --fields to change it)", path, guessed.describe())
    return load_samples(path, generic.record_to_sample, strict, csv_header=True, fields=guessed)


def load_path(
    path: Path, fields: generic.FieldMap | None, strict: bool, adapter: Adapter | None = None
) -> tuple[list[Sample], list[MalformedRow]]:
    """The samples of a file or a folder of them, and the rows skipped: through ``fields`` when given, else the
    format its first records have (``adapter``, a registered dataset's, is used whatever they look like).

    Raises:
        ConfigError: not found, not a regular file, empty, unreadable, or in no format that can be told.
        MalformedRow: the first bad row, when ``strict``.
    """
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in DATA_FILES)
        if not files:
            inside = sorted(p.name for p in path.iterdir() if p.is_dir())[:5]
            hint = f" (subfolders are not read: {', '.join(inside)})" if inside else ""
            raise ConfigError(f"{path}: no .jsonl, .json, .csv or .parquet files{hint}")
        samples, skipped = [], []
        for file in files:
            more, bad = load_path(file, fields, strict)
            subset = file_subset(file)
            samples += [
                s if s.metadata.get("subset") else s.model_copy(update={"metadata": {**s.metadata, "subset": subset}})
                for s in more
            ]
            skipped += bad
        return samples, skipped
    if not path.is_file():
        if path.exists():  # a FIFO, socket or device: reading it could block or never end
            raise ConfigError(f"{path}: not a regular file (a pipe, socket or device): save the data to a file")
        raise ConfigError(f"dataset not found: {path}")
    if fields is not None:
        return load_samples(path, generic.record_to_sample, strict, csv_header=True, fields=fields)
    records = _first_records(path)
    if not records:
        raise ConfigError(f"{path}: no items")
    if path.suffix.lower() == ".csv" and isinstance(records[0], list):
        with_header = _csv_with_header(path, records, adapter, strict)
        if with_header is not None:
            return with_header
    shape, args = sniff(records, path)
    sniffed = shape.adapter if shape is not None else generic.record_to_sample
    if adapter is not None and adapter is not sniffed:
        args = {}
    return load_samples(path, adapter or sniffed, strict, **args)

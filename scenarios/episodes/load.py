"""Reading episodes: a file of cases in any known format, or any dataset the bench loads, made into cases.

Formats, recognised from the first record, are declared by the modules of ``scenarios/episodes/sources/`` (a
``SOURCE`` each, tried in its order): AgentClinic OSCE (``OSCE_Examination``), NEJM-style case records
(``patient_info`` + ``answers``) and medcouncil's own case JSON (the fields of
:class:`~medcouncil.agents.cases.ClinicalCase`). Adding a source is adding its module. Anything else is read as a
multiple-choice dataset (``scenarios/datasets/registry.py``) and each item becomes a case (``from_mcqa.py``).
``agentclinic`` names the shared AgentClinic file. A malformed row is skipped and reported as
``FILE:LINE: reason`` (``strict``: fatal).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from medcouncil.agents.cases import ClinicalCase
from medcouncil.scenarios.datasets.base import declaring_modules
from medcouncil.scenarios.datasets.samples import (
    MalformedRow,
    convert_rows,
    json_items,
    jsonl_rows,
    validation_reason,
)
from medcouncil.scenarios.episodes import sources
from medcouncil.scenarios.episodes.sources import from_mcqa
from medcouncil.scenarios.episodes.sources.base import CaseAdapter, CaseSource
from medcouncil.serving.common.errors import ConfigError, first_line


def _sources() -> list[CaseSource]:
    declared = [module.SOURCE for module in declaring_modules(sources, "SOURCE", CaseSource)]
    return sorted(declared, key=lambda source: source.order)


SOURCES = _sources()
"""Every declared episode source, in the order they are tried."""
NAMES = {name: file for source in SOURCES for name, file in source.names.items()}
"""Registered episode sets: their file under the data folder."""


def adapter_for(record: Any) -> CaseAdapter | None:
    if not isinstance(record, dict):
        return None
    return next((source.adapter for source in SOURCES if source.matches(record)), None)


FIRST_ROWS = 20
"""Rows read for the first object a case file's format is told from (malformed lines before it are reported when
the file is read)."""


def _rows(path: Path) -> Iterator[tuple[int, Any]]:
    """(line or position, record) of a case file: a JSON file holds a list of cases (or id -> case), any other
    (``.jsonl``, ``.txt``, no extension...) one case per line."""
    return json_items(path) if path.suffix.lower() == ".json" else jsonl_rows(path)


def _first_record(path: Path) -> Any:
    """The first object among the first rows, to tell the format from; None when there is none (or the file is
    not JSON at all: then it may still be a dataset the bench reads)."""
    try:
        for _, record in itertools.islice(_rows(path), FIRST_ROWS):
            if isinstance(record, dict):
                return record
    except ConfigError:
        return None
    return None


def load_cases(
    source: str, limit: int | None = None, strict: bool = False, data_root: Path | None = None
) -> tuple[list[ClinicalCase], list[MalformedRow]]:
    """The cases of ``source`` (the first ``limit``) and the rows skipped.

    Raises:
        ConfigError: no such file or dataset, or a format that is neither episodes nor a dataset.
        MalformedRow: the first bad row, when ``strict``.
    """
    path = Path(source).expanduser()
    if source in NAMES:
        from medcouncil.scenarios.datasets.registry import data_dir

        root = data_dir(data_root)
        if root is None or not (root / NAMES[source]).is_file():
            raise ConfigError(
                f"{source}: {NAMES[source]} not found under the data folder (--data-dir, "
                "MEDCOUNCIL_DATA_DIR, ./data or ../shared/data)"
            )
        path = root / NAMES[source]
    adapter = adapter_for(_first_record(path)) if path.is_file() and path.suffix.lower() != ".csv" else None
    if adapter is None:
        return _from_dataset(source, limit, strict, data_root)

    def objects_only(record: Any, index: int) -> ClinicalCase:
        if not isinstance(record, dict):
            raise ValueError(f"expected an object, got {type(record).__name__}")
        return adapter(record, index)

    return convert_rows(path, _rows(path), objects_only, strict, limit)


def _from_dataset(
    source: str, limit: int | None, strict: bool, data_root: Path | None
) -> tuple[list[ClinicalCase], list[MalformedRow]]:
    from medcouncil.scenarios.datasets.registry import load_dataset

    try:
        samples, info = load_dataset(source, strict=strict, data_root=data_root)
    except ConfigError as error:
        raise ConfigError(
            f"{source}: neither an episode file (AgentClinic, NEJM-style, medcouncil cases) nor a "
            f"dataset ({first_line(error)})"
        ) from None
    cases: list[ClinicalCase] = []
    skipped: list[MalformedRow] = []
    where = Path(info.source)
    for sample in samples:
        try:
            cases.append(from_mcqa.sample_to_case(sample))
        except (ValidationError, ValueError) as error:
            reason = validation_reason(error) if isinstance(error, ValidationError) else str(error)
            bad = MalformedRow(where, 0, f"item {sample.id}: {reason}")
            if strict:
                raise bad from None
            skipped.append(bad)
        if limit and len(cases) >= limit:
            break
    return cases, skipped

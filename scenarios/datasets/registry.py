"""``--dataset``: a registered name, a Hugging Face dataset id, or a path, resolved to samples.

Registered names look for their files under the data directory (``--data-dir``, env ``MEDCOUNCIL_DATA_DIR``, else
``./data`` or ``../shared/data``) and fall back to their Hugging Face dataset where one is known. A path's format is
recognised from its first record (or given with ``--fields``); a directory reads every data file in it, the file
name being the subset (``mmlu/anatomy_test.csv`` → ``anatomy``, ``kormedmcqa/doctor.jsonl`` → ``doctor``).

Names and formats are not listed here: every adapter module of ``scenarios/datasets/`` declares its own (``base.py``
says how), and this module finds them. Adding a dataset is adding its module.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from medcouncil.scenarios.datasets import generic
from medcouncil.scenarios.datasets.base import Format, Registered
from medcouncil.scenarios.datasets.files import DATA_FILES, SAMPLE_ROWS, load_path, sniff
from medcouncil.scenarios.datasets.files import DATASETS as DATASETS  # re-exported: the registered names
from medcouncil.scenarios.datasets.files import FORMATS as FORMATS  # re-exported: the recognised shapes
from medcouncil.scenarios.datasets.files import discover as discover
from medcouncil.scenarios.datasets.ids import unique_ids
from medcouncil.scenarios.datasets.samples import MalformedRow, Sample, convert_rows
from medcouncil.serving.common.errors import ConfigError, first_line
from medcouncil.serving.health import hub_reachable

ENV_DATA_DIR = "MEDCOUNCIL_DATA_DIR"


HF_IDS = {entry.hf_id.lower(): name for name, entry in DATASETS.items() if entry.hf_id}


class DatasetInfo(BaseModel):
    """What was loaded, for the run log: enough to load the very same items again."""

    dataset: str
    source: str
    """The file, directory or ``hf://ID/CONFIG/SPLIT`` read."""
    subset: str | None = None
    split: str | None = None
    fingerprint: str
    """sha256 of the samples as loaded (ids, questions, options, answers)."""
    rows: int
    skipped: int
    skipped_rows: list[str] = []
    """The first malformed rows, each ``file:line: reason``."""
    renamed_ids: list[str] = []
    """Items whose id repeated an earlier one's, renamed ``ID#2``, ``ID#3``... (each item is answered once)."""


def data_dir(explicit: Path | None = None) -> Path | None:
    """``--data-dir``, else ``MEDCOUNCIL_DATA_DIR``, else ``./data`` or ``../shared/data`` when they exist.

    Raises:
        ConfigError: ``--data-dir`` or ``MEDCOUNCIL_DATA_DIR`` names no directory (never silently another one).
    """
    for given, what in ((explicit, "--data-dir"), (os.environ.get(ENV_DATA_DIR), ENV_DATA_DIR)):
        if given:
            if not Path(given).expanduser().is_dir():
                raise ConfigError(f"{what} {given}: no such directory")
            return Path(given).expanduser()
    return next((path for path in (Path("data"), Path("../shared/data")) if path.is_dir()), None)


def _hf_rows(hf_id: str, config: str | None, split: str) -> Iterator[tuple[int, Any]]:
    try:
        import datasets
        import huggingface_hub.constants
    except ImportError:
        raise ConfigError(f"{hf_id}: Hugging Face datasets need `pip install 'medcouncil[hf]'`") from None
    offline = not Path(hf_id).exists() and not hub_reachable()
    if offline:
        # No network: read the local cache only, at once (instead of the hub client's minute of retries).
        datasets.config.HF_HUB_OFFLINE = huggingface_hub.constants.HF_HUB_OFFLINE = True
    try:
        data = datasets.load_dataset(hf_id, name=config, split=split)
    except Exception as error:  # offline, unknown id, unknown config: the library raises many types
        first = first_line(error)
        if offline:
            first = "not in the local Hugging Face cache, and huggingface.co is unreachable"
        raise ConfigError(f"hf://{hf_id}: cannot load config {config}, split {split}: {first}") from None
    for index, row in enumerate(data, 1):
        yield index, dict(row)


def _load_hf(
    hf_id: str, entry: Registered | None, subsets: list[str | None], split: str | None, strict: bool
) -> tuple[list[Sample], list[MalformedRow]]:
    samples: list[Sample] = []
    skipped: list[MalformedRow] = []
    for subset in subsets:
        split_name = split or (entry.hf_split if entry else "test")
        rows = list(_hf_rows(hf_id, subset, split_name))
        shape: Format | None
        if entry is not None:
            shape, args = entry.format, dict(entry.hf_args)
        else:
            shape, args = sniff([row for _, row in rows[:SAMPLE_ROWS]], Path(hf_id))
        adapter = shape.adapter if shape is not None else generic.record_to_sample
        if shape is not None and shape.takes_subset:
            args["subset"] = subset or ""
        source = Path(f"hf://{hf_id}/{subset or 'default'}/{split_name}")
        more, bad = convert_rows(source, rows, adapter, strict, **args)
        samples += more
        skipped += bad
    return samples, skipped


def registered_files(entry: Registered, subset: str | None, root: Path | None) -> list[Path] | None:
    """The registered dataset's local files, or None when any is missing (then its HF dataset is tried)."""
    if root is None:
        return None
    templated = [f for f in entry.files if "{subset}" in f]
    if not templated:
        existing = [root / f for f in entry.files if (root / f).is_file()]
        return existing[:1] or None
    found = []
    for name in [subset] if subset else entry.subsets:
        match = next(
            (root / f.format(subset=name) for f in templated if (root / f.format(subset=name)).is_file()), None
        )
        if match is None:
            return None
        found.append(match)
    return found or None


def _missing_locally(entry: Registered, subset: str | None, root: Path | None) -> str:
    """Which of a registered dataset's local files are missing, for the error when its HF fallback fails too."""
    if root is None:
        return f"{entry.name}: no data directory (--data-dir, {ENV_DATA_DIR}, ./data or ../shared/data)"
    missing = []
    for name in [subset] if subset else list(entry.subsets) or [""]:
        candidates = [f.format(subset=name) for f in entry.files]
        if not any((root / candidate).is_file() for candidate in candidates):
            missing.append(" or ".join(candidates))
    return f"{entry.name}: not found under {root}: {'; '.join(missing)}"


def _fingerprint(samples: list[Sample]) -> str:
    digest = hashlib.sha256()
    for sample in samples:
        digest.update(sample.model_dump_json(include={"id", "question", "options", "answer"}).encode())
    return digest.hexdigest()


def load_dataset(
    dataset: str,
    subset: str | None = None,
    split: str | None = None,
    fields: generic.FieldMap | None = None,
    strict: bool = False,
    data_root: Path | None = None,
) -> tuple[list[Sample], DatasetInfo]:
    """Samples of ``dataset`` (filtered to ``subset`` when the subset is a field, not a file) and what was read.

    Raises:
        ConfigError: unknown dataset, missing file, unreadable format, HF dataset not loadable.
        MalformedRow: the first bad row, when ``strict``.
    """
    entry = DATASETS.get(dataset.lower())
    path = Path(dataset).expanduser()
    filter_subset = subset is not None
    if entry is not None:
        found = registered_files(entry, subset, data_dir(data_root))
        if found:
            samples, skipped = [], []
            for file in found:
                more, bad = load_path(file, fields, strict, entry.adapter)
                samples += more
                skipped += bad
            source = ", ".join(map(str, found))
            filter_subset = filter_subset and not any("{subset}" in f for f in entry.files)
        elif entry.hf_id:
            wanted: list[str | None] = [subset] if subset else [*entry.subsets] or [None]
            try:
                samples, skipped = _load_hf(entry.hf_id, entry, wanted, split, strict)
            except ConfigError as error:
                raise ConfigError(f"{_missing_locally(entry, subset, data_dir(data_root))}; {error}") from None
            source, filter_subset = f"hf://{entry.hf_id}", filter_subset and not entry.subsets
        else:
            where = data_dir(data_root)
            raise ConfigError(
                f"{dataset}: {', '.join(entry.files)} not found under the data directory "
                f"({where or 'none: set --data-dir or MEDCOUNCIL_DATA_DIR'})"
            )
    elif path.exists() or path.suffix.lower() in DATA_FILES or dataset.startswith((".", "/", "~")):
        samples, skipped = load_path(path, fields, strict)
        source = str(path)
    elif "/" in dataset:
        name = HF_IDS.get(dataset.lower())
        known = DATASETS[name] if name else None
        wanted = [subset] if subset else [*(known.subsets if known else ())] or [None]
        samples, skipped = _load_hf(dataset, known, wanted, split, strict)
        source, filter_subset = f"hf://{dataset}", False
    else:
        raise ConfigError(f"unknown dataset {dataset!r}: a path, an HF id (owner/name) or one of {sorted(DATASETS)}")
    if subset and filter_subset:
        kept = [s for s in samples if s.metadata.get("subset", "").lower() == subset.lower()]
        if not kept:
            seen = sorted({s.metadata.get("subset", "") for s in samples} - {""})
            raise ConfigError(f"{dataset}: no items in subset {subset!r} (subsets: {seen})")
        samples = kept
    samples, renamed = unique_ids(samples)
    info = DatasetInfo(
        dataset=dataset,
        source=source,
        subset=subset,
        split=split,
        renamed_ids=renamed,
        fingerprint=_fingerprint(samples),
        rows=len(samples),
        skipped=len(skipped),
        skipped_rows=[str(e) for e in skipped[:50]],
    )
    return samples, info


class Selection(BaseModel):
    """The dataset block of a command (``--dataset``, ``--subset``, ``--split``, ``--limit``, ``--fields``,
    ``--strict-rows``, ``--data-dir``): what to load and how strictly, checked before anything is read."""

    model_config = ConfigDict(frozen=True)

    dataset: str
    subset: str | None = None
    split: str | None = None
    limit: int | None = Field(default=None, ge=1)
    fields: str | None = None
    """A ``--fields`` mapping, parsed (and refused when wrong) by :meth:`mapping`."""
    strict: bool = False
    data_dir: Path | None = None

    def mapping(self) -> generic.FieldMap | None:
        return generic.FieldMap.parse(self.fields) if self.fields else None

    def load(self) -> tuple[list[Sample], DatasetInfo]:
        """The selected items (the first ``limit``) and what was read (counts before the limit).

        Raises:
            ConfigError: as :func:`load_dataset`.
            MalformedRow: the first bad row, when ``strict``.
        """
        samples, info = load_dataset(self.dataset, self.subset, self.split, self.mapping(), self.strict, self.data_dir)
        return (samples[: self.limit] if self.limit else samples), info

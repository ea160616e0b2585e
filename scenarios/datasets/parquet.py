"""Parquet files (how Hugging Face datasets are stored and exported), read row by row where pyarrow is installed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from medcouncil.serving.common.errors import ConfigError, first_line

BATCH_ROWS = 1024


def parquet_rows(path: Path) -> Iterator[tuple[int, Any]]:
    """(row number from 1, record as plain Python values) of a Parquet file, read in batches.

    Raises:
        ConfigError: pyarrow is not installed, or the file is not Parquet (naming it).
    """
    try:
        import pyarrow
        import pyarrow.parquet as pq
    except ImportError:
        raise ConfigError(f"{path}: reading Parquet needs pyarrow: pip install -e '.[hf]'") from None
    try:
        table = pq.ParquetFile(path)
    except (OSError, pyarrow.ArrowException) as error:
        raise ConfigError(f"{path}: not a readable Parquet file ({first_line(error)})") from None
    number = 0
    try:
        for batch in table.iter_batches(batch_size=BATCH_ROWS):
            for record in batch.to_pylist(maps_as_pydicts="strict"):  # a map column as an object, not pairs
                number += 1
                yield number, record
    except (OSError, pyarrow.ArrowException) as error:
        raise ConfigError(f"{path}: unreadable after row {number} ({first_line(error)})") from None

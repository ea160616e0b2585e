"""The one frozen sample schema every dataset is normalised into, and reading rows with their line numbers."""

from __future__ import annotations

import ast
import csv
import io
import json
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from medcouncil.serving.common.errors import ConfigError, first_line
from medcouncil.serving.common.jsonl import (
    BadLine,
    for_command,
    iter_jsonl,
    json_type,
    load_json,
    parse_json,
    read_text,
)

Item = TypeVar("Item")
LETTERS = "ABCDEFGHIJ"
"""Option letters: up to 10 options (A-J), as MMLU-Pro has."""


class Sample(BaseModel):
    """One multiple-choice item: the same shape for MedQA, MedMCQA, PubMedQA, MMLU and KorMedMCQA."""

    model_config = ConfigDict(frozen=True)

    id: str
    question: str
    options: dict[str, str]
    """Lettered options, A first, in order (2 to 10: A..J)."""
    answer: str
    """The gold letter."""
    metadata: dict[str, str] = {}

    @model_validator(mode="after")
    def _consistent(self) -> Sample:
        letters = list(self.options)
        if len(letters) < 2:
            raise ValueError(f"options: {len(letters)} given, at least 2 are needed")
        if len(letters) > len(LETTERS):
            raise ValueError(f"options: {len(letters)} given, at most {len(LETTERS)} (A-J) are supported")
        if letters != list(LETTERS[: len(letters)]):
            if sorted(letters) == list(LETTERS[: len(letters)]):
                raise ValueError(f"options: letters out of order ({', '.join(letters)}); expected A, B, C... in order")
            raise ValueError(f"options: letters must be A, B, C... with none missing, got {', '.join(letters)}")
        if self.answer not in self.options:
            raise ValueError(f"answer: {self.answer!r} is not one of the options {letters[0]}-{letters[-1]}")
        if not self.question.strip():
            raise ValueError("question: empty")
        empty = [letter for letter, text in self.options.items() if not text.strip()]
        if empty:
            raise ValueError(f"options: option {', '.join(empty)} is empty")
        return self


class MalformedRow(ValueError):
    """A row that cannot become a sample; ``str()`` names the file and line."""

    def __init__(self, path: Path, line: int, reason: str) -> None:
        super().__init__(f"{path}:{line}: {reason}")
        self.path, self.line, self.reason = path, line, reason


def validation_reason(error: ValidationError) -> str:
    """One line naming the field and the problem (not pydantic's "1 validation error for Sample")."""
    first = error.errors()[0]
    field = ".".join(str(part) for part in first["loc"])
    message = str(first["msg"]).removeprefix("Value error, ")
    return f"{field}: {message}" if field else message


def jsonl_rows(path: Path) -> Iterator[tuple[int, Any]]:
    """(line number, parsed JSON) for each non-empty line; a line that is not JSON (or not UTF-8, or nested too
    deeply, ...) comes back as a MalformedRow naming it. Lines end at ``\\n`` only; a UTF-8 BOM is accepted."""
    try:
        for number, value in iter_jsonl(path):
            yield number, MalformedRow(path, number, value.reason) if isinstance(value, BadLine) else value
    except OSError as error:
        raise ConfigError(f"{path}: cannot read ({error.strerror})") from None


def read_text_utf8(path: Path) -> str:
    """A whole file's UTF-8 text (BOM dropped).

    Raises:
        ConfigError: a byte that is not UTF-8 (naming its line), or the file cannot be read.
    """
    return for_command(read_text, path)


def json_items(path: Path) -> Iterator[tuple[int, Any]]:
    """The items of a JSON file: a list of records, or an object of id -> record.

    Raises:
        ConfigError: not UTF-8, not JSON (with its line), or neither a list nor an object.
    """
    data = load_json(path)
    if isinstance(data, dict):
        items: Iterable[tuple[Any, Any]] = data.items()
    elif isinstance(data, list):
        items = enumerate(data)
    else:
        raise ConfigError(f"{path}: expected a list of items or an object of id -> item, got {json_type(data)}")
    for number, (key, value) in enumerate(items, 1):
        yield number, {"id": key, **value} if isinstance(value, dict) and isinstance(data, dict) else value


def csv_rows(path: Path, header: bool = False) -> Iterator[tuple[int, Any]]:
    """(line number where the record starts, row) of a CSV file: dicts with a header, lists without. A record that
    spans lines is named by its first line; a broken record (a NUL byte, an overlong field) comes back as a
    MalformedRow and ends the file (the parser cannot find the next record reliably)."""
    text = read_text_utf8(path)
    reader: Any = csv.DictReader(io.StringIO(text, newline="")) if header else csv.reader(io.StringIO(text, newline=""))
    start = 2 if header else 1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            yield start, MalformedRow(path, start, f"not CSV ({error})")
            return
        yield start, row
        start = reader.line_num + 1


def letter_options(values: list[Any]) -> dict[str, str]:
    """Non-empty values as options A, B, ... in order.

    Raises:
        ValueError: more values than option letters.
    """
    kept = [str(v).strip() for v in values if v is not None and str(v).strip()]
    if len(kept) > len(LETTERS):
        raise ValueError(f"options: {len(kept)} given, at most {len(LETTERS)} (A-J) are supported")
    return {LETTERS[i]: text for i, text in enumerate(kept)}


def options_field(value: Any, name: str = "options") -> dict[str, str]:
    """A record's options field: an object of letter -> text (in letter order), a list (lettered A, B, ... in order),
    or either of them written as text (JSON, or the Python repr some copies store).

    Raises:
        ValueError: naming the field, when it holds anything else.
    """
    if isinstance(value, str):
        value = _structure(value, name)
    if isinstance(value, dict):
        return dict(sorted((str(key), str(text)) for key, text in value.items()))
    if isinstance(value, list):
        return letter_options(value)
    raise ValueError(f"{name}: {json_type(value)}, not a list or an object of options")


def _structure(text: str, name: str) -> Any:
    try:
        return parse_json(text)
    except ValueError:
        pass
    try:
        return ast.literal_eval(text)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        raise ValueError(f"{name}: text that is neither a list nor an object of options") from None


def whole_number(value: Any, name: str) -> int:
    """A field that holds a whole number (``3``, ``"3"``, ``3.0``).

    Raises:
        ValueError: naming the field and the value.
    """
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("+-").isdigit() and len(value.strip()) < 10:
        return int(value.strip())
    raise ValueError(
        f"{name}: {json.dumps(value)[:40] if not isinstance(value, str) else repr(value[:40])} is not a whole number"
    )


def row_reason(error: Exception, record: Any) -> str:
    """Why a record could not become an item, in the data's terms: a missing field, a record of the wrong kind, or
    the adapter's own one-line reason; never a parser's internals."""
    if isinstance(error, KeyError):
        return f"missing field {error}"
    if not isinstance(record, dict) and isinstance(error, (TypeError, AttributeError, KeyError)):
        return f"{json_type(record)}, not a record (an object of fields)"
    if isinstance(error, (ValueError, IndexError)):
        return first_line(error)
    return f"a field holds a value of the wrong kind ({type(error).__name__})"


def letter_at(index: int) -> str:
    """The option letter of a 0-based answer index.

    Raises:
        ValueError: the index is outside A-J.
    """
    if not 0 <= index < len(LETTERS):
        raise ValueError(f"answer: index {index} is outside the option letters A-J")
    return LETTERS[index]


def load_samples(
    path: Path, record_to_sample: Any, strict: bool = False, csv_header: bool = False, **adapter_args: Any
) -> tuple[list[Sample], list[MalformedRow]]:
    """Every sample of a JSONL, JSON (id → record, or a list) or CSV file, with the rows skipped.

    Raises:
        MalformedRow: the first bad row, when ``strict``.
    """
    if path.suffix == ".csv":
        rows: Iterator[tuple[int, Any]] = csv_rows(path, header=csv_header)
    elif path.suffix == ".json":
        rows = json_items(path)
    else:
        rows = jsonl_rows(path)
    return convert_rows(path, rows, record_to_sample, strict, **adapter_args)


def convert_rows(
    path: Path,
    rows: Iterable[tuple[int, Any]],
    record_to_sample: Callable[..., Item],
    strict: bool = False,
    limit: int | None = None,
    **adapter_args: Any,
) -> tuple[list[Item], list[MalformedRow]]:
    """Items (samples, or episode cases) from (line number, record) pairs, stopping after ``limit`` of them; a bad
    row becomes a MalformedRow naming ``path`` and its line."""
    samples: list[Item] = []
    skipped: list[MalformedRow] = []
    for number, record in rows:
        try:
            if isinstance(record, MalformedRow):
                raise record
            samples.append(record_to_sample(record, number - 1, **adapter_args))
        except MalformedRow as error:
            bad = error
        except ValidationError as error:
            bad = MalformedRow(path, number, validation_reason(error))
        except (KeyError, ValueError, TypeError, IndexError, AttributeError) as error:
            bad = MalformedRow(path, number, row_reason(error, record))
        else:
            if limit and len(samples) >= limit:
                break
            continue
        if strict:
            raise bad
        skipped.append(bad)
    return samples, skipped

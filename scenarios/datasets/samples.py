"""The one frozen sample schema every dataset is normalised into, and reading rows with their line numbers."""

from __future__ import annotations

import ast
import csv
import io
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
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
        for name, text in (("id", self.id), ("question", self.question), *self.options.items()):
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                where = f"option {name}" if len(name) == 1 else name
                raise ValueError(f"{where}: not valid Unicode (a lone surrogate, half of a character)") from None
        return self


class MalformedRow(ValueError):
    """A row that cannot become a sample; ``str()`` names the file and line."""

    def __init__(self, path: Path, line: int, reason: str) -> None:
        super().__init__(f"{path}:{line}: {reason}" if line > 0 else f"{path}: {reason}")
        self.path, self.line, self.reason = path, line, reason
        """``line`` 0: the row is named in ``reason`` (an item made from a dataset, by its id)."""


def print_skipped(
    rows: Sequence[object], total: int | None = None, shown: int = 10, what: str = "malformed row"
) -> None:
    """Warn on stderr of the malformed rows (or other ``what``) skipped: the first ``shown``, then how many more of
    ``total``."""
    from rich.markup import escape

    from medcouncil.serving.common.console import err_console

    total = len(rows) if total is None else total
    for row in rows[:shown]:
        err_console.print(f"[warning]skipped {what}:[/] {escape(str(row))}", soft_wrap=True)
    if total > shown:
        err_console.print(f"[warning]… and {total - shown} more {what}s skipped[/]")


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


def _saved_json_lines(path: Path) -> bool:
    """JSON Lines saved as ``.json``: the first line that holds anything is a whole JSON object on its own, and more
    lines follow it (a pretty-printed list or object opens with a line that is not)."""
    try:
        lines = [line for line in read_text(path).split("\n") if line.strip()]
        return len(lines) > 1 and isinstance(parse_json(lines[0]), dict)
    except (ValueError, OSError, RecursionError, BadLine):
        return False


def json_items(path: Path) -> Iterator[tuple[int, Any]]:
    """The items of a JSON file: a list of records, or an object of id -> record; JSON Lines saved as ``.json`` (one
    object per line, several lines) are read as such.

    Raises:
        ConfigError: not UTF-8, not JSON (with its line), or neither a list nor an object.
    """
    try:
        data = load_json(path)
    except ConfigError:
        if _saved_json_lines(path):
            yield from jsonl_rows(path)
            return
        raise
    if isinstance(data, dict) and data and all(isinstance(value, list) for value in data.values()):
        names = ", ".join(map(str, list(data)[:5]))
        raise ConfigError(
            f"{path}: an object of lists ({names}), not a list of items or an object of id -> item: save the list "
            "to read (a split, the questions) as its own file"
        )
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
    spans lines is named by its first line; a broken record (an overlong field, a quote never closed) comes back as a
    MalformedRow and ends the file (the parser cannot find the next record reliably)."""
    text = read_text_utf8(path)
    consumed: list[str] = []  # the raw lines of the record being read
    ended = False

    def lines() -> Iterator[str]:
        nonlocal ended
        for line in io.StringIO(text, newline=""):
            consumed.append(line)
            yield line
        ended = True

    source = lines()
    reader: Any = csv.DictReader(source) if header else csv.reader(source)
    start = 2 if header else 1
    while True:
        consumed.clear()
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            rest = text.count("\n") + (not text.endswith("\n")) - start + 1
            unread = f"; the rest of the file ({rest} lines from here) is not read" if rest > 1 else ""
            yield start, MalformedRow(path, start, f"not CSV ({error}){unread}")
            return
        if ended and len(consumed) > 1:
            # A record reads past the file's last line only inside a quote never closed: the lenient reader makes
            # every later row part of one field (a strict one would stop at "unexpected end of data").
            after = len(consumed) - 1
            reason = f"a quote opened in this record is never closed: the {after} lines after it are not read"
            yield start, MalformedRow(path, start, reason)
            return
        yield start, row
        start = reader.line_num + 1


def _null(value: Any) -> bool:
    """None, or the NaN a spreadsheet export writes for an empty cell."""
    return value is None or (isinstance(value, float) and value != value)


def text_of(value: Any, name: str) -> str:
    """A text field: strings as they are, numbers as written.

    Raises:
        ValueError: naming the field, when it is null (None, NaN) or a list or object, never turned into "None".
    """
    if _null(value):
        raise ValueError(f"{name}: null")
    if isinstance(value, bytes):  # a binary column of a Parquet file
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"{name}: bytes that are not UTF-8 text") from None
    if isinstance(value, dict | list):
        raise ValueError(f"{name}: {json_type(value)}, not text")
    return str(value)


def _blank(value: Any) -> bool:
    return _null(value) or not str(value).strip()


def letter_options(values: list[Any]) -> dict[str, str]:
    """The values as options A, B, ... in order; blank values at the end are absent options (a four-option item in
    a five-column format), a blank one before the last is an error: dropping it would move the later letters and
    the answer with them.

    Raises:
        ValueError: more values than option letters; a blank option before the last one.
    """
    kept = list(values)
    while kept and _blank(kept[-1]):
        kept.pop()
    if len(kept) > len(LETTERS):
        raise ValueError(f"options: {len(kept)} given, at most {len(LETTERS)} (A-J) are supported")
    holes = [LETTERS[i] for i, value in enumerate(kept) if _blank(value)]
    if holes:
        raise ValueError(f"options: option {', '.join(holes)} is empty while a later one is not")
    return {LETTERS[i]: text_of(value, f"option {LETTERS[i]}").strip() for i, value in enumerate(kept)}


def options_field(value: Any, name: str = "options") -> dict[str, str]:
    """A record's options field: an object of letter -> text (in letter order; ``a``/`` A `` read as ``A``), a list
    (lettered A, B, ... in order; ``{"key": "A", "value": ...}`` / ``{"label", "text"}`` entries read as such),
    or either of them written as text (JSON, or the Python repr some copies store).

    Raises:
        ValueError: naming the field, when it holds anything else, or an option that is null.
    """
    if isinstance(value, str):
        value = structure_of(value, name)
    if isinstance(value, list) and value and all(isinstance(entry, dict) for entry in value):
        value = _keyed_entries(value, name)
    if isinstance(value, dict) and set(value) == {"label", "text"} and isinstance(value["label"], list):
        labels, texts = value["label"], value["text"]  # HF ARC-style {"label": [...], "text": [...]}
        if not isinstance(texts, list) or len(labels) != len(texts):
            raise ValueError(f"{name}: 'label' and 'text' lists of different lengths")
        names = [str(label).strip() for label in labels]
        if names == [str(n) for n in range(1, len(names) + 1)]:  # ARC's "1".."4" labels are the letters A..D
            names = list(LETTERS[: len(names)])
        value = dict(zip(names, texts, strict=True))
    if isinstance(value, dict) and (first := _numbered_from(value)) is not None:  # {"1": .., "2": ..}: A, B, ..
        value = {LETTERS[int(str(key).strip()) - first]: text for key, text in value.items()}
    if isinstance(value, dict):
        keys = [str(key).strip() for key in value]
        if all(len(key) == 1 and key.upper() in LETTERS for key in keys):
            keys = [key.upper() for key in keys]
        pairs = sorted(zip(keys, value.values(), strict=True), key=lambda pair: pair[0])
        while pairs and _blank(pairs[-1][1]):  # {"A".."E", "E": null}: a four-option item in a five-option export
            pairs.pop()
        return {key: text_of(text, f"option {key}") for key, text in pairs}
    if isinstance(value, list):
        return letter_options(value)
    raise ValueError(f"{name}: {json_type(value)}, not a list or an object of options")


def _numbered_from(options: dict[Any, Any]) -> int | None:
    """0 or 1 when an options object is keyed by consecutive numbers from it (MedExpQA's ``"1".."5"``), else None."""
    keys = [str(key).strip() for key in options]
    if not keys or not all(key.isdigit() and len(key) <= 2 for key in keys):
        return None
    numbers = sorted(int(key) for key in keys)
    consecutive = numbers == list(range(numbers[0], numbers[0] + len(numbers)))
    return numbers[0] if consecutive and numbers[0] in (0, 1) and len(numbers) <= len(LETTERS) else None


def _keyed_entries(entries: list[dict[str, Any]], name: str) -> dict[str, Any]:
    """``[{"key": "A", "value": "..."}, ...]`` (and ``label``/``text``): letter -> text."""
    for key_name, text_name in (("key", "value"), ("label", "text"), ("letter", "text")):
        if all(set(entry) >= {key_name, text_name} for entry in entries):
            return {str(entry[key_name]): entry[text_name] for entry in entries}
    raise ValueError(f"{name}: a list of objects without key/value (or label/text) fields")


def structure_of(text: str, name: str) -> Any:
    """A list or an object written as text in a field (JSON, or the Python repr some CSV exports store)."""
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
        f"{name}: {json.dumps(value, default=str)[:40] if not isinstance(value, str) else repr(value[:40])} is not a "
        "whole number"
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


def record_id(record: dict[str, Any], index: int, *names: str) -> str:
    """The record's own id (the first of ``names`` it holds, not blank), else its 0-based position."""
    for name in names:
        value = record.get(name)
        if not _null(value) and str(value).strip():
            return str(value).strip()
    return str(index)


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
    """Every sample of a JSONL, JSON (id → record, or a list), CSV or Parquet file, with the rows skipped.

    Raises:
        MalformedRow: the first bad row, when ``strict``.
    """
    suffix = path.suffix.lower()
    if suffix == ".csv":
        rows: Iterator[tuple[int, Any]] = csv_rows(path, header=csv_header)
    elif suffix == ".parquet":
        from medcouncil.scenarios.datasets.parquet import parquet_rows

        rows = parquet_rows(path)
    elif suffix == ".json":
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

"""Reading JSON and JSON Lines files whatever they hold: every failure is a reason naming the line, never a crash.

Used by every reader of user files (datasets, training data) and of versioned run files (:func:`read_versioned`): a
UTF-8 BOM is accepted, lines end at ``\\n`` only, and deep nesting, overlong integers and bytes that are not UTF-8
become reasons like any syntax error.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from medcouncil.serving.common.errors import ConfigError, first_line

BOM = b"\xef\xbb\xbf"
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
"""A ``\\uD800``-``\\uDFFF`` escape: paired it decodes to one character, alone it is not Unicode at all."""
_NOT_TEXT = (
    (b"\x1f\x8b", "gzip-compressed: decompress it first (gunzip)"),
    (b"PK\x03\x04", "a ZIP archive (or an .xlsx workbook): extract it, or export the sheet as CSV"),
    (b"PAR1", "a Parquet file: name it .parquet to read it as one (datasets need pyarrow: the hf extra)"),
    (b"\xff\xfe", "UTF-16 text: save the file as UTF-8"),
    (b"\xfe\xff", "UTF-16 text: save the file as UTF-8"),
)
"""A file's first bytes → what it is, for the one-line error when it is not UTF-8 text."""


class BadLine(ValueError):
    """A line (or a whole file) that cannot be read; ``line`` is 1-based, ``reason`` is one line."""

    def __init__(self, path: Path, line: int, reason: str) -> None:
        super().__init__(f"{path}:{line}: {reason}")
        self.path, self.line, self.reason = path, line, reason


def parse_json(text: str | bytes) -> Any:
    """``json.loads`` whose failures are all ValueErrors: JSONDecodeError (with its position) for syntax, a
    short reason for nesting too deep for the parser and integers too long to convert."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        raise
    except RecursionError:
        raise ValueError("not JSON (nested too deeply)") from None
    except ValueError as error:  # "Exceeds the limit (4300 digits) for integer string conversion"
        raise ValueError(f"not JSON ({first_line(error)})") from None
    source = text if isinstance(text, str) else text.decode("utf-8", "replace")
    if _SURROGATE_ESCAPE.search(source):
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError as error:
            lone = error.object[error.start : error.end]
            escape = f"\\u{ord(lone[0]):04x}"
            at = source.lower().find(escape)
            raise LoneSurrogate(
                f"not valid Unicode (a lone surrogate escape {escape}, half of a character)",
                source.count("\n", 0, max(at, 0)) + 1,
            ) from None
    return value


class LoneSurrogate(ValueError):
    """JSON whose ``\\uD800``-style escape is half of a character; ``line`` is where (1-based) in the text."""

    def __init__(self, message: str, line: int) -> None:
        super().__init__(message)
        self.line = line


def json_reason(error: ValueError) -> str:
    if isinstance(error, json.JSONDecodeError):
        return f"not JSON ({error.msg}, column {error.colno})"
    return str(error)


def decode(data: bytes, path: Path, first_line: int = 1) -> str:
    """UTF-8 text, a leading BOM dropped.

    Raises:
        BadLine: a byte that is not UTF-8, naming its line.
    """
    what = next((kind for magic, kind in _NOT_TEXT if first_line == 1 and data.startswith(magic)), None)
    if what is not None:  # a ZIP or Parquet file may even begin with bytes that decode
        raise BadLine(path, 1, f"not UTF-8 text: the file is {what}")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = first_line + data.count(b"\n", 0, error.start)
        byte = data[error.start]
        raise BadLine(path, line, f"not UTF-8 (byte 0x{byte:02x}); save the file as UTF-8") from None


def read_text(path: Path) -> str:
    """A whole file's UTF-8 text. Raises: BadLine (not UTF-8), OSError."""
    return decode(path.read_bytes(), path)


def iter_jsonl(path: Path) -> Iterator[tuple[int, Any | BadLine]]:
    """(line number, parsed value or the BadLine saying why not) for each non-blank line.

    Raises:
        OSError: the file cannot be opened.
    """
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, 1):
            try:
                line = decode(raw if number > 1 else raw.removeprefix(BOM), path, number)
            except BadLine as error:
                yield number, error
                continue
            if not line.strip():
                continue
            try:
                yield number, parse_json(line)
            except ValueError as error:
                yield number, BadLine(path, number, json_reason(error))


def first_object(path: Path) -> dict[str, Any] | None:
    """The first JSON object of a JSONL file, to recognise its format (a bad line before it does not hide the
    format: the reader reports it later); None when there is none or the file cannot be read."""
    try:
        for _, record in iter_jsonl(path):
            if isinstance(record, dict):
                return record
    except OSError:
        return None
    return None


def read_json(path: Path) -> Any:
    """A whole JSON file. Raises: BadLine (not UTF-8, not JSON with its line), OSError."""
    text = read_text(path)
    try:
        return parse_json(text)
    except json.JSONDecodeError as error:
        raise BadLine(path, error.lineno, json_reason(error)) from None
    except LoneSurrogate as error:
        raise BadLine(path, error.line, str(error)) from None
    except ValueError as error:
        raise BadLine(path, 1, str(error)) from None


Versioned = TypeVar("Versioned", bound=BaseModel)


Read = TypeVar("Read")


def for_command(read: Callable[[Path], Read], path: Path) -> Read:
    """``read(path)`` (:func:`read_text`, :func:`read_json`) for a command. Raises: ConfigError: one line naming
    ``path`` (and the line, for a syntax error or a byte that is not UTF-8): unreadable, not UTF-8, not JSON."""
    try:
        return read(path)
    except BadLine as error:
        raise ConfigError(str(error)) from None
    except OSError as error:
        raise ConfigError(f"{path}: cannot read ({error.strerror or error})") from None


def load_json(path: Path) -> Any:
    """A whole JSON file, for a command (see :func:`for_command`)."""
    return for_command(read_json, path)


def read_versioned_object(path: Path, what: str) -> dict[str, Any]:
    """The JSON object of a versioned run file, with a whole-number ``schema_version`` (missing: version 0).

    Raises:
        ConfigError: one line naming ``path``: unreadable, not UTF-8, not JSON (with its line), not an object, or a
            version that is not a whole number.
    """
    data = load_json(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: not {what} ({json_type(data)}, not an object)")
    version = data.get("schema_version", 0)
    if isinstance(version, bool) or not isinstance(version, int):
        raise ConfigError(f"{path}: not {what} (schema_version {json.dumps(version)[:40]} is not a whole number)")
    return data


def validate_versioned(path: Path, data: dict[str, Any], kind: type[Versioned], newest: int, what: str) -> Versioned:
    """``data`` (from :func:`read_versioned_object`) as ``kind``.

    Raises:
        ConfigError: a version newer than ``newest`` (this medcouncil cannot read it), or the first field that does
            not fit, named.
    """
    version = data.get("schema_version", 0)
    if version > newest:
        raise ConfigError(f"{path}: run log version {version} is newer than this medcouncil knows ({newest})")
    try:
        return kind.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(map(str, first["loc"]))
        field = f"{where}: " if where else ""
        raise ConfigError(f"{path}: not {what} ({field}{first['msg']})") from None


def read_versioned(path: Path, kind: type[Versioned], newest: int, what: str) -> Versioned:
    """The one reader of versioned run files (a benchmark or episode run's ``run.json``, a distillation's
    manifest): a JSON object whose ``schema_version`` is a whole number no newer than ``newest``, as ``kind``.

    Raises:
        ConfigError: one line naming ``path``: see :func:`read_versioned_object` and :func:`validate_versioned`.
    """
    return validate_versioned(path, read_versioned_object(path, what), kind, newest, what)


def json_type(value: Any) -> str:
    """What a parsed JSON value is, for messages: "null", "a boolean", "a number", "a string", "a list", "an object"."""
    names = {
        type(None): "null",
        bool: "a boolean",
        int: "a number",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "an object",
    }
    return names.get(type(value), type(value).__name__)

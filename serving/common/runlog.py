"""What every run log shares (a benchmark run, an episode run, a distillation): the header of its manifest, and
journal files appended one flushed line at a time and read back past a line a kill cut short."""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TypeVar

from pydantic import BaseModel, Field, ValidationError

log = logging.getLogger(__name__)


Line = TypeVar("Line", bound=BaseModel)


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def append_line(handle: IO[str], line: str) -> None:
    handle.write(line + "\n")
    handle.flush()
    os.fsync(handle.fileno())


def write_manifest(path: Path, manifest: BaseModel) -> None:
    """Replace a run's manifest at ``path`` atomically (a temporary file, then a rename); a :class:`RunHeader`'s
    ``updated`` stamp is renewed."""
    if isinstance(manifest, RunHeader):
        manifest.touch()
    temporary = path.with_suffix(".tmp")
    temporary.write_text(manifest.model_dump_json(indent=2), encoding="utf-8")
    temporary.replace(path)


def drop_cut_line(path: Path) -> None:
    """A kill mid-write can leave a last line without its newline: cut it off before appending, so that it never
    becomes a broken line in the middle of the journal (its item runs again)."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return
    if not size:
        return
    with path.open("rb+") as handle:
        handle.seek(-1, os.SEEK_END)
        if handle.read(1) == b"\n":
            return
        keep, block = size, 1 << 16
        while keep > 0:
            start = max(0, keep - block)
            handle.seek(start)
            chunk = handle.read(keep - start)
            cut = chunk.rfind(b"\n")
            if cut >= 0:
                keep = start + cut + 1
                break
            keep = start
        handle.truncate(keep)
        handle.flush()
        os.fsync(handle.fileno())


def read_lines(path: Path, kind: type[Line]) -> list[Line]:
    """Every valid line of a journal file.

    Lines end at ``\n`` only: JSON writes U+2028 and U+0085 raw inside strings, and ``str.splitlines`` would cut an
    answer in two there. The last line may be cut short by a kill (even inside a UTF-8 character): it is skipped
    quietly and its item runs again. A bad line anywhere else is not a kill: it is skipped with a warning that
    names ``FILE:LINE``.
    """
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return []
    lines = raw.split(b"\n")
    last = len(lines)  # the line after the last "\n": empty in a complete file, cut short by a kill otherwise
    parsed = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            parsed.append(kind.model_validate_json(line.decode("utf-8")))
        except (ValidationError, UnicodeDecodeError) as error:
            if number < last:
                reason = error.errors()[0]["msg"] if isinstance(error, ValidationError) else "not UTF-8"
                log.warning(
                    "%s:%d: unreadable journal line skipped (%s): not counted; a resumed run answers it again",
                    path,
                    number,
                    reason,
                )
    return parsed


class RunHeader(BaseModel):
    """The fields every run manifest starts with: its schema version (a reader refuses a newer one), the medcouncil
    version that wrote it, when it was created and last updated (:meth:`touch`)."""

    schema_version: int = 1
    medcouncil_version: str = ""
    created: str = Field(default_factory=now)
    updated: str = Field(default_factory=now)

    def touch(self) -> None:
        self.updated = now()

"""What a dataset adapter module declares, so that the registry finds it without being edited.

An adapter module in ``scenarios/datasets/`` holds ``record_to_sample(record, index, ...) -> Sample`` and declares:

* ``FORMAT``: a :class:`Format`, the record shape it reads, recognised from a file's first record (``matches``),
  with what one record cannot tell settled from the first few hundred (``settle``);
* ``DATASETS`` (optional): the :class:`Registered` names it serves, with their files under the data directory and
  their Hugging Face fallback.

``scenarios/datasets/registry.py`` imports every module of the package that declares a ``FORMAT`` and tries the
formats in increasing :attr:`Format.order` (the more specific shapes first); the generic field mapping
(``generic.py``) is the last resort.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from medcouncil.scenarios.datasets.samples import Sample

Adapter = Callable[..., Sample]


def declaring_modules(
    package: ModuleType, attribute: str, kind: type, skip: frozenset[str] = frozenset()
) -> list[ModuleType]:
    """Every module of ``package`` whose ``attribute`` is a ``kind`` (imported to find out), in name order: how the
    dataset and the episode-source registries find their adapters without a list to edit. ``skip``: modules that
    import the registry being built (importing them from it would be a cycle)."""
    found = []
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda info: info.name):
        if info.name in skip:
            continue
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        if isinstance(getattr(module, attribute, None), kind):
            found.append(module)
    return found


def file_subset(path: Path) -> str:
    """The subset a file's name gives: ``anatomy_test.csv`` → ``anatomy``, ``doctor.jsonl`` → ``doctor``."""
    return path.stem.removesuffix("_test").removesuffix(".test")


@dataclass(frozen=True)
class Format:
    """A record shape and the adapter that reads it."""

    adapter: Adapter
    matches: Callable[[Any, Path], dict[str, Any] | None]
    """(first record, its file) → the adapter's keyword arguments when the record has this shape, else None."""
    order: int
    """Formats are tried in increasing order: a shape that another would also accept comes first."""
    takes_subset: bool = False
    """The adapter takes the subset (a file or a Hugging Face config) as its ``subset`` argument."""
    settle: Callable[[list[Any]], dict[str, Any]] | None = None
    """(the file's first records, up to a few hundred) → adapter arguments one record cannot tell, such as whether
    an answer index counts from 0 or 1; raises ValueError when the records contradict each other."""


@dataclass(frozen=True)
class Registered:
    """A dataset name ``--dataset`` accepts."""

    name: str
    format: Format
    files: tuple[str, ...] = ()
    """Paths under the data directory; ``{subset}`` is filled per subset."""
    hf_id: str | None = None
    """The Hugging Face dataset read when the files are not there."""
    hf_split: str = "test"
    subsets: tuple[str, ...] = ()
    """Subsets that are separate files / HF configs (all of them when none is asked for)."""
    hf_args: dict[str, Any] = field(default_factory=dict)
    """Extra adapter arguments for the Hugging Face rows."""

    @property
    def adapter(self) -> Adapter:
        return self.format.adapter

"""What an episode source module declares, so that ``scenarios/episodes/load.py`` finds it without being edited."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from medcouncil.agents.cases import ClinicalCase

CaseAdapter = Callable[[dict[str, Any], int], ClinicalCase]


@dataclass(frozen=True)
class CaseSource:
    """A format of case files: how a record is recognised and read, and the names it registers."""

    adapter: CaseAdapter
    matches: Callable[[dict[str, Any]], bool]
    """Whether a file's first record (an object) has this format."""
    order: int
    """Sources are tried in increasing order: a shape another would also accept comes first."""
    names: Mapping[str, str] = field(default_factory=dict)
    """``--episodes`` names → their file under the data folder."""

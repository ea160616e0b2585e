"""medcouncil's own case JSON: the fields of :class:`~medcouncil.agents.cases.ClinicalCase`, one object per line."""

from __future__ import annotations

from typing import Any

from medcouncil.agents.cases import ClinicalCase
from medcouncil.scenarios.episodes.sources.base import CaseSource


def record_to_case(record: dict[str, Any], index: int) -> ClinicalCase:
    return ClinicalCase.model_validate({"id": str(index + 1), **record})


def matches(record: dict[str, Any]) -> bool:
    """A case's own fields: a missing one is named per row by the schema."""
    return "opening" in record or "objective" in record


SOURCE = CaseSource(record_to_case, matches, order=90)

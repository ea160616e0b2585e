"""AgentClinic OSCE cases (Schmidgall et al., "AgentClinic", 2024): one JSON object per line, ``OSCE_Examination``
with ``Objective_for_Doctor``, ``Patient_Actor`` (demographics, history, symptoms, past medical and social history,
review of systems), ``Physical_Examination_Findings``, ``Test_Results`` and ``Correct_Diagnosis``."""

from __future__ import annotations

from typing import Any

from medcouncil.agents.cases import ClinicalCase
from medcouncil.scenarios.episodes.sources.base import CaseSource
from medcouncil.scenarios.episodes.sources.facts import flatten

LOCAL_FILE = "episodes/agentclinic_medqa.jsonl"
"""Under the data folder (``--data-dir``, ``MEDCOUNCIL_DATA_DIR``, ``./data``, ``../shared/data``): ``agentclinic``."""


def is_agentclinic(record: dict[str, Any]) -> bool:
    return isinstance(record.get("OSCE_Examination"), dict)


def record_to_case(record: dict[str, Any], index: int) -> ClinicalCase:
    """Raises: KeyError / ValueError (a missing section, an invalid case)."""
    osce = record["OSCE_Examination"]
    actor = osce.get("Patient_Actor") or {}
    symptoms = actor.get("Symptoms") or {}
    primary = symptoms.get("Primary_Symptom", "") if isinstance(symptoms, dict) else ""
    demographics = str(actor.get("Demographics", "")).strip()
    opening = ", ".join(part for part in (demographics, str(primary).strip()) if part)
    diagnosis = osce["Correct_Diagnosis"]
    return ClinicalCase(
        id=str(record.get("id", index + 1)),
        objective=str(osce.get("Objective_for_Doctor", "")).strip(),
        opening=opening,
        patient=tuple(flatten(actor)),
        exam=tuple(flatten(osce.get("Physical_Examination_Findings") or {})),
        tests=tuple(flatten(osce.get("Test_Results") or {})),
        diagnosis=str(diagnosis).strip(),
        source="agentclinic",
    )


SOURCE = CaseSource(record_to_case, is_agentclinic, order=10, names={"agentclinic": LOCAL_FILE})

"""AgentClinic OSCE cases (Schmidgall et al., "AgentClinic", 2024): one JSON object per line, ``OSCE_Examination``
with ``Objective_for_Doctor``, ``Patient_Actor`` (demographics, history, symptoms, past medical and social history,
review of systems), ``Physical_Examination_Findings``, ``Test_Results`` and ``Correct_Diagnosis`` (a text, or a
list: the first name the diagnosis, the others accepted aliases)."""

from __future__ import annotations

from typing import Any

from medcouncil.agents.cases import ClinicalCase
from medcouncil.scenarios.datasets.samples import text_of
from medcouncil.scenarios.episodes.sources.base import CaseSource
from medcouncil.scenarios.episodes.sources.facts import flatten

LOCAL_FILE = "episodes/agentclinic_medqa.jsonl"
"""Under the data folder (``--data-dir``, ``MEDCOUNCIL_DATA_DIR``, ``./data``, ``../shared/data``): ``agentclinic``."""


def is_agentclinic(record: dict[str, Any]) -> bool:
    return isinstance(record.get("OSCE_Examination"), dict)


def _section(osce: dict[str, Any], name: str) -> Any:
    """An optional section: an object (or text, for findings), absent or null as empty. Raises: ValueError."""
    value = osce.get(name) or {}
    if name == "Patient_Actor" and not isinstance(value, dict):
        raise ValueError(f"{name}: {type(value).__name__}, not an object of the patient's facts")
    return value


def record_to_case(record: dict[str, Any], index: int) -> ClinicalCase:
    """Raises: KeyError / ValueError (a missing section, an invalid case)."""
    osce = record["OSCE_Examination"]
    actor = _section(osce, "Patient_Actor")
    symptoms = actor.get("Symptoms") or {}
    primary = symptoms.get("Primary_Symptom", "") if isinstance(symptoms, dict) else ""
    demographics = str(actor.get("Demographics") or "").strip()
    opening = ", ".join(part for part in (demographics, str(primary or "").strip()) if part and part != "None")
    diagnosis = osce["Correct_Diagnosis"]
    names = [text_of(name, "Correct_Diagnosis").strip() for name in diagnosis] if isinstance(diagnosis, list) else []
    if isinstance(diagnosis, list) and not any(names):
        raise ValueError("Correct_Diagnosis: an empty list")
    main = next((name for name in names if name), "") if names else text_of(diagnosis, "Correct_Diagnosis").strip()
    return ClinicalCase(
        id=str(record.get("id", index + 1)),
        objective=str(osce.get("Objective_for_Doctor") or "").strip(),
        opening=opening,
        patient=tuple(flatten(actor)),
        exam=tuple(flatten(_section(osce, "Physical_Examination_Findings"))),
        tests=tuple(flatten(_section(osce, "Test_Results"))),
        diagnosis=main,
        aliases=tuple(name for name in names if name and name != main),
        source="agentclinic",
    )


SOURCE = CaseSource(record_to_case, is_agentclinic, order=10, names={"agentclinic": LOCAL_FILE})

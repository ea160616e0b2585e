"""Turning a source's nested sections into named findings."""

from __future__ import annotations

from typing import Any

from medcouncil.agents.cases import Finding


def humanise(key: str) -> str:
    """``Past_Medical_History`` -> ``Past medical history``; acronyms stay (``Chest_CT`` -> ``Chest CT``)."""
    words = key.replace("_", " ").split()
    kept = [w if (w.isupper() and len(w) > 1) or n == 0 else w.lower() for n, w in enumerate(words)]
    text = " ".join(kept)
    return text[:1].upper() + text[1:]


def flatten(value: Any, prefix: str = "") -> list[Finding]:
    """Every leaf of a nested dict as a finding named by its path (``Vital signs / Blood pressure``); a list of
    texts is one finding; empty leaves are dropped."""
    if isinstance(value, dict):
        found: list[Finding] = []
        for key, inner in value.items():
            name = f"{prefix} / {humanise(str(key))}" if prefix else humanise(str(key))
            found += flatten(inner, name)
        return found
    if isinstance(value, list):
        text = "; ".join(str(item).strip() for item in value if str(item).strip() and not isinstance(item, dict))
        nested = [f for item in value if isinstance(item, dict) for f in flatten(item, prefix)]
        return ([Finding(name=prefix or "Finding", result=text)] if text else []) + nested
    text = "" if value is None else str(value).strip()
    return [Finding(name=prefix or "Finding", result=text)] if text else []


# What a sentence of a vignette reports, in order of precedence: a test result, an examination finding, or the
# patient's own account. Each kind names its finding, so the doctor can ask for it by that name.
_TEST_NAMES = (
    ("Electrocardiogram", r"\b(ECG|EKG|electrocardiogra\w*)"),
    ("Chest X-ray", r"\bchest (x-ray|radiograph\w*)"),
    ("X-ray", r"\b(x-ray|radiograph\w*)"),
    ("CT scan", r"\b(CT|computed tomography)\b"),
    ("MRI", r"\b(MRI|magnetic resonance)"),
    ("Ultrasound", r"\b(ultrasound|ultrasonograph\w*|echocardiogra\w*|sonograph\w*)"),
    ("Biopsy", r"\b(biopsy|histolog\w*|patholog\w* exam\w*)"),
    ("Urinalysis", r"\burin(alysis|e)\b"),
    ("Audiometry", r"\baudiometr\w*"),
    ("Spirometry", r"\b(spirometr\w*|pulmonary function)"),
    ("Culture", r"\bcultures?\b|\bgram stain"),
    ("Cerebrospinal fluid", r"\b(cerebrospinal|CSF|lumbar puncture)"),
    (
        "Laboratory studies",
        r"\b(laborator\w*|serum|blood (test|count|level)|hemoglobin|leukocyte|platelet|"
        r"creatinine|glucose|mg/dL|mmol/L|g/dL|/mm3|mEq/L|U/L|titer|antibod\w*|assay|PCR)",
    ),
)
_EXAM_NAMES = (
    (
        "Vital signs",
        r"\b(temperature|pulse|blood pressure|respirations|respiratory rate|heart rate|oxygen "
        r"saturation|\d+/\d+ mm ?Hg|\d+/min)",
    ),
    (
        "Physical examination",
        r"\b(examination|exam|auscultation|palpation|on inspection|tender\w*|murmur|reflexes|"
        r"rales|crackles|wheez\w* (is|are) heard|is noted|are noted|shows?)\b",
    ),
)


def classify(sentence: str) -> tuple[str, str]:
    """``("test" | "exam" | "patient", name)`` for one sentence of a vignette."""
    import re

    for kind, names in (("test", _TEST_NAMES), ("exam", _EXAM_NAMES)):
        # The name found first in the sentence ("Laboratory studies show: ... a renal biopsy ..." is a laboratory
        # finding); on a tie, the first listed (the more specific: "Chest X-ray" before "X-ray").
        hits = [
            (match.start(), rank, name)
            for rank, (name, pattern) in enumerate(names)
            if (match := re.search(pattern, sentence, re.IGNORECASE))
        ]
        if hits:
            return kind, min(hits)[2]
    return "patient", "History"


def sort_sentences(sentences: list[str]) -> dict[str, list[Finding]]:
    """Sentences as findings of each kind, named by :func:`classify` (repeated names numbered: ``History 2``)."""
    kinds: dict[str, list[Finding]] = {"patient": [], "exam": [], "test": []}
    seen: dict[str, int] = {}
    for sentence in sentences:
        kind, name = classify(sentence)
        seen[name] = seen.get(name, 0) + 1
        kinds[kind].append(Finding(name=name if seen[name] == 1 else f"{name} {seen[name]}", result=sentence))
    return kinds

"""Adding a dataset or an episode source is adding its module: the registries find it without being edited."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medcouncil.scenarios import datasets
from medcouncil.scenarios.datasets import files, registry
from medcouncil.scenarios.episodes import load, sources

ADAPTER = """
from pathlib import Path
from typing import Any

from medcouncil.scenarios.datasets.base import Format, Registered
from medcouncil.scenarios.datasets.samples import Sample


def record_to_sample(record: dict[str, Any], index: int) -> Sample:
    return Sample(id=str(record["n"]), question=record["ask"], options=dict(zip("AB", record["pick"])),
                  answer="AB"[record["right"]], metadata={"dataset": "toyqa"})


def matches(record: Any, path: Path) -> dict[str, Any] | None:
    return {} if isinstance(record, dict) and "ask" in record and "pick" in record else None


FORMAT = Format(record_to_sample, matches, order=5)
DATASETS = (Registered("toyqa", FORMAT, ("toy/toyqa.jsonl",)),)
"""

SOURCE = """
from typing import Any

from medcouncil.agents.cases import ClinicalCase, Finding
from medcouncil.scenarios.episodes.sources.base import CaseSource


def record_to_case(record: dict[str, Any], index: int) -> ClinicalCase:
    history = (Finding(name="History", result=record["says"]),)
    return ClinicalCase(id=record["vignette_id"], objective="Diagnose.", opening=record["says"], patient=history,
                        diagnosis=record["has"])


SOURCE = CaseSource(record_to_case, lambda record: "vignette_id" in record, order=5, names={"toycases": "toy/c.jsonl"})
"""


def test_a_new_adapter_module_is_found_by_name_and_by_shape(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "toyqa.py").write_text(ADAPTER)
    monkeypatch.setattr(datasets, "__path__", [*datasets.__path__, str(extra)])
    formats, names = registry.discover()
    assert formats[0].adapter.__module__.endswith(".toyqa") and "toyqa" in names and "medqa" in names
    monkeypatch.setattr(files, "FORMATS", formats)  # the shapes a path is read by
    monkeypatch.setattr(registry, "DATASETS", names)
    rows = [{"n": 1, "ask": "Wheeze?", "pick": ["Asthma", "Gout"], "right": 0}]
    (tmp_path / "toy").mkdir()
    (tmp_path / "toy" / "toyqa.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    by_name, _ = registry.load_dataset("toyqa", data_root=tmp_path)
    by_shape, _ = registry.load_dataset(str(tmp_path / "toy" / "toyqa.jsonl"))
    assert [s.answer for s in by_name] == [s.answer for s in by_shape] == ["A"]
    assert by_shape[0].metadata["dataset"] == "toyqa"


def test_the_shipped_adapters_declare_their_order() -> None:
    order = [shape.adapter.__module__.rsplit(".", 1)[1] for shape in registry.FORMATS]
    assert order == ["bigbio", "headqa", "medmcqa", "pubmedqa", "mmlu", "medqa", "kormedmcqa"]
    assert set(registry.DATASETS) == {"medqa", "medqa5", "medmcqa", "pubmedqa", "mmlu", "kormedmcqa"}


def test_a_new_episode_source_is_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "toycases.py").write_text(SOURCE)
    monkeypatch.setattr(sources, "__path__", [*sources.__path__, str(extra)])
    found = load._sources()
    monkeypatch.setattr(load, "SOURCES", found)
    case = {"vignette_id": "v1", "says": "I wheeze.", "has": "Asthma"}
    (tmp_path / "cases.jsonl").write_text(json.dumps(case) + "\n")
    cases, skipped = load.load_cases(str(tmp_path / "cases.jsonl"))
    assert [(c.id, c.diagnosis) for c in cases] == [("v1", "Asthma")] and not skipped
    assert [s.order for s in found] == sorted(s.order for s in found)


def test_the_file_reader_imports_on_its_own() -> None:
    """Discovery imports every module of the package: the registry, which imports the reader, is not among them."""
    import subprocess
    import sys

    code = "import medcouncil.scenarios.datasets.files as f; print(len(f.FORMATS))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert int(done.stdout) == len(registry.FORMATS)

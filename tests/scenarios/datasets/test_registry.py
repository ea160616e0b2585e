"""``--dataset`` resolution: registered names, paths (format recognised), field mappings, Hugging Face datasets."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from medcouncil.scenarios.datasets import registry
from medcouncil.scenarios.datasets.generic import FieldMap
from medcouncil.scenarios.datasets.registry import DATASETS, load_dataset
from medcouncil.scenarios.datasets.samples import MalformedRow
from medcouncil.serving.common.errors import ConfigError
from tests.conftest import SHARED

FIXTURE = Path(__file__).parents[1] / "fixtures" / "kormedmcqa_doctor.jsonl"
DATA = SHARED / "data"
needs_shared = pytest.mark.skipif(not DATA.is_dir(), reason="../shared/data is not beside the project")


def test_field_mapping_reads_a_csv_with_a_header(tmp_path: Path) -> None:
    path = tmp_path / "exam.csv"
    path.write_text(
        "qid,stem,o1,o2,o3,label,area\n7,Which vitamin?,A vit,B vit,C vit,2,nutrition\n"
        "8,Which ion?,Na,K,,1,renal\n9,Broken row,x,y,z,7,renal\n"
    )
    fields = FieldMap.parse("id=qid; question=stem; options=o1,o2,o3; answer=label; answer_format=index1; subset=area")
    samples, info = load_dataset(str(path), fields=fields)
    assert [(s.id, s.answer, list(s.options), s.metadata["subset"]) for s in samples] == [
        ("7", "B", ["A", "B", "C"], "nutrition"),
        ("8", "A", ["A", "B"], "renal"),
    ]
    assert info.skipped == 1 and info.skipped_rows[0].startswith(f"{path}:4: ")
    only, _ = load_dataset(str(path), subset="renal", fields=fields)
    assert [s.id for s in only] == ["8"]


def test_field_mapping_with_an_options_list_and_text_answers(tmp_path: Path) -> None:
    path = tmp_path / "items.jsonl"
    path.write_text(json.dumps({"q": "Capital?", "choices": ["Paris", "Rome"], "gold": "rome"}) + "\n")
    (sample,), _ = load_dataset(
        str(path), fields=FieldMap.parse("question=q;options=choices;answer=gold;answer_format=text")
    )
    assert sample.answer == "B" and sample.id == "0"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("question=q;answer=a", "--fields: options: Field required"),
        ("question=q;options=o;answer=a;answer_format=roman", "--fields: answer_format"),
        ("question", "not key=value"),
    ],
)
def test_bad_field_mappings_are_named(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        FieldMap.parse(text)


def test_an_unknown_format_asks_for_a_field_mapping(tmp_path: Path) -> None:
    path = tmp_path / "odd.jsonl"
    path.write_text('{"prompt": "x", "target": 1}\n')
    with pytest.raises(ConfigError, match=r"odd.jsonl: cannot tell the dataset format .*--fields"):
        load_dataset(str(path))
    with pytest.raises(ConfigError, match="dataset not found"):
        load_dataset(str(tmp_path / "missing.jsonl"))
    with pytest.raises(ConfigError, match="unknown dataset 'nope'"):
        load_dataset("nope")


def test_malformed_rows_are_skipped_with_file_and_line_or_fatal(tmp_path: Path) -> None:
    samples, info = load_dataset(str(FIXTURE))
    assert len(samples) == 3 and info.skipped == 3
    assert [row.split(": ")[0] for row in info.skipped_rows] == [f"{FIXTURE}:{n}" for n in (4, 5, 6)]
    with pytest.raises(MalformedRow, match=rf"{FIXTURE}:4: "):
        load_dataset(str(FIXTURE), strict=True)


def test_a_registered_name_finds_its_files_under_the_data_dir(tmp_path: Path) -> None:
    (tmp_path / "kormedmcqa").mkdir()
    shutil.copy(FIXTURE, tmp_path / "kormedmcqa" / "doctor.jsonl")
    samples, info = load_dataset("kormedmcqa", "doctor", data_root=tmp_path)
    assert len(samples) == 3 and {s.metadata["subset"] for s in samples} == {"doctor"}
    assert info.source.endswith("kormedmcqa/doctor.jsonl") and len(info.fingerprint) == 64
    assert samples[0].metadata["language"] == "ko"


def test_an_uncached_hf_dataset_fails_at_once_when_the_hub_is_unreachable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("datasets")  # part of the dev install
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.setattr(registry, "hub_reachable", lambda host="": False)
    monkeypatch.setattr(registry, "data_dir", lambda explicit=None: None)
    with pytest.raises(ConfigError, match=r"hf://sean0042/KorMedMCQA: .*not in the local Hugging Face cache"):
        load_dataset("kormedmcqa", "nurse")


def test_hf_loading_through_the_datasets_library_on_a_local_repository(tmp_path: Path) -> None:
    """The same ``datasets.load_dataset(id, config, split)`` call as for the hub, on a folder laid out like
    ``sean0042/KorMedMCQA`` (configs per exam, YAML in the README)."""
    pytest.importorskip("datasets")
    repo = tmp_path / "KorMedMCQA"
    (repo / "doctor").mkdir(parents=True)
    rows = FIXTURE.read_text().splitlines()[:3]
    (repo / "doctor" / "test.jsonl").write_text("\n".join(rows) + "\n")
    (repo / "README.md").write_text(
        "---\nconfigs:\n- config_name: doctor\n  data_files:\n  - split: test\n    path: doctor/test.jsonl\n---\n"
    )
    samples, skipped = registry._load_hf(str(repo), DATASETS["kormedmcqa"], ["doctor"], None, False)
    assert [(s.id, s.answer) for s in samples] == [
        ("doctor-2023-1-1", "A"),
        ("doctor-2023-1-2", "B"),
        ("doctor-2023-1-3", "C"),
    ] and not skipped
    assert {s.metadata["subset"] for s in samples} == {"doctor"}


@needs_shared
@pytest.mark.parametrize(
    ("name", "subset", "rows"),
    [
        ("medqa", None, 1273),
        ("medqa", "step1", 679),
        ("medqa5", None, 1273),
        ("medmcqa", None, 2816),
        ("pubmedqa", None, 500),
        ("mmlu", None, 1089),
        ("mmlu", "anatomy", 135),
    ],
)
def test_registered_names_on_the_shared_files(name: str, subset: str | None, rows: int) -> None:
    samples, info = load_dataset(name, subset, data_root=DATA)
    assert info.rows == len(samples) == rows and info.skipped == 0
    assert {s.metadata["dataset"] for s in samples} == {name.rstrip("5")}


@needs_shared
@pytest.mark.parametrize(
    ("relative", "dataset", "rows"),
    [
        ("raw/mmlu", "mmlu", 1089),
        ("raw/mmlu/anatomy_test.csv", "mmlu", 135),
        ("raw/pubmedqa_test_set.json", "pubmedqa", 500),
        ("raw/medmcqa_dev.jsonl", "medmcqa", 4183),
        ("raw/medqa_us4_test.jsonl", "medqa", 1273),
        ("mcqa/pubmedqa.test.jsonl", "pubmedqa", 500),
    ],
)
def test_paths_are_recognised_from_their_first_record(relative: str, dataset: str, rows: int) -> None:
    samples, _ = load_dataset(str(DATA / relative))
    assert len(samples) == rows and {s.metadata["dataset"] for s in samples} == {dataset}
    if relative == "raw/mmlu":
        assert len({s.metadata["subset"] for s in samples}) == 6

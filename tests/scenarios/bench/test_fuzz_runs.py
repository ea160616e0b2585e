"""Fuzzed run logs, repeated modes and mistyped flags: each is one line naming the file or flag, or is accepted where
its meaning is clear; nothing is answered twice, nothing is left pending for ever, no traceback."""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from medcouncil.scenarios.bench.harness import Harness, prepare
from medcouncil.scenarios.bench.journal import Journal, Manifest, RunConfig, read_manifest, read_records
from medcouncil.scenarios.bench.summary import summarize
from medcouncil.scenarios.cli.distill import _read_manifest
from medcouncil.scenarios.datasets.generic import FieldMap
from medcouncil.scenarios.datasets.registry import DatasetInfo
from medcouncil.scenarios.datasets.samples import Sample
from medcouncil.scenarios.episodes.harness import EpisodeConfig, EpisodeManifest
from medcouncil.scenarios.episodes.run import read_episode_manifest
from medcouncil.serving.common.errors import ConfigError

from .test_journal_faults import Answers

INFO = DatasetInfo(dataset="d", source="d.jsonl", fingerprint="f", rows=2, skipped=0)
GOOD_RUN = Manifest(dataset=INFO, config=RunConfig(modes=["single"]), sample_ids=["a", "b"]).model_dump(mode="json")
SCHEMA_VALUES: list[object] = [None, "two", "1", 1.5, True, [], {}, -1, 10**30, "", 2]
RUN_FILES: dict[str, bytes] = {
    "list": b"[1, 2]",
    "string": b'"run"',
    "null": b"null",
    "number": b"3",
    "ff_byte": b"\xff" + json.dumps(GOOD_RUN).encode(),
    "latin1": json.dumps({**GOOD_RUN, "label": "caf\xe9"}, ensure_ascii=False).encode("latin-1"),
    "nested": b"[" * 100_000 + b"]" * 100_000,
    "huge_int": b'{"schema_version": ' + b"9" * 5000 + b"}",
    "cut": json.dumps(GOOD_RUN).encode()[:40],
    "empty": b"",
    "nul": b"\x00" * 8,
    "sample_ids_not_a_list": json.dumps({**GOOD_RUN, "sample_ids": "a"}).encode(),
    "config_missing": json.dumps({k: v for k, v in GOOD_RUN.items() if k != "config"}).encode(),
} | {f"schema_{i}": json.dumps({**GOOD_RUN, "schema_version": v}).encode() for i, v in enumerate(SCHEMA_VALUES)}


def one_line(path: Path, read: Callable[[], object]) -> str:
    """'ok' or the one-line ConfigError naming ``path``; any other exception fails the test."""
    try:
        read()
    except ConfigError as error:
        assert "\n" not in str(error) and str(path) in str(error), str(error)
        return str(error)
    return "ok"


def readers(directory: Path) -> list[Callable[[], object]]:
    out = directory / "rationales.jsonl"
    return [lambda: read_manifest(directory), lambda: read_episode_manifest(directory), lambda: _read_manifest(out)]


@pytest.mark.parametrize("name", sorted(RUN_FILES))
def test_every_versioned_run_file_reader_answers_in_one_line(tmp_path: Path, name: str) -> None:
    (tmp_path / "run.json").write_bytes(RUN_FILES[name])
    (tmp_path / "rationales.run.json").write_bytes(RUN_FILES[name])
    for read in readers(tmp_path):
        one_line(tmp_path, read)


def test_run_file_messages_name_the_problem(tmp_path: Path) -> None:
    path = tmp_path / "run.json"

    def message(data: bytes) -> str:
        path.write_bytes(data)
        return one_line(path, lambda: read_manifest(tmp_path))

    assert message(RUN_FILES["schema_0"]).endswith("(schema_version null is not a whole number)")
    assert message(RUN_FILES["schema_1"]).endswith('(schema_version "two" is not a whole number)')
    assert message(RUN_FILES["list"]) == f"{path}: not a run manifest (a list, not an object)"
    assert message(RUN_FILES["ff_byte"]) == f"{path}:1: not UTF-8 (byte 0xff); save the file as UTF-8"
    assert "version 2 is newer than this medcouncil knows (1)" in message(RUN_FILES["schema_10"])
    assert message(RUN_FILES["sample_ids_not_a_list"]).endswith("(sample_ids: Input should be a valid list)")
    assert message(json.dumps(GOOD_RUN).encode()) == "ok"
    episodes = {**GOOD_RUN, "kind": "episodes"}
    path.write_text(json.dumps(episodes))
    assert "not an episode run manifest (source: Field required)" in one_line(
        path, lambda: read_episode_manifest(tmp_path)
    )


def test_random_byte_flips_of_a_run_file_never_crash(tmp_path: Path) -> None:
    rng = random.Random(25)
    base = json.dumps(GOOD_RUN).encode()
    for _ in range(150):
        data = bytearray(base)
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        (tmp_path / "run.json").write_bytes(bytes(data))
        for read in readers(tmp_path)[:2]:
            one_line(tmp_path, read)


def test_resume_of_a_bad_run_file_or_no_run_is_one_line_and_writes_nothing(cli: list[str], tmp_path: Path) -> None:
    for name in ("schema_0", "schema_1", "list", "ff_byte"):
        run = tmp_path / name
        run.mkdir()
        (run / "run.json").write_bytes(RUN_FILES[name])
        result = subprocess.run([*cli, "bench", "--resume", str(run)], capture_output=True, text=True, timeout=120)
        assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
        assert result.stderr.startswith(f"error: {run}/run.json") and result.stderr.count("\n") == 1, result.stderr
    empty, missing = tmp_path / "empty", tmp_path / "missing"
    empty.mkdir()
    for folder in (empty, missing):
        result = subprocess.run([*cli, "bench", "--resume", str(folder)], capture_output=True, text=True, timeout=120)
        assert result.stderr == f"error: {folder}: not a benchmark run (no run.json)\n"
    assert list(empty.iterdir()) == [] and not missing.exists()  # no lock file, no folder made


def _sample(item_id: str) -> Sample:
    return Sample(id=item_id, question="Which?", options={"A": "alpha", "B": "beta"}, answer="B")


def test_a_repeated_mode_is_one_mode(tmp_path: Path) -> None:
    config = RunConfig.model_validate({"modes": ["single", "council", "single", "council"]})
    assert config.modes == ["single", "council"]
    episodes = EpisodeConfig.model_validate({"modes": ["single", "single"]})
    assert episodes.modes == ["single"]
    manifest = Manifest(
        dataset=INFO, config=RunConfig.model_validate({"modes": ["single", "single"]}), sample_ids=["a", "b"]
    )
    journal = Journal(tmp_path)
    answerer = Answers()
    harness = Harness(journal, manifest.config.modes, lambda: {"single": answerer}, backoff_s=0)
    asyncio.run(harness.run(harness.pending([prepare(_sample("a")), prepare(_sample("b"))])))
    journal.close()
    assert answerer.calls == 2 and len((tmp_path / "samples.jsonl").read_text().splitlines()) == 2
    summary = summarize(manifest, read_records(tmp_path), [])
    assert summary.pending == 0 and [row.n for row in summary.rows if row.subset == "all"] == [2]


def test_a_run_log_written_with_a_repeated_mode_resumes_finished(tmp_path: Path) -> None:
    (tmp_path / "run.json").write_text(json.dumps({**GOOD_RUN, "config": {"modes": ["single", "single"]}}))
    manifest = read_manifest(tmp_path)
    assert manifest.config.modes == ["single"]
    episode = {
        "source": "s",
        "fingerprint": "f",
        "config": {"modes": ["council", "council"]},
        "case_ids": ["c"],
        "modes": ["council", "council"],
        "kind": "episodes",
    }
    (tmp_path / "run.json").write_text(json.dumps(episode))
    found = read_episode_manifest(tmp_path)
    assert isinstance(found, EpisodeManifest) and found.modes == ["council"] and found.config.modes == ["council"]


FIELD_TYPOS = {
    "question=q;options=a,b;answer=c;colour=red": "unknown key 'colour'; the keys are question, options, answer, "
    "answer_format, id, subset",
    "question=q;options=a,b;answer=c;answer_fromat=index1": "unknown key 'answer_fromat' (did you mean answer_format?)",
    "qestion=q;options=a,b;answer=c": "unknown key 'qestion' (did you mean question?)",
    "question=q;options=a,b;answer=c;answer=d": "answer is given twice",
    "question=q;options=a,,b;answer=c": "options='a,,b' names an empty field",
    "question=;options=a,b;answer=c": "question='' names an empty field",
    "question=q;options=a,b": "answer: Field required",
    "question=q;options=a,b;answer=c;answer_format=index2": "answer_format: Input should be",
    "question=q;options=a,b;answer": "'answer' is not key=value",
}


@pytest.mark.parametrize("text", sorted(FIELD_TYPOS))
def test_fields_keys_are_checked(text: str) -> None:
    with pytest.raises(ConfigError) as raised:
        FieldMap.parse(text)
    assert str(raised.value).startswith("--fields: ") and FIELD_TYPOS[text] in str(raised.value)


def test_every_command_taking_fields_refuses_a_typo_before_doing_anything(cli: list[str], tmp_path: Path) -> None:
    data = tmp_path / "exam.jsonl"
    data.write_text(json.dumps({"qid": "1", "stem": "Which?", "opa": "x", "opb": "y", "cop": 1}) + "\n")
    typo = "question=stem;options=opa,opb;answer=cop;answer_fromat=index1"
    out = tmp_path / "out"
    commands = [
        ["bench", "--dataset", str(data), "--fields", typo, "--out", str(out), "--endpoint", "http://127.0.0.1:9/v1"],
        ["data", "build", "--dataset", str(data), "--fields", typo, "--out", str(out)],
        ["finetune", "--data", str(data), "--fields", typo, "--out", str(out)],
        [
            "distill",
            "--dataset",
            str(data),
            "--fields",
            typo,
            "--out",
            str(out / "r.jsonl"),
            "--teacher",
            "http://127.0.0.1:9/v1",
            "--teacher-model",
            "t",
        ],
    ]
    for args in commands:
        result = subprocess.run([*cli, *args], capture_output=True, text=True, timeout=300)
        assert result.returncode == 1 and "Traceback" not in result.stderr, (args, result.stderr)
        assert result.stderr.startswith("error: --fields: unknown key 'answer_fromat' (did you mean answer_format?)")
        assert not (out / "run.json").exists() and not (out / ".lock").exists(), args
    good = typo.replace("fromat", "format")
    assert FieldMap.parse(good).answer_format == "index1"

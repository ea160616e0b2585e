"""Fuzzed dataset and config files: every reader answers with samples, skipped rows naming FILE:LINE, or one
ConfigError line naming the file; never a traceback (RecursionError, UnicodeDecodeError, TypeError, ...)."""

from __future__ import annotations

import json
import os
import random
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from medcouncil.agents.build import CouncilFile
from medcouncil.scenarios.datasets.generic import FieldMap
from medcouncil.scenarios.datasets.registry import load_dataset
from medcouncil.serving.common.errors import ConfigError
from medcouncil.serving.components import load_component
from medcouncil.serving.config import EngineConfig
from medcouncil.serving.training.data import read_chat_jsonl

GOOD = {"id": "g1", "question": "세균성 폐렴의 첫 치료는?", "options": {"A": "항생제", "B": "휴식"}, "answer": "A"}
GOOD_LINE = json.dumps(GOOD, ensure_ascii=False)
FIELDS = FieldMap.parse("question=question;options=options;answer=answer;id=id")


def outcome(path: Path, call: Callable[[], object]) -> str:
    """'ok' or the one-line error; fails the test on any other exception or a multi-line message."""
    try:
        call()
    except ConfigError as error:
        message = str(error)
        assert "\n" not in message, message
        assert str(path) in message, message
        return message
    return "ok"


def load(path: Path, fields: FieldMap | None = None) -> str:
    def call() -> None:
        _, info = load_dataset(str(path), fields=fields)
        for row in info.skipped_rows:
            assert row.startswith(f"{path}:") and "\n" not in row, row
            line = row.removeprefix(f"{path}:").split(":")[0]
            assert line.isdigit(), row

    return outcome(path, call)


CASES: dict[str, bytes] = {
    "nested.jsonl": b"[" * 200_000 + b"]" * 200_000 + b"\n",
    "nested_then_good.jsonl": b'{"a":' * 100_000 + b"1" + b"}" * 100_000 + b"\n" + GOOD_LINE.encode() + b"\n",
    "huge_int.jsonl": b'{"id": '
    + b"9" * 10_000
    + b', "question": "q", "options": ["a", "b"], "answer": "A"}\n'
    + GOOD_LINE.encode()
    + b"\n",
    "null.json": b"null",
    "number.json": b"12",
    "nested.json": b"[" * 200_000 + b"]" * 200_000,
    "empty.jsonl": b"",
    "empty.json": b"",
    "empty.csv": b"",
    "blank.jsonl": b"\n\n   \n",
    "binary.jsonl": bytes(range(256)) * 4,
    "binary.csv": b"question,a,b,answer\n" + bytes(range(256)) * 4,
    "binary.json": bytes(range(256)),
    "latin1.jsonl": (GOOD_LINE + "\n" + GOOD_LINE + "\n").encode() + '{"question": "café"}\n'.encode("latin-1"),
    "latin1.csv": "question,a,b,answer\nq1,x,y,A\nq2,caf\xe9,y,B\n".encode("latin-1"),
    "bom.jsonl": b"\xef\xbb\xbf" + GOOD_LINE.encode() + b"\n",
    "bom.csv": b"\xef\xbb\xbfquestion,opt1,opt2,correct\nWhich?,x,y,1\n",
    "crlf.jsonl": (GOOD_LINE + "\r\n" + GOOD_LINE.replace("g1", "g2") + "\r\n").encode(),
    "separators.jsonl": json.dumps({**GOOD, "question": "a\u2028b\u0085c\u2029d"}).encode() + b"\n",
    "nul.csv": b"question,a,b,answer\nq\x00,x,y,A\n",
    "multiline.csv": b'question,opt1,opt2,correct\n"line one\nline two",x,y,9\nok?,x,y,1\n',
    "duplicates.jsonl": (GOOD_LINE + "\n").encode() * 3,
    "list_of_nulls.json": b'[null, 1, "x", []]',
    "object_of_nulls.json": b'{"a": null, "b": 3}',
    "not_objects.jsonl": b'1\n"x"\nnull\n[]\ntrue\n',
    "directory_like.jsonl": b"{}\n{}\n",
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_malformed_dataset_files_give_one_line_errors(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(CASES[name])
    load(path)
    load(path, FIELDS)  # --fields reads the same bytes another way


def test_expected_outcomes_of_some_cases(tmp_path: Path) -> None:
    def write(name: str) -> Path:
        path = tmp_path / name
        path.write_bytes(CASES[name])
        return path

    assert "got null" in load(write("null.json"))
    assert "empty file" in load(write("empty.jsonl"))
    assert load(write("bom.jsonl")) == "ok" and load(write("bom.csv")) == "ok"
    assert load(write("crlf.jsonl")) == "ok" and load(write("separators.jsonl")) == "ok"
    samples, info = load_dataset(str(write("latin1.jsonl")))
    assert len(samples) == 2 and info.skipped_rows == [
        f"{tmp_path / 'latin1.jsonl'}:3: not UTF-8 (byte 0xe9); save the file as UTF-8"
    ]
    assert ":3: not UTF-8" in load(write("latin1.csv"))
    samples, info = load_dataset(str(write("multiline.csv")))  # header guessed: question, opt1..2, correct
    assert [s.question for s in samples] == ["ok?"]
    assert info.skipped_rows[0].startswith(f"{tmp_path / 'multiline.csv'}:2:")  # the record's first line
    samples, _ = load_dataset(str(write("huge_int.jsonl")))
    assert len(samples) == 1


def test_every_truncation_of_a_utf8_line_is_read_or_reported(tmp_path: Path) -> None:
    data = (GOOD_LINE + "\n").encode() * 2
    path = tmp_path / "cut.jsonl"
    for cut in range(len(GOOD_LINE.encode()) + 1, len(data)):
        path.write_bytes(data[:cut])
        load(path)


def test_random_byte_flips_never_crash(tmp_path: Path) -> None:
    rng = random.Random(7)
    base = bytearray((GOOD_LINE + "\n").encode() * 4)
    for suffix in (".jsonl", ".json", ".csv"):
        path = tmp_path / f"flip{suffix}"
        for _ in range(60):
            data = bytearray(base)
            for _ in range(rng.randint(1, 6)):
                data[rng.randrange(len(data))] = rng.randrange(256)
            path.write_bytes(bytes(data))
            load(path)


YAML_CASES: dict[str, bytes] = {
    "latin1.yaml": "model: caf\xe9\n".encode("latin-1"),
    "nested.yaml": b"[" * 50_000 + b"]" * 50_000,
    "null.yaml": b"null\n",
    "list.yaml": b"- 1\n- 2\n",
    "scalar.yaml": b"just text\n",
    "bad.yaml": b"a: [1, 2\nb: }\n",
    "bom.yaml": b"\xef\xbb\xbfport: 8011\n",
    "binary.yaml": bytes(range(256)),
}


@pytest.mark.parametrize("name", sorted(YAML_CASES))
def test_malformed_config_files_give_one_line_errors(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(YAML_CASES[name])
    outcome(path, lambda: EngineConfig.load(path))
    outcome(path, lambda: CouncilFile.load(path))
    outcome(path, lambda: load_component(path))
    chat = path.with_suffix(".jsonl")
    chat.write_bytes(YAML_CASES[name])
    outcome(chat, lambda: read_chat_jsonl(chat))


def test_config_reader_messages(tmp_path: Path) -> None:
    path = tmp_path / "engine.yaml"
    path.write_bytes(YAML_CASES["bom.yaml"])
    assert EngineConfig.load(path).port == 8011
    path.write_bytes(YAML_CASES["latin1.yaml"])
    assert ":1: cannot read engine config: not UTF-8 (byte 0xe9)" in outcome(path, lambda: EngineConfig.load(path))
    model = tmp_path / "model.yaml"
    model.write_text("provider: not_installed_pkg.Client\nconfig:\n  model: m\n  base_url: http://127.0.0.1:1/v1\n")
    assert "cannot be imported" in outcome(model, lambda: load_component(model))
    model.write_text("provider: autogen_ext.models.openai.OpenAIChatCompletionClient\nconfig:\n  model: m\n")
    assert "base_url is missing" in outcome(model, lambda: load_component(model))


def test_cli_prints_one_line_and_keeps_brackets(tmp_path: Path, cli: list[str]) -> None:
    nested = tmp_path / "weird[red]name.json"
    nested.write_bytes(CASES["nested.json"])
    result = subprocess.run(
        [*cli, "bench", "--dataset", str(nested), "--out", str(tmp_path / "run")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.count("error:") == 1 and "weird[red]name.json" in result.stderr, result.stderr
    result = subprocess.run(
        [*cli, "bench", "--dataset", str(nested), "--mode", "single,x[hf]"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 1 and "x[hf]" in result.stderr and "Traceback" not in result.stderr


def test_a_csv_with_common_headers_needs_no_mapping(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "exam.csv"
    path.write_text(
        "qid,stem,opt1,opt2,opt3,opt4,correct\n17,Which organ pumps blood?,Liver,Heart,Lung,Skin,2\n"
        "18,Which organ filters urine?,Kidney,Heart,Lung,Skin,1\n"
    )
    samples, _ = load_dataset(str(path))
    assert [(s.id, s.answer, s.options["B"]) for s in samples] == [("17", "B", "Heart"), ("18", "A", "Heart")]
    assert "question=stem;options=opt1,opt2,opt3,opt4;answer=correct;answer_format=index1;id=qid" in caplog.text


def test_reasons_name_the_data_not_the_parser(tmp_path: Path) -> None:
    medqa = [
        {"question": "q?", "options": '{"A": "x", "B": "y")', "answer_idx": "A", "meta_info": "step1"},
        {"question": "q?", "options": 7, "answer_idx": "A", "meta_info": "step1"},
        {"question": "q?", "options": "{'A': 'x', 'B': 'y'}", "answer_idx": "A", "meta_info": "step1"},
        {"question": "q?", "options": ["x", "y"], "answer_idx": "B", "meta_info": "step1"},
    ]
    path = tmp_path / "medqa.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in medqa) + "[1, 2]\n")
    samples, info = load_dataset(str(path))
    assert [s.options for s in samples] == [{"A": "x", "B": "y"}] * 2  # a Python repr and a list are read
    assert info.skipped_rows == [
        f"{path}:1: options: text that is neither a list nor an object of options",
        f"{path}:2: options: a number, not a list or an object of options",
        f"{path}:5: a list, not a record (an object of fields)",
    ]
    medmcqa = tmp_path / "medmcqa.jsonl"
    rows = [{"question": "q?", "opa": "x", "opb": "y", "opc": "z", "opd": "w", "cop": cop} for cop in (None, "two", 2)]
    medmcqa.write_text("".join(json.dumps(row) + "\n" for row in rows))
    samples, info = load_dataset(str(medmcqa))
    assert [s.answer for s in samples] == ["B"]
    assert info.skipped_rows == [
        f"{medmcqa}:1: cop: null is not a whole number",
        f"{medmcqa}:2: cop: 'two' is not a whole number",
    ]


def test_a_json_array_saved_as_jsonl_and_a_fifo_are_named_for_what_they_are(tmp_path: Path) -> None:
    rows = [GOOD, {**GOOD, "id": "g2"}]
    one_line_array, pretty = tmp_path / "array.jsonl", tmp_path / "pretty.jsonl"
    one_line_array.write_text(json.dumps(rows))
    pretty.write_text(json.dumps(rows, indent=2))
    assert "its first line is a JSON array of 2 records, not one record" in load(one_line_array)
    assert load(pretty).endswith("it looks like one JSON document: save it as .json")
    fifo = tmp_path / "items.jsonl"
    os.mkfifo(fifo)
    assert load(fifo) == f"{fifo}: not a regular file (a pipe, socket or device): save the data to a file"


def test_a_case_record_without_its_diagnosis_names_the_field(tmp_path: Path) -> None:
    from medcouncil.scenarios.episodes.load import load_cases

    path = tmp_path / "cases.jsonl"
    path.write_text(json.dumps({"opening": "I have had a cough for a week.", "objective": "Diagnose."}) + "\n")
    cases, skipped = load_cases(str(path))
    assert not cases and [str(row) for row in skipped] == [f"{path}:1: diagnosis: Field required"]

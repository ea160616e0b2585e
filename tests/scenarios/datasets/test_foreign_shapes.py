"""Files users bring that are not ours: other exports of the same benchmarks, other field names, broken rows. Each
either loads with the right gold letter and id, or is refused in one line naming the file (and the line)."""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from medcouncil.scenarios.datasets.registry import load_dataset
from medcouncil.serving.common.errors import ConfigError


def _jsonl(path: Path, rows: Sequence[Mapping[str, object]]) -> Path:
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    return path


def _medmcqa(cop: int, n: int) -> dict[str, object]:
    return {"id": f"m{n}", "question": f"Q{n}?", "opa": "w", "opb": "x", "opc": "y", "opd": "z", "cop": cop}


def test_an_option_left_empty_before_the_last_is_refused_not_shifted(tmp_path: Path) -> None:
    path = _jsonl(
        tmp_path / "m.jsonl",
        [
            {"id": "gap", "question": "Q?", "opa": "MI", "opb": "", "opc": "GERD", "opd": "Panic", "cop": 3},
            {"id": "null", "question": "Q?", "opa": "MI", "opb": None, "opc": "GERD", "opd": "Panic", "cop": 3},
            {"id": "ok", "question": "Q?", "opa": "MI", "opb": "PE", "opc": "GERD", "opd": "Panic", "cop": 3},
        ],
    )
    samples, info = load_dataset(str(path))
    assert [(s.id, s.answer, s.options["C"]) for s in samples] == [("ok", "C", "GERD")]
    assert info.skipped_rows[0] == f"{path}:1: options: option B is empty while a later one is not"
    assert info.skipped_rows[1].startswith(f"{path}:2: options: option B is empty")
    korean = _jsonl(
        tmp_path / "doctor.jsonl",
        [{"question": "가슴 통증?", "A": "심근경색", "B": "폐색전증", "C": "위염", "D": "공황", "E": "", "answer": 2}],
    )
    (four,), _ = load_dataset(str(korean))  # an absent fifth option at the end is no option, not an error
    assert list(four.options) == ["A", "B", "C", "D"] and four.answer == "B"


@pytest.mark.parametrize(
    ("cops", "expected"),
    [
        ([1, 0, 3, 2], ["B", "A", "D", "C"]),  # HF openlifescienceai/medmcqa exports count from 0
        ([1, 4, 2, 3], ["A", "D", "B", "C"]),  # the published files count from 1
    ],
)
def test_medmcqa_cop_base_is_told_from_the_rows(tmp_path: Path, cops: list[int], expected: list[str]) -> None:
    path = _jsonl(tmp_path / "medmcqa.jsonl", [_medmcqa(cop, n) for n, cop in enumerate(cops)])
    samples, info = load_dataset(str(path))
    assert [s.answer for s in samples] == expected and info.skipped == 0
    csv = tmp_path / "medmcqa.csv"  # the raw CSV, with its header row
    csv.write_text(
        "id,question,opa,opb,opc,opd,cop\n" + "".join(f"m{n},Q{n}?,w,x,y,z,{c}\n" for n, c in enumerate(cops))
    )
    from_csv, _ = load_dataset(str(csv))
    assert [(s.id, s.answer) for s in from_csv] == [(f"m{n}", letter) for n, letter in enumerate(expected)]


def test_medmcqa_rows_counting_from_0_and_from_1_at_once_are_refused(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "mixed.jsonl", [_medmcqa(0, 0), _medmcqa(4, 1)])
    with pytest.raises(ConfigError, match=r"mixed\.jsonl: cop holds both 0 and 4"):
        load_dataset(str(path))


def test_records_with_choices_keep_their_ids_and_their_answer_base(tmp_path: Path) -> None:
    rows = [
        {"id": f"g{n}", "question": f"Q{n}?", "choices": ["MI", "PE", "GERD", "Panic"], "answer": answer}
        for n, answer in enumerate([2, 1, 4, 3])  # the 4 of four options: counting from 1
    ]
    samples, _ = load_dataset(str(_jsonl(tmp_path / "g.jsonl", rows)))
    assert [(s.id, s.answer) for s in samples] == [("g0", "B"), ("g1", "A"), ("g2", "D"), ("g3", "C")]
    arc = {"id": "a1", "question": "Q?", "choices": {"label": ["A", "B"], "text": ["MI", "PE"]}, "answerKey": "B"}
    (item,), _ = load_dataset(str(_jsonl(tmp_path / "arc.jsonl", [arc])))
    assert (item.id, item.options, item.answer) == ("a1", {"A": "MI", "B": "PE"}, "B")
    hf_mmlu = {"question": "Q?", "subject": "anatomy", "choices": ["a", "b", "c", "d"], "answer": 0}
    (mmlu,), _ = load_dataset(str(_jsonl(tmp_path / "hf.jsonl", [hf_mmlu])))
    assert (mmlu.id, mmlu.answer, mmlu.metadata["dataset"]) == ("anatomy-0", "A", "mmlu")


def test_lettered_columns_in_english_are_not_read_as_korean(tmp_path: Path) -> None:
    row = {"id": "e1", "question": "Chest pain?", "A": "MI", "B": "PE", "C": "GERD", "D": "Panic", "answer": "B"}
    (sample,), _ = load_dataset(str(_jsonl(tmp_path / "english.jsonl", [row])))
    assert (sample.id, sample.answer, sample.metadata) == ("e1", "B", {"dataset": "generic"})
    korean = {"question": "가슴 통증의 원인은?", "A": "심근경색", "B": "폐색전증", "answer": 2}
    (ko,), _ = load_dataset(str(_jsonl(tmp_path / "ko.jsonl", [korean])))
    assert (ko.answer, ko.metadata["dataset"], ko.metadata["language"]) == ("B", "kormedmcqa", "ko")


def test_kormedmcqa_csv_with_its_header_loads_by_path_and_by_name(tmp_path: Path) -> None:
    header = "subject,year,period,q_number,question,A,B,C,D,E,answer\n"
    rows = (
        "doctor,2023,1,1,가슴 통증?,심근경색,폐색전증,위염,공황,대동맥박리,5\n"
        "doctor,2023,1,2,두통?,편두통,뇌출혈,,,,2\n"
    )
    folder = tmp_path / "kormedmcqa"
    folder.mkdir()
    (folder / "doctor.csv").write_text(header + rows, encoding="utf-8")
    by_path, _ = load_dataset(str(folder / "doctor.csv"))
    by_name, info = load_dataset("kormedmcqa", subset="doctor", data_root=tmp_path)
    for samples in (by_path, by_name):
        assert [(s.id, s.answer, len(s.options)) for s in samples] == [
            ("doctor-2023-1-1", "E", 5),
            ("doctor-2023-1-2", "B", 2),
        ]
        assert samples[0].metadata["language"] == "ko"
    assert info.skipped == 0


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ({"question": None, "options": {"A": "x", "B": "y"}, "answer_idx": "A"}, "question: null"),
        ({"question": "Q?", "options": {"A": "x", "B": None, "C": "z"}, "answer_idx": "A"}, "option B: null"),
        (
            {"question": "Q?", "options": '{"A": "x\\ud800", "B": "y"}', "answer_idx": "A"},
            "option A: not valid Unicode",
        ),
        ({"question": "Q?", "options": {"A": "x", "B": "y"}, "answer_idx": None}, "answer_idx: null"),
        ({"QUESTION": "", "CONTEXTS": [], "final_decision": "yes"}, "question: empty"),
        ({"QUESTION": "Q?", "CONTEXTS": ["c"], "final_decision": "unsure"}, "'unsure' is not yes, no or maybe"),
    ],
)
def test_null_and_empty_fields_are_row_errors_not_the_text_none(
    tmp_path: Path, row: dict[str, object], reason: str
) -> None:
    good = {"question": "Fine?", "options": {"A": "x", "B": "y"}, "answer_idx": "B"}
    if "final_decision" in row:
        good = {"QUESTION": "Fine?", "CONTEXTS": ["c"], "final_decision": "no"}
    path = _jsonl(tmp_path / "rows.jsonl", [good, row])
    samples, info = load_dataset(str(path))
    assert [s.question.endswith("Fine?") for s in samples] == [True] and len(info.skipped_rows) == 1
    assert info.skipped_rows[0].startswith(f"{path}:2: ") and reason in info.skipped_rows[0]


def test_a_lone_surrogate_is_a_row_error(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    good = json.dumps({"question": "Q?", "options": {"A": "x", "B": "y"}, "answer_idx": "A"})
    path.write_text(good + "\n" + good.replace("Q?", "Q\\ud800?") + "\n" + good.replace("Q?", "\\ud83d\\ude00?") + "\n")
    samples, info = load_dataset(str(path))
    assert [s.question for s in samples] == ["Q?", "\U0001f600?"]  # a surrogate pair is one character
    assert info.skipped_rows == [f"{path}:2: not valid Unicode (a lone surrogate escape \\ud800, half of a character)"]


def test_a_csv_quote_never_closed_says_the_rest_is_not_read(tmp_path: Path) -> None:
    path = tmp_path / "anatomy_test.csv"
    path.write_text('Q1?,a,b,c,d,B\n"Q2?,a,b,c,d,C\nQ3?,a,b,c,d,A\nQ4?,a,b,c,d,A\n')
    samples, info = load_dataset(str(path))
    assert [s.id for s in samples] == ["anatomy-0"]
    assert info.skipped_rows == [
        f"{path}:2: a quote opened in this record is never closed: the 2 lines after it are not read"
    ]
    # Not that: a quoted field over two lines ending the file beside an inch mark, or with no newline after it, a
    # bare \r inside a quoted cell (as spreadsheets write), a file with \r line ends only.
    fine = {
        "inch_test.csv": ('Q1?,a,b,c,d,B\n"Q2 line one\nline two",5" ruler,b,c,d,C\n', "BC"),
        "no_end_test.csv": ('Q1?,a,b,c,d,B\n"Q2 line one\nline two",a,b,c,d,C', "BC"),  # no newline at the end
        "cell_test.csv": ('"Q1\rmore",a,b,c,d,B\nQ2?,a,b,c,d,A\n"Q3 line\nx",a,b,c,d,C\nQ4?,a,b,c,d,D\n', "BACD"),
        "cr_test.csv": ('Q1?,a,b,c,d,B\rQ2?,a,b,c,d,A\r"Q3 line\rtwo",a,b,c,d,C\rQ4?,a,b,c,d,D\r', "BACD"),
    }
    for name, (text, answers) in fine.items():
        (tmp_path / name).write_bytes(text.encode())
        samples, info = load_dataset(str(tmp_path / name))
        assert (info.skipped_rows, "".join(s.answer for s in samples)) == ([], answers), name


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("g.jsonl", gzip.compress(b'{"question": "Q?"}\n'), "the file is gzip-compressed: decompress it first"),
        ("u.jsonl", '{"question": "Q?"}\n'.encode("utf-16"), "the file is UTF-16 text: save the file as UTF-8"),
        ("s.json", json.dumps({"train": [{"q": 1}], "test": [{"q": 2}]}).encode(), "an object of lists (train, test)"),
        ("h.csv", b"question,A,B,answer\n", "a header row (question, A, B, answer) and no items"),
        ("t.tsv", b"question\tA\tanswer\nQ?\tx\tA\n", "a .tsv is read as JSON Lines"),
        ("z.jsonl", b"PK\x03\x04plain\n", "the file is a ZIP archive"),  # stored, not compressed: it decodes
        ("sur.json", b'[{"question": "Q?",\n "options": ["a", "b"],\n "answer": "x\\ud800"}]', ":3: not valid Unicode"),
    ],
)
def test_files_of_another_kind_are_named_in_one_line(tmp_path: Path, name: str, content: bytes, message: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ConfigError) as caught:
        load_dataset(str(path))
    text = str(caught.value)
    assert text.startswith(str(path)) and message in text and "\n" not in text


def test_a_data_dir_that_does_not_exist_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match=re.escape(f"--data-dir {tmp_path / 'typo'}: no such directory")):
        load_dataset("medqa", data_root=tmp_path / "typo")
    monkeypatch.setenv("MEDCOUNCIL_DATA_DIR", str(tmp_path / "typo2"))
    with pytest.raises(ConfigError, match=r"MEDCOUNCIL_DATA_DIR .*typo2: no such directory"):
        load_dataset("medqa")


def test_the_answer_format_is_settled_by_every_row_not_the_first(tmp_path: Path) -> None:
    rows = [
        {"qid": f"x{n}", "question": f"Q{n}?", "A": "a", "B": "b", "C": "c", "D": "d", "answer": answer}
        for n, answer in enumerate([2, 3, 4, 1])
    ]
    samples, info = load_dataset(str(_jsonl(tmp_path / "plain.jsonl", rows)))
    assert [s.answer for s in samples] == ["B", "C", "D", "A"] and info.skipped == 0
    lower = [{"question": "Q?", "options": {"a": "x", " b": "y"}, "answer_idx": "b"}]
    (sample,), _ = load_dataset(str(_jsonl(tmp_path / "lower.jsonl", lower)))
    assert (sample.options, sample.answer) == ({"A": "x", "B": "y"}, "B")


def test_contradicting_answers_are_refused_not_half_read(tmp_path: Path) -> None:
    rows = [
        {"id": f"r{n}", "question": "Q?", "choices": ["a", "b", "c", "d"], "answer": a} for n, a in enumerate([4, 0])
    ]
    with pytest.raises(ConfigError, match=r"g\.jsonl: answer: the rows' answers fit no one form"):
        load_dataset(str(_jsonl(tmp_path / "g.jsonl", rows)))
    korean = [{"question": "가슴 통증?", "A": "a", "B": "b", "C": "c", "answer": a} for a in (0, 3)]
    with pytest.raises(ConfigError, match="cannot count from 0 and from 1 at once"):
        load_dataset(str(_jsonl(tmp_path / "k.jsonl", korean)))
    from_zero, _ = load_dataset(
        str(_jsonl(tmp_path / "k0.jsonl", [{**row, "answer": a} for row, a in zip(korean, (0, 2), strict=True)]))
    )
    assert [s.answer for s in from_zero] == ["A", "C"]


def test_other_option_shapes(tmp_path: Path) -> None:
    rows: list[dict[str, object]] = [
        {
            "id": "kv",
            "question": "Q?",
            "options": [{"key": "A", "value": "MI"}, {"key": "B", "value": "PE"}],
            "answer_idx": "B",
        },
        {
            "id": "tail",
            "question": "Q?",
            "options": {"A": "w", "B": "x", "C": "y", "D": "z", "E": None},
            "answer_idx": "D",
        },
    ]
    samples, info = load_dataset(str(_jsonl(tmp_path / "medqa_like.jsonl", rows)))
    assert info.skipped == 0
    assert [(s.id, list(s.options.values()), s.answer) for s in samples] == [
        ("kv", ["MI", "PE"], "B"),
        ("tail", ["w", "x", "y", "z"], "D"),  # a null fifth option at the end is no option
    ]
    arc = {
        "id": "a1",
        "question": "Q?",
        "choices": {"text": ["w", "x", "y", "z"], "label": ["1", "2", "3", "4"]},
        "answerKey": "3",
    }
    (item,), _ = load_dataset(str(_jsonl(tmp_path / "arc.jsonl", [arc])))
    assert (item.options["C"], item.answer) == ("y", "C")


def test_a_field_mapping_naming_a_missing_id_field_is_a_row_error(tmp_path: Path) -> None:
    from medcouncil.scenarios.datasets.generic import FieldMap

    row = {"question": "Q?", "A": "x", "B": "y", "answer": "B"}
    path = _jsonl(tmp_path / "rows.jsonl", [row])
    samples, info = load_dataset(str(path), fields=FieldMap.parse("question=question;options=A,B;answer=answer;id=zzz"))
    assert samples == [] and info.skipped_rows == [f"{path}:1: missing field 'zzz'"]


def test_json_lines_saved_as_json_are_read_as_lines(tmp_path: Path) -> None:
    row = {"question": "Q?", "options": {"A": "x", "B": "y"}, "answer_idx": "B"}
    path = _jsonl(tmp_path / "items.json", [row, {**row, "answer_idx": "A"}])
    assert [s.answer for s in load_dataset(str(path))[0]] == ["B", "A"]
    broken = tmp_path / "pretty.json"  # a pretty-printed list with a slip: its line, not a reading as lines
    broken.write_text(json.dumps([row, row], indent=1).replace('"B"\n', '"B",\n', 1))
    with pytest.raises(ConfigError, match=r"pretty\.json:\d+: not JSON"):
        load_dataset(str(broken))


def test_an_id_that_is_null_nan_or_blank_is_no_id() -> None:
    from medcouncil.scenarios.datasets.samples import record_id

    for value in (None, float("nan"), " ", ""):
        assert record_id({"id": value}, 7, "id") == "7", value
    assert record_id({"id": 0, "qid": "q"}, 7, "id", "qid") == "0"  # 0 is an id

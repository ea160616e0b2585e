"""Benchmarks whose files we do not have, in the shapes they are published in: HEAD-QA rows and the BigBIO QA schema.
Each row loads with the right gold letter and id, or is skipped naming its file, line and reason."""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from medcouncil.scenarios.datasets.registry import load_dataset


def _jsonl(path: Path, rows: Sequence[Mapping[str, object]]) -> Path:
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    return path


def _headqa(qid: int, ra: int, aids: Sequence[int] = (1, 2, 3, 4), image: str = "") -> dict[str, object]:
    answers = [{"aid": aid, "atext": f"answer {aid}"} for aid in aids]
    return {"name": "Cuaderno_2013_1_M", "year": "2013", "category": "medicine", "qid": qid,
            "qtext": f"Question {qid}?", "ra": ra, "image": image, "answers": answers}  # fmt: skip


def test_headqa_rows_letter_their_answers_in_aid_order(tmp_path: Path) -> None:
    path = _jsonl(
        tmp_path / "headqa_en.jsonl",
        [
            _headqa(1, 3),
            _headqa(2, 1, aids=(4, 1, 3, 2)),  # answers listed out of order: lettered by aid
            _headqa(3, 2, image="images/q3.png"),
            _headqa(4, 9),
            _headqa(5, 5, aids=(1, 2, 3, 4, 5)),
        ],
    )
    samples, info = load_dataset(str(path))
    assert [(s.id, s.answer, len(s.options)) for s in samples] == [
        ("Cuaderno_2013_1_M-1", "C", 4),
        ("Cuaderno_2013_1_M-2", "A", 4),
        ("Cuaderno_2013_1_M-5", "E", 5),
    ]
    assert samples[1].options == {"A": "answer 1", "B": "answer 2", "C": "answer 3", "D": "answer 4"}
    assert samples[0].metadata["subset"] == "medicine" and samples[0].metadata["dataset"] == "headqa"
    assert info.skipped_rows[0].startswith(f"{path}:3: image: the question refers to an image")
    assert info.skipped_rows[1] == f"{path}:4: ra: 9 is none of the answers' aid ([1, 2, 3, 4])"


def test_headqa_csv_with_answers_written_as_text(tmp_path: Path) -> None:
    path = tmp_path / "headqa.csv"
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.DictWriter(out, fieldnames=["name", "qid", "qtext", "ra", "image", "answers", "category"])
        writer.writeheader()
        row = _headqa(7, 2)
        writer.writerow({**{k: row[k] for k in ("name", "qid", "qtext", "ra", "image", "category")},
                         "answers": str(row["answers"])})  # fmt: skip
    (sample,), _ = load_dataset(str(path))
    assert (sample.id, sample.answer, sample.options["B"]) == ("Cuaderno_2013_1_M-7", "B", "answer 2")


def _bigbio(n: int, kind: str, choices: list[str], answer: list[str], context: str = "") -> dict[str, object]:
    return {"id": str(n), "question_id": f"q{n}", "document_id": f"d{n}", "question": f"Question {n}?",
            "type": kind, "choices": choices, "context": context, "answer": answer}  # fmt: skip


def test_bigbio_qa_items_with_choices_are_multiple_choice(tmp_path: Path) -> None:
    drugs = ["Aspirin", "Heparin", "Warfarin", "Insulin"]
    path = _jsonl(
        tmp_path / "med_qa_en_bigbio_qa.jsonl",
        [
            _bigbio(0, "multiple_choice", drugs, ["Warfarin"]),
            _bigbio(1, "yesno", ["yes", "no", "maybe"], ["No"], context="Abstract: aspirin lowered mortality."),
            _bigbio(2, "factoid", [], ["CFTR"]),
            _bigbio(3, "multiple_choice", drugs, ["Digoxin"]),
        ],
    )
    samples, info = load_dataset(str(path))
    assert [(s.id, s.answer) for s in samples] == [("0", "C"), ("1", "B")]  # BigBIO's id: question_id repeats
    assert samples[0].options == dict(zip("ABCD", drugs, strict=True)) and samples[0].question == "Question 0?"
    yesno = samples[1]
    assert yesno.question.startswith("Context: Abstract: aspirin") and yesno.question.endswith("Question 1?")
    assert yesno.metadata["bare_question"] == "Question 1?"  # data build shows the context as evidence
    assert info.skipped_rows == [
        f"{path}:3: type factoid: no choices, not a multiple-choice item",
        f"{path}:4: answer: 'Digoxin' matches none of the choices",
    ]


def _parquet(path: Path, rows: list[dict[str, object]]) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def test_parquet_files_as_hugging_face_stores_them(tmp_path: Path) -> None:
    bones = ["Femur", "Tibia", "Ulna", "Radius"]
    rows: list[dict[str, object]] = [
        {"question": f"Which bone {n}?", "subject": "anatomy", "choices": bones, "answer": n} for n in range(3)
    ]
    samples, info = load_dataset(str(_parquet(tmp_path / "anatomy-test.parquet", rows)))
    assert [(s.answer, s.options["A"]) for s in samples] == [("A", "Femur"), ("B", "Femur"), ("C", "Femur")]
    assert info.skipped == 0
    folder = tmp_path / "medmcqa"
    folder.mkdir()
    rows = [
        {"id": f"m{n}", "question": f"Q{n}?", "opa": "w", "opb": "x", "opc": "y", "opd": "z", "cop": n}
        for n in range(4)
    ]
    _parquet(folder / "test.parquet", rows)  # HF openlifescienceai/medmcqa: cop counts from 0
    samples, _ = load_dataset(str(folder))  # a folder of Parquet files
    assert [s.answer for s in samples] == ["A", "B", "C", "D"]
    image = {"bytes": b"\x89PNG", "path": "q2.png"}  # HF's Image feature: a struct, or null
    rows = [{**_headqa(1, 4), "image": None}, {**_headqa(2, 2), "image": image}]
    headqa = _parquet(tmp_path / "headqa.parquet", rows)
    samples, info = load_dataset(str(headqa))  # answers: a list of structs
    assert [(s.id, s.answer) for s in samples] == [("Cuaderno_2013_1_M-1", "D")]
    assert info.skipped_rows[0].startswith(f"{headqa}:2: image")


def test_parquet_maps_and_binary_text_read_as_objects_and_text(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    options = pa.array([[("A", "Femur"), ("B", "Tibia")]], type=pa.map_(pa.string(), pa.string()))
    table = pa.table({"question": pa.array([b"Which bone?"], pa.binary()), "options": options, "answer": ["B"]})
    pq.write_table(table, tmp_path / "bones.parquet")
    (sample,), _ = load_dataset(str(tmp_path / "bones.parquet"))
    assert (sample.question, sample.options, sample.answer) == ("Which bone?", {"A": "Femur", "B": "Tibia"}, "B")


def test_a_broken_parquet_file_is_one_line_naming_it(tmp_path: Path) -> None:
    import pytest

    from medcouncil.serving.common.errors import ConfigError

    broken = tmp_path / "test.parquet"
    broken.write_bytes(b"PAR1 not really parquet")
    with pytest.raises(ConfigError, match=rf"^{broken}: not a readable Parquet file \("):
        load_dataset(str(broken))


def test_swag_medqa_medexpqa_and_mmlu_pro_shapes_are_guessed(tmp_path: Path) -> None:
    swag = _jsonl(  # HF MedQA copies in the SWAG shape: sent1, ending0.., label from 0
        tmp_path / "medqa_swag.jsonl",
        [
            {
                "id": f"t{n}",
                "sent1": f"A patient {n}?",
                "sent2": "",
                **{f"ending{k}": f"dx {k}" for k in range(4)},
                "label": n,
            }
            for n in (3, 0, 1)
        ],
    )
    samples, _ = load_dataset(str(swag))
    assert [(s.id, s.answer, s.options["D"]) for s in samples] == [
        ("t3", "D", "dx 3"),
        ("t0", "A", "dx 3"),
        ("t1", "B", "dx 3"),
    ]
    medexp = _jsonl(  # MedExpQA: options keyed "1".."5", correct_option from 1
        tmp_path / "medexpqa.jsonl",
        [
            {"full_question": f"Q{n}?", "options": {str(k): f"opt {k}" for k in range(1, 6)}, "correct_option": n}
            for n in (4, 1, 2)  # no 5 and no 0: only the keys from "1" tell that the answers count from 1
        ],
    )
    samples, _ = load_dataset(str(medexp))
    assert [(s.answer, s.options[s.answer]) for s in samples] == [("D", "opt 4"), ("A", "opt 1"), ("B", "opt 2")]
    pro = _jsonl(  # MMLU-Pro: ten options, the answer a letter
        tmp_path / "mmlu_pro.jsonl",
        [
            {
                "question_id": n,
                "question": f"Q{n}?",
                "options": [f"o{k}" for k in range(10)],
                "answer": "J",
                "answer_index": 9,
                "category": "health",
            }
            for n in range(2)
        ],
    )
    samples, _ = load_dataset(str(pro))
    assert [(s.answer, len(s.options), s.metadata.get("subset")) for s in samples] == [("J", 10, "health")] * 2

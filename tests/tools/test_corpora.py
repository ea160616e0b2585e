from __future__ import annotations

import json
from pathlib import Path

from medcouncil.tools.chunking import Document
from medcouncil.tools.corpora import read_documents


def read(path: Path) -> tuple[list[Document], list[str]]:
    warnings: list[str] = []
    return list(read_documents(path, warnings.append)), warnings


def test_medmcqa_rows_keep_their_item_ids(tmp_path: Path) -> None:
    path = tmp_path / "medmcqa.jsonl"
    rows = [
        {
            "id": "m1",
            "question": "Q?",
            "exp": "Vitamin C deficiency causes scurvy.",
            "cop": 1,
            "opa": "a",
            "subject_name": "Medicine",
            "topic_name": "Nutrition",
        },
        {"id": "m2", "question": "Q2?", "exp": None, "cop": 2, "opa": "b"},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n{broken\n")
    documents, warnings = read(path)
    assert len(documents) == 1
    assert documents[0].item_id == "m1" and documents[0].title == "Medicine / Nutrition"
    assert documents[0].extra == {"corpus": "medmcqa"}
    assert any(w.startswith(f"{path}:2: skipped") for w in warnings)
    assert any(w.startswith(f"{path}:3: skipped, not JSON") for w in warnings)


def test_bioasq_and_pubmedqa_are_recognised(tmp_path: Path) -> None:
    bioasq = tmp_path / "bioasq.json"
    bioasq.write_text(
        json.dumps(
            {
                "questions": [
                    {
                        "id": "b1",
                        "snippets": [{"text": "BRCA1 repairs DNA.", "document": "http://pubmed/1"}, {"text": ""}],
                    }
                ]
            }
        )
    )
    pubmedqa = tmp_path / "pubmedqa.json"
    pubmedqa.write_text(
        json.dumps(
            {
                "123": {
                    "QUESTION": "Q?",
                    "CONTEXTS": ["Part one.", "Part two."],
                    "final_decision": "yes",
                    "LONG_ANSWER": "The conclusion.",
                }
            }
        )
    )
    (b,), _ = read(bioasq)
    assert b.text == "BRCA1 repairs DNA." and b.item_id == "b1" and b.extra["corpus"] == "bioasq"
    (p,), _ = read(pubmedqa)
    assert p.text == "Part one. Part two." and p.item_id == "123"
    assert "conclusion" not in p.text  # the answer's rationale is never indexed


def test_text_markdown_csv_and_folders(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text("# 천식 (Asthma)\n\nWheeze.")
    (tmp_path / "b.csv").write_text("title,text\nGout,Urate crystals.\nEmpty,\n")
    (tmp_path / "c.docx").write_bytes(b"PK")
    (tmp_path / "d.pdf").write_bytes(b"%PDF")
    documents, warnings = read(tmp_path)
    assert {d.title for d in documents} == {"천식 (Asthma)", "Gout"}
    assert any("1 files of unsupported types skipped (e.g. c.docx)" in w for w in warnings)
    assert any(w.startswith(f"{tmp_path / 'd.pdf'}: skipped, not a readable PDF") for w in warnings)
    _, warnings = read(tmp_path / "c.docx")
    assert warnings[0].startswith(f"{tmp_path / 'c.docx'}: skipped, unsupported file type")


def test_a_csv_without_a_text_column_keeps_every_row_and_says_how_it_was_read(tmp_path: Path) -> None:
    notes = tmp_path / "notes.csv"
    notes.write_text("\nGout,Urate crystals inflame the first MTP joint.\nAsthma,Wheeze and cough at night.\n\n")
    documents, warnings = read(notes)  # no header: the first row is a note (a sentence), not column names
    assert [d.text for d in documents] == [
        "Gout Urate crystals inflame the first MTP joint.",
        "Asthma Wheeze and cough at night.",
    ]
    assert warnings == [f"{notes}: no header row with a text column: each row is read whole, row 2 included"]
    numbers = tmp_path / "numbers.csv"
    numbers.write_text("1,2.5,30%\n4,5,6\n")
    assert [d.text for d in read(numbers)[0]] == ["1 2.5 30%", "4 5 6"]  # a header is never only numbers
    for header in (
        "No.,Question,Answer",
        ",drug,use",
        "drug,use,",
        "Dose [mg],HbA1c %,Patient's complaint",
        "질환,설명",
    ):
        named = tmp_path / "named.csv"
        named.write_text(f"\ufeff{header}\n1,Gout,Urate crystals.\n,,\n")
        documents, warnings = read(named)  # a header of other names: rows read whole, the header left out
        assert [d.text for d in documents] == ["1 Gout Urate crystals."], header
        assert "row 1 (" in warnings[0] and warnings[0].endswith("taken for the header"), warnings
        assert warnings[1] == f"{named}:3: skipped, empty text"
    upper = tmp_path / "upper.csv"
    upper.write_text("\ufeffTitle,Text\nGout,Urate crystals.\n")
    (document,), warnings = read(upper)  # a spreadsheet's capitalised names and byte-order mark
    assert (document.title, document.text, warnings) == ("Gout", "Urate crystals.", [])


def test_unreadable_file_is_skipped_with_its_name(tmp_path: Path) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"\xff\xfe\xfa garbage")
    documents, warnings = read(bad)
    assert documents == []
    assert warnings and warnings[0].startswith(f"{bad}: skipped, unreadable")


def test_malformed_json_documents_are_warnings_naming_the_file_never_a_crash(tmp_path: Path) -> None:
    cases = {
        "bioasq_ints.json": json.dumps({"questions": [1, {"body": "q", "snippets": ["plain"]}, {"body": "none"}]}),
        "bioasq_zero.json": json.dumps({"questions": [{"id": 0, "body": "q", "snippets": [{"text": "t"}]}]}),
        "deep.json": "[" * 100_000 + "]" * 100_000,
        "big.jsonl": '{"text": 1' + "0" * 5000 + "}\n" + json.dumps({"text": "kept", "title": None, "id": None}) + "\n",
        "bom.json": "\ufeff" + json.dumps([{"text": "with a BOM"}]),
    }
    for name, text in cases.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    found: dict[str, tuple[list[Document], list[str]]] = {name: read(tmp_path / name) for name in cases}
    assert found["bioasq_ints.json"] == (
        [],
        [
            f"{tmp_path / 'bioasq_ints.json'}: question {n} skipped, not an object with a list of snippet objects"
            for n in (0, 1)
        ],
    )
    (zero,), _ = found["bioasq_zero.json"]
    assert zero.item_id == "0"  # an id of 0 is an id
    assert found["deep.json"][0] == [] and found["deep.json"][1] == [
        f"{tmp_path / 'deep.json'}:1: not JSON (nested too deeply): skipped"
    ]
    (kept,), warned = found["big.jsonl"]
    assert (kept.text, kept.title, kept.item_id) == ("kept", "", "")  # null title and id: empty, not "None"
    assert len(warned) == 1 and warned[0].startswith(
        f"{tmp_path / 'big.jsonl'}:1: skipped, not JSON (Exceeds the limit"
    )
    assert [d.text for d in found["bom.json"][0]] == ["with a BOM"]

"""``medcouncil index eval`` and ``index add``'s PDF reading and leak record, driven as a user would on real stores."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from medcouncil.tools.knowledge import KnowledgeBase, KnowledgeConfig
from tests.conftest import SHARED


def pdf_bytes(text: str) -> bytes:
    """A one-page PDF with ``text`` in its text layer (Helvetica)."""
    stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length " + str(len(stream)).encode() + b" >>\nstream\n" + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{offset:010d} 00000 n \n".encode() for offset in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


def run(cli: list[str], tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200", "MEDCOUNCIL_KNOWLEDGE_DIR": str(tmp_path / "store")}
    return subprocess.run([*cli, *args], capture_output=True, text=True, timeout=600, env=env)


def test_eval_prints_each_methods_table_and_writes_per_query_ranks(cli: list[str], tmp_path: Path) -> None:
    ranks = tmp_path / "ranks.jsonl"
    args = ("index", "eval", "--set", "starter", "--limit", "6", "--store", str(tmp_path / "eval"))
    done = run(cli, tmp_path, *args, "--method", "hybrid", "--method", "dense", "--ranks", str(ranks), "--calibrate")
    assert done.returncode == 0, done.stderr
    for header in ("recall@1", "recall@5", "recall@10", "MRR", "nDCG@10", "hybrid", "dense"):
        assert header in done.stdout
    assert "lexical" not in done.stdout.split("per-query ranks")[0].split("┃")[-1]
    assert "hybrid decision: relevant document kept for" in done.stdout
    assert "best line (intercept, cosine, coverage)" in done.stdout
    rows = [json.loads(line) for line in ranks.read_text().splitlines()]
    assert len(rows) == 6 * 2 and {row["method"] for row in rows} == {"hybrid", "dense"}
    assert all(row["set"] == "starter" and row["relevant"] == 1 for row in rows)
    assert {"first_rank", "recall", "reciprocal_rank", "ndcg10", "kept", "top"} <= set(rows[0])

    again = run(cli, tmp_path, *args, "--method", "lexical", "--ranks", str(tmp_path / "second.jsonl"))
    assert again.returncode == 0, again.stderr

    queries = tmp_path / "q.jsonl"
    queries.write_text('{"id": "1", "text": "gout", "relevant": ["gout.md"]}\n')
    empty = run(cli, tmp_path, "index", "eval", "--set", str(queries), "--collection", "nothing-here")
    assert empty.returncode == 1 and "collection 'nothing-here'" in empty.stderr and "is empty" in empty.stderr
    bad = run(cli, tmp_path, "index", "eval", "--method", "sparse")
    assert bad.returncode == 1 and "--method sparse: choose from hybrid, dense, lexical" in bad.stderr


def test_eval_of_a_users_queries_against_a_collection(cli: list[str], tmp_path: Path) -> None:
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "gout.md").write_text("# Gout\n\nUrate crystals inflame the first MTP joint; colchicine treats attacks.")
    (notes / "asthma.md").write_text("# Asthma\n\nEpisodic wheeze and night cough, relieved by salbutamol.")
    (notes / "guide.pdf").write_bytes(pdf_bytes("Scurvy: vitamin C deficiency with bleeding gums."))
    (notes / "scan.pdf").write_bytes(b"%PDF-1.4 truncated")
    added = run(cli, tmp_path, "index", "add", str(notes), "--collection", "mine", "--no-leak-check")
    assert added.returncode == 0, added.stderr
    assert "3 documents → 3 chunks, 3 new" in added.stdout
    assert "scan.pdf: skipped, not a readable PDF" in added.stderr
    queries = tmp_path / "queries.jsonl"
    lines = [
        {"id": "q1", "text": "painful big toe joint with crystals", "relevant": ["gout.md"]},
        {"id": "q2", "text": "bleeding gums in a sailor", "relevant": ["guide.pdf"]},
        {"id": "q3", "text": "what time does the train leave", "relevant": []},
    ]
    queries.write_text("".join(json.dumps(line) + "\n" for line in lines))
    ranks = tmp_path / "ranks.jsonl"
    done = run(cli, tmp_path, "index", "eval", "--set", str(queries), "--collection", "mine", "--ranks", str(ranks))
    assert done.returncode == 0, done.stderr
    rows = {(row["query"], row["method"]): row for row in map(json.loads, ranks.read_text().splitlines())}
    assert rows[("q1", "hybrid")]["first_rank"] == 1 and rows[("q2", "hybrid")]["first_rank"] == 1
    assert rows[("q3", "hybrid")]["kept"] == 0  # off-topic: no evidence
    assert "off-topic queries answered 'no evidence' 100%" in done.stdout

    (notes / "gout.md").write_text("# Gout\n\nHyperuricaemia; flares are treated with NSAIDs.")  # edited
    readded = run(cli, tmp_path, "index", "add", str(notes), "--collection", "mine", "--no-leak-check")
    assert readded.returncode == 0, readded.stderr
    assert "3 documents → 3 chunks, 1 new, 1 removed (no longer in their file)" in readded.stdout
    assert "holds 3 chunks" in readded.stdout

    rows_file = tmp_path / "rows.jsonl"
    rows_file.write_text('{"text": "Croup: barking cough and stridor."}\n{"text": "Scarlet fever: sandpaper rash."}\n')
    assert run(cli, tmp_path, "index", "add", str(rows_file), "--collection", "mine", "--no-leak-check").returncode == 0
    rows_file.write_text('{"text": "Croup: barking cough and stridor."}\n{broken\n')  # read in part: nothing replaced
    partly = run(cli, tmp_path, "index", "add", str(rows_file), "--collection", "mine", "--no-leak-check")
    assert partly.returncode == 0 and "rows.jsonl:2: skipped, not JSON" in partly.stderr
    assert "rows.jsonl: not read whole, so chunks from an earlier version" in partly.stderr
    assert "holds 5 chunks" in partly.stdout
    (notes / "asthma.md").unlink()  # a file deleted from a folder added again
    again = run(cli, tmp_path, "index", "add", str(notes), "--collection", "mine", "--no-leak-check")
    assert "1 removed (no longer in their file)" in again.stdout and "holds 4 chunks" in again.stdout


@pytest.mark.skipif(not (SHARED / "data" / "raw" / "medmcqa_dev.jsonl").exists(), reason="shared data not present")
def test_add_records_and_guards_what_would_leak(cli: list[str], tmp_path: Path) -> None:
    rows = [json.loads(line) for line in (SHARED / "data" / "raw" / "medmcqa_dev.jsonl").read_text().splitlines()]
    test_ids = {json.loads(line)["realidx"] for line in (SHARED / "data" / "mcqa" / "medmcqa.test.jsonl").open()}
    leaking = next(row for row in rows if row["id"] in test_ids and row.get("exp"))
    clean = next(row for row in rows if row["id"] not in test_ids and row.get("exp"))
    corpus = tmp_path / "dev.jsonl"
    corpus.write_text(json.dumps(leaking) + "\n" + json.dumps(clean) + "\n")
    args = ("index", "add", str(corpus), "--collection", "exp-kb", "--data", str(SHARED / "data"))
    first = run(cli, tmp_path, *args)
    assert first.returncode == 0, first.stderr
    assert "1 documents would leak benchmark items (medmcqa 1)" in first.stdout.replace("\n", " ")
    record = tmp_path / "store" / "leaks" / "exp-kb.jsonl"
    (leak,) = [json.loads(line) for line in record.read_text().splitlines()]
    assert leak["eval_source"] == "medmcqa" and leak["eval_id"] == leaking["id"] and leak["kind"] == "id"
    run(cli, tmp_path, *args)
    assert len(record.read_text().splitlines()) == 1  # re-adding records nothing twice

    # A copy of a test question under another id leaks by its question; a re-add without the check keeps the label.
    test_row = json.loads((SHARED / "data" / "mcqa" / "medmcqa.test.jsonl").open().readline())
    copied = {**clean, "id": "mine-1", "question": test_row["question"], "exp": "An explanation copied elsewhere."}
    corpus.write_text(json.dumps(leaking) + "\n" + json.dumps(clean) + "\n" + json.dumps(copied) + "\n")
    assert "(medmcqa 2)" in run(cli, tmp_path, *args).stdout.replace("\n", " ")
    unchecked = run(cli, tmp_path, *args[:-2], "--no-leak-check")
    assert unchecked.returncode == 0, unchecked.stderr
    store = KnowledgeBase(KnowledgeConfig(path=tmp_path / "store", collection="exp-kb"))
    labels = store.collection.get(where={"document": test_row["realidx"]}, include=["documents"])["documents"] or []
    assert labels == ["An explanation copied elsewhere."]  # still under the test item's id: the guard keeps it out


def test_an_evaluation_store_follows_its_data(cli: list[str], tmp_path: Path) -> None:
    folder = tmp_path / "data" / "raw" / "bioasq"
    folder.mkdir(parents=True)

    def golden(snippets: list[str]) -> None:
        question = {"id": "q1", "body": "What causes gout?", "snippets": [{"text": text} for text in snippets]}
        (folder / "11B1_golden.json").write_text(json.dumps({"questions": [question]}))

    args = ("index", "eval", "--set", "bioasq", "--data", str(tmp_path / "data"), "--store", str(tmp_path / "eval"))
    golden(["Gout is caused by urate crystals.", "Colchicine treats gout flares.", "Asthma causes wheeze."])
    assert run(cli, tmp_path, *args).returncode == 0
    golden(["Gout is caused by urate crystals."])  # the data changed: the store must not keep the old snippets
    done = run(cli, tmp_path, *args, "--ranks", str(tmp_path / "ranks.jsonl"))
    assert done.returncode == 0, done.stderr
    (row, *_) = [json.loads(line) for line in (tmp_path / "ranks.jsonl").read_text().splitlines()]
    assert row["first_rank"] == 1 and len(row["top"]) == 1  # one document left in the collection

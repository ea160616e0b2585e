"""``medcouncil index`` driven as a user would, on a real store."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest


def medcouncil(cli: list[str], store: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200", "MEDCOUNCIL_KNOWLEDGE_DIR": str(store)}
    return subprocess.run([*cli, *args], capture_output=True, text=True, timeout=300, env=env)


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return tmp_path / "store"


def test_add_query_stats_remove(cli: list[str], store: Path, tmp_path: Path) -> None:
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "gout.md").write_text("# Gout\n\nUrate crystals inflame the first MTP joint. Colchicine treats attacks.")
    (notes / "broken.json").write_text("{not json")
    added = medcouncil(cli, store, "index", "add", str(notes), str(tmp_path / "missing.txt"), "--collection", "notes")
    assert added.returncode == 1, added.stderr  # the rest is in, but a path given was not found
    assert f"{notes / 'broken.json'}:1: not JSON" in added.stderr and "): skipped" in added.stderr
    assert "missing.txt: skipped, no such file" in added.stderr
    assert "1 documents → 1 chunks, 1 new" in added.stdout
    assert "notes chunks" in added.stderr and "1/1" in added.stderr and "/?" not in added.stderr  # a known total
    assert added.stderr.rstrip().endswith(f"error: not found: {tmp_path / 'missing.txt'}")
    alone = medcouncil(cli, store, "index", "add", str(tmp_path / "missing.txt"), "--collection", "notes")
    assert alone.returncode == 1 and alone.stderr == f"error: not found: {tmp_path / 'missing.txt'}\n"

    relative = os.path.relpath(notes / "gout.md")  # another spelling of the same file
    again = medcouncil(cli, store, "index", "add", relative, "--collection", "notes")
    assert "1 chunks, 0 new" in again.stdout

    found = medcouncil(cli, store, "index", "query", "crystals in the big toe joint", "--collection", "notes")
    assert found.returncode == 0 and "gout.md" in found.stdout and "Urate crystals" in found.stdout

    stats = medcouncil(cli, store, "index", "stats", "--collection", "notes")
    assert "1 chunks" in stats.stdout and "distance cosine" in stats.stdout

    source = str((notes / "gout.md").resolve())
    removed = medcouncil(cli, store, "index", "remove", relative, "--collection", "notes")
    assert f"Removed 1 chunks of {source}" in removed.stdout
    empty = medcouncil(cli, store, "index", "query", "crystals", "--collection", "notes")
    assert empty.returncode == 0 and "No evidence" in empty.stdout


def test_default_collection_answers_with_the_starter_pack(cli: list[str], store: Path) -> None:
    result = medcouncil(cli, store, "index", "query", "urate crystals in the first metatarsophalangeal joint")
    assert result.returncode == 0, result.stderr
    assert "starter/gout.md" in result.stdout


def test_corrupt_store_and_bad_collection_are_one_line_errors(cli: list[str], store: Path) -> None:
    store.mkdir(parents=True)
    (store / "chroma.sqlite3").write_bytes(b"garbage" * 1000)
    result = medcouncil(cli, store, "index", "stats")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith(f"error: knowledge store {store} cannot be opened")
    bad = medcouncil(cli, store, "index", "stats", "--collection", "x")
    assert bad.returncode == 1 and "collection name 'x'" in bad.stderr


def test_query_k_and_threshold_out_of_range_are_usage_errors(cli: list[str], store: Path) -> None:
    for args in (["-k", "-1"], ["-k", "0"], ["--threshold", "1.5"]):
        result = medcouncil(cli, store, "index", "query", "crystals", *args)
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
        assert "Invalid value for" in result.stderr and not store.exists()  # refused before the store is opened

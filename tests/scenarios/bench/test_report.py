"""Summaries and reports from a hand-written journal: errors left out, paired counts, gated cost, the suite table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medcouncil.agents.protocol import Episode, Question, Turn
from medcouncil.scenarios.bench.journal import ErrorRecord, Journal, Manifest, Record, RunConfig, read_manifest
from medcouncil.scenarios.bench.report import SUITE, write_report
from medcouncil.scenarios.bench.summary import summarize
from medcouncil.scenarios.datasets.registry import DatasetInfo
from medcouncil.serving.common.errors import ConfigError
from medcouncil.tools.knowledge import Evidence

GOLD = {"q1": "A", "q2": "B", "q3": "C", "q4": "A"}
PREDICTED: dict[str, dict[str, str | None]] = {  # mode → item → letter; q4 council is an error
    "single": {"q1": "A", "q2": "A", "q3": None, "q4": "B"},
    "council": {"q1": "A", "q2": "B", "q3": "C"},
    "gated": {"q1": "A", "q2": "B", "q3": "C", "q4": "B"},
}


def make_run(directory: Path, modes: list[str] = ["single", "council", "gated"]) -> Manifest:  # noqa: B006
    info = DatasetInfo(
        dataset="toy",
        source="toy.jsonl",
        fingerprint="0" * 64,
        rows=4,
        skipped=1,
        skipped_rows=["toy.jsonl:9: missing field 'answer'"],
    )
    manifest = Manifest(
        dataset=info,
        config=RunConfig(modes=modes, model="m", endpoint="http://127.0.0.1:1/v1"),
        sample_ids=list(GOLD),
        label="toy run",
    )
    journal = Journal(directory)
    journal.write_manifest(manifest)
    for mode in modes:
        for item, letter in PREDICTED[mode].items():
            question = Question(text=f"<b>{item}</b> question", options={"A": "a", "B": "b", "C": "c"}, item_id=item)
            evidence = [Evidence(id="c1", text="Gout: urate crystals.", source="starter/gout.md", score=0.71)]
            turns = [
                Turn(agent="retriever", content="[1] gout", kind="evidence", evidence=evidence),
                Turn(
                    agent=mode,
                    content=f"Final answer: {letter}",
                    prompt_tokens=100,
                    completion_tokens=10,
                    model_calls=2 if mode == "council" else 1,
                ),
            ]
            episode = Episode(question=question, answerer=mode, letter=letter, turns=turns)
            escalated = (item in ("q2", "q3")) if mode == "gated" else None
            journal.append(
                Record(
                    sample_id=item,
                    mode=mode,
                    subset="s1" if item < "q3" else "s2",
                    gold=GOLD[item],
                    letter=letter,
                    correct=letter == GOLD[item],
                    prompt_tokens=100,
                    completion_tokens=10,
                    model_calls=2 if mode == "council" else 1,
                    latency_s=1.0,
                    escalated=escalated,
                    episode=episode,
                )
            )
    for attempt in (1, 2, 3):
        journal.append_error(ErrorRecord(sample_id="q4", mode="council", attempt=attempt, error="unreachable"))
    journal.close()
    return manifest


def test_summary_leaves_errors_out_and_pairs_the_same_items(tmp_path: Path) -> None:
    from medcouncil.scenarios.bench.journal import read_errors, read_records

    manifest = make_run(tmp_path)
    summary = summarize(manifest, read_records(tmp_path), read_errors(tmp_path))
    rows = {(r.mode, r.subset): r for r in summary.rows}
    single, council, gated = rows["single", "all"], rows["council", "all"], rows["gated", "all"]
    assert (single.n, single.correct, single.invalid, single.errors) == (4, 1, 1, 0)
    assert (council.n, council.correct, council.errors, council.accuracy) == (3, 3, 1, 1.0)  # the error is not wrong
    assert gated.escalated == 0.5 and council.calls == 2.0 and single.tokens == 110
    assert rows["single", "s2"].n == 2 and rows["council", "s2"].n == 1
    pairs = {(p.first, p.second): p for p in summary.paired}
    council_single = pairs["council", "single"]
    assert (council_single.n, council_single.only_first, council_single.only_second) == (3, 2, 0)
    assert council_single.p_value == 0.5  # exact: 2 discordant pairs, both one way
    assert (pairs["gated", "single"].only_first, pairs["gated", "single"].n) == (2, 4)
    assert summary.errors == 1 and summary.pending == 0 and summary.skipped_rows == 1


def test_report_files_have_tables_plot_and_escaped_transcripts(tmp_path: Path) -> None:
    make_run(tmp_path)
    md_path, html_path = write_report(tmp_path)
    text = md_path.read_text()
    assert "| council | all | 3 | 100.0 |" in text and "| single | all | 4 | 25.0 |" in text
    assert "| council vs single | 3 | 100.0 | 33.3 | 2 | 0 | 0.5 |" in text
    assert "council convened on 50.0% of items" in text
    assert "toy.jsonl:9: missing field 'answer'" in text and "1 item×mode errors" in text
    page = html_path.read_text()
    assert page.startswith("<!doctype html>") and "<svg" in page and "http" not in page.split("<body>")[0]
    assert "&lt;b&gt;q1&lt;/b&gt; question" in page and "<b>q1</b> question" not in page
    assert "starter/gout.md" in page and page.count("<details>") == 4


def test_suite_reference_table_marks_runs_that_could_not_run(tmp_path: Path) -> None:
    make_run(tmp_path / "medqa-4-options", ["single", "council"])
    (tmp_path / SUITE).write_text(
        json.dumps(
            {
                "suite": "reference",
                "modes": ["single", "council"],
                "runs": [
                    {"label": "KorMedMCQA doctor", "dir": "kormedmcqa-doctor", "note": "not run: offline"},
                    {"label": "MedQA 4 options", "dir": "medqa-4-options", "note": ""},
                ],
            }
        )
    )
    md_path, _ = write_report(tmp_path)
    lines = md_path.read_text().splitlines()
    assert "| dataset | single Acc | single F1 | council Acc | council F1 | n | note |" in lines
    assert "| KorMedMCQA doctor | – | – | – | – | 0 | not run: offline |" in lines
    assert any(line.startswith("| MedQA 4 options | 25.0 | ") and "| 100.0 |" in line for line in lines)


def test_newer_run_logs_and_non_runs_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a benchmark run"):
        read_manifest(tmp_path)
    make_run(tmp_path)
    data = json.loads((tmp_path / "run.json").read_text())
    (tmp_path / "run.json").write_text(json.dumps({**data, "schema_version": 99}))
    with pytest.raises(ConfigError, match="run log version 99 is newer"):
        read_manifest(tmp_path)


def test_report_shows_the_predicted_letter_distribution(tmp_path: Path) -> None:
    make_run(tmp_path)
    lines = write_report(tmp_path)[0].read_text().splitlines()
    assert "|  | - | A | B | C |" in lines
    assert "| gold | 0 | 2 | 1 | 1 |" in lines
    assert "| single | 1 | 2 | 1 | 0 |" in lines and "| council | 0 | 1 | 1 | 1 |" in lines


def test_printed_summary_fits_80_columns_when_not_a_terminal(cli: list[str], tmp_path: Path) -> None:
    import os
    import subprocess

    make_run(tmp_path)
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    done = subprocess.run([*cli, "report", str(tmp_path)], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert max(len(line) for line in lines if "│" in line or "┃" in line) <= 80
    table = "\n".join(lines)
    assert "…" not in table  # no header or mode cut short ("sin…", "tok…")
    for word in ("single", "council", "gated", "acc%", "95% CI", "tok/q", "calls/q", "esc"):
        assert word in table

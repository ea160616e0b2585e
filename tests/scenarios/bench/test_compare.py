"""Model-vs-model comparison of finished runs, on hand-written journals with known answers."""

from __future__ import annotations

import logging
import os
import subprocess
from pathlib import Path

import pytest

from medcouncil.agents.protocol import Episode, Question
from medcouncil.scenarios.bench.compare import compare, markdown, write
from medcouncil.scenarios.bench.journal import SAMPLES, Journal, Manifest, Record, RunConfig
from medcouncil.scenarios.datasets.registry import DatasetInfo
from medcouncil.serving.common.errors import ConfigError

GOLD = {f"q{i}": "ABCD"[i % 4] for i in range(10)}


def make_run(
    directory: Path, model: str, right: set[str], items: list[str] | None = None, dataset: str = "medqa"
) -> Path:
    items = items or list(GOLD)
    info = DatasetInfo(dataset=dataset, source=f"{dataset}.jsonl", fingerprint="0" * 64, rows=len(items), skipped=0)
    manifest = Manifest(dataset=info, config=RunConfig(modes=["single"], model=model), sample_ids=items)
    journal = Journal(directory)
    journal.write_manifest(manifest)
    for item in items:
        letter = GOLD[item] if item in right else "A" if GOLD[item] != "A" else "B"
        question = Question(text=item, options={k: k.lower() for k in "ABCD"}, item_id=item)
        journal.append(
            Record(
                sample_id=item,
                mode="single",
                gold=GOLD[item],
                letter=letter,
                correct=letter == GOLD[item],
                prompt_tokens=50,
                completion_tokens=1,
                model_calls=1,
                episode=Episode(question=question, answerer="single", letter=letter),
            )
        )
    journal.close()
    return directory


def test_adapter_against_base_on_the_same_items(tmp_path: Path) -> None:
    base = make_run(tmp_path / "base", "gemma-3-270m", right={"q0", "q4", "q8"})  # the "A" items
    tuned = make_run(tmp_path / "tuned", "med", right={"q0", "q1", "q2", "q3", "q5", "q6", "q7", "q9"})
    result = compare([base, tuned])
    assert result.labels == ["gemma-3-270m", "med"] and result.items == 10
    rows = {r.label: r for r in result.rows}
    assert rows["gemma-3-270m"].accuracy == 0.3 and rows["med"].accuracy == 0.8
    assert rows["med"].ci_low < 0.8 < rows["med"].ci_high
    [versus] = result.versus
    # med right where base wrong: q1 q2 q3 q5 q6 q7 q9 (7); base right where med wrong: q4 q8 (2)
    assert (versus.only_first, versus.only_second, versus.n) == (7, 2, 10)
    assert versus.p_value == pytest.approx(2 * sum(__import__("math").comb(9, k) for k in range(3)) / 2**9)
    text = markdown(result)
    assert "med vs gemma-3-270m" in text and "McNemar" in text
    md, page = write(result, tmp_path / "out")
    assert md.exists() and "<table>" in page.read_text() and (tmp_path / "out" / "compare.json").exists()


def test_items_not_in_every_run_are_left_out_and_said(tmp_path: Path) -> None:
    base = make_run(tmp_path / "a", "m", right=set(GOLD))
    other = make_run(tmp_path / "b", "m", right=set(), items=["q0", "q1", "q2"])
    result = compare([base, other])
    assert result.items == 3 and result.dropped == {"m (a)": 7, "m (b)": 0}
    assert "left out" in markdown(result)


def test_limit_compares_the_first_runs_first_items(tmp_path: Path) -> None:
    base = make_run(tmp_path / "base", "gemma-3-270m", right={"q0", "q4", "q8"})
    tuned = make_run(tmp_path / "tuned", "med", right={"q0", "q1", "q2", "q3", "q5", "q6", "q7", "q9"})
    result = compare([base, tuned], limit=4)  # q0-q3: base right on q0, tuned on all four
    assert result.items == 4 and result.dropped == {"gemma-3-270m": 0, "med": 0}
    assert {r.label: r.accuracy for r in result.rows} == {"gemma-3-270m": 0.25, "med": 1.0}
    assert (result.versus[0].only_first, result.versus[0].only_second) == (3, 0)
    assert "within the reference's first 4 items" in markdown(result)  # a limited report says so
    assert "within the reference's first" not in markdown(compare([base, tuned]))
    short = make_run(tmp_path / "short", "short", right=set(), items=["q1", "q2"])
    partial = compare([base, short], limit=4)  # q0 and q3 unanswered by the short run: left out and said
    assert partial.items == 2 and partial.dropped == {"gemma-3-270m": 2, "short": 0}
    with pytest.raises(ConfigError, match="at least 1"):
        compare([base, tuned], limit=0)


def test_journal_rows_of_another_run_are_left_out_and_told(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    base = make_run(tmp_path / "a", "m", right=set(GOLD))
    other = make_run(tmp_path / "b", "m", right=set(GOLD), items=["q0", "q1", "q2"])
    with (other / SAMPLES).open("a") as journal:  # rows copied in from a run of more items
        journal.write((base / SAMPLES).read_text().splitlines()[5] + "\n")
    with caplog.at_level(logging.WARNING):
        result = compare([base, other])
    assert result.items == 3
    assert f"{other / SAMPLES}: 1 journal rows name an item or mode this run does not hold (first: q5" in caplog.text


def test_refuses_what_cannot_be_compared(tmp_path: Path) -> None:
    base = make_run(tmp_path / "a", "m", right=set())
    with pytest.raises(ConfigError, match="at least two"):
        compare([base])
    other = make_run(tmp_path / "b", "m", right=set(), dataset="mmlu")
    with pytest.raises(ConfigError, match="different datasets"):
        compare([base, other])
    with pytest.raises(ConfigError, match="no such directory"):
        compare([base, tmp_path / "missing"])
    with pytest.raises(ConfigError, match="is given twice: compare different runs"):
        compare([base, tmp_path / "." / "a"])


def test_cli_prints_the_table_and_writes_the_report(cli: list[str], tmp_path: Path) -> None:
    base = make_run(tmp_path / "base", "gemma-3-270m", right={"q0"})
    tuned = make_run(tmp_path / "tuned", "med", right={"q0", "q1"})
    done = subprocess.run(
        [*cli, "compare", str(base), str(tuned), "--out", str(tmp_path / "cmp")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "med vs gemma-3-270m" in done.stdout and (tmp_path / "cmp" / "compare.md").exists()
    partial = make_run(tmp_path / "partial", "med", right={"q0"}, items=["q0", "q1"])  # an unfinished run
    done = subprocess.run(
        [*cli, "compare", str(base), str(partial), "--out", str(tmp_path / "cmp2")],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200"},
    )
    told = "compared on the 2 items every run answered; left out of each run's item list (unanswered by it or by "
    assert told + "another run): gemma-3-270m 8, med 0" in done.stdout
    first = subprocess.run(
        [*cli, "compare", str(base), str(tuned), "--limit", "1", "--out", str(tmp_path / "cmp3")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert first.returncode == 0, first.stderr
    assert "1 items, 100.0% vs 100.0%" in first.stdout and "left out" not in first.stdout
    assert "first 1 items (--limit)" in " ".join(first.stdout.split())
    failed = subprocess.run([*cli, "compare", str(base)], capture_output=True, text=True, timeout=120)
    assert failed.returncode == 1 and "at least two" in failed.stderr and "Traceback" not in failed.stderr


def test_a_row_calling_a_wrong_letter_correct_is_read_by_nobody(tmp_path: Path) -> None:
    """compare counted the row's own ``correct`` while the report scored the letter: such a row is malformed."""
    from pydantic import ValidationError

    question = Question(text="q0", options={k: k.lower() for k in "ABCD"}, item_id="q0")
    episode = Episode(question=question, answerer="single", letter="B")
    with pytest.raises(ValidationError, match="correct is True but letter 'B' and gold 'A' say otherwise"):
        Record(sample_id="q0", mode="single", gold="A", letter="B", correct=True, episode=episode)
    with pytest.raises(ValidationError, match="correct is True but letter None"):
        Record(sample_id="q0", mode="single", gold="A", letter=None, correct=True, episode=episode)
    assert Record(sample_id="q0", mode="single", gold="A", letter=None, correct=False, episode=episode).letter is None

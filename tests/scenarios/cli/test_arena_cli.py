"""``medcouncil arena``'s command line without a model: one-line errors that leave nothing behind, a resume that
refuses flags it cannot honour, and a finished run whose report is rebuilt without opening any model."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from pathlib import Path

from medcouncil.agents.arena_judge import ReferenceJudge
from medcouncil.agents.council import SingleModel
from medcouncil.scenarios.arena.items import ArenaItem
from medcouncil.scenarios.arena.journal import ArenaConfig, ArenaJournal, ArenaManifest
from medcouncil.scenarios.arena.run import answer_all, judge_all
from medcouncil.serving.replay import ReplayModel

ENV = {**os.environ, "COLUMNS": "200", "MEDCOUNCIL_ENDPOINT": "http://127.0.0.1:9/v1"}  # nothing listens there


def arena(cli: list[str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*cli, "arena", *args], capture_output=True, text=True, timeout=120, env=ENV)


def test_bad_input_is_one_line_and_leaves_no_folder(cli: list[str], tmp_path: Path) -> None:
    missing = arena(cli, "--items", str(tmp_path / "nope.jsonl"), "-c", "single,cot", "--out", str(tmp_path / "a"))
    assert missing.returncode == 1 and "not an arena source" in missing.stderr and "Traceback" not in missing.stderr
    wrong = arena(cli, "--items", "x", "-c", "single,sc", "--out", str(tmp_path / "b"))
    assert wrong.returncode == 1 and "does not answer open questions" in wrong.stderr
    pairs = arena(cli, "--items", "x", "-c", "single,cot", "--pairs", "some", "--out", str(tmp_path / "c"))
    assert pairs.returncode == 1 and "--pairs: 'all' or a whole number" in pairs.stderr
    assert not (tmp_path / "b").exists() and not (tmp_path / "c").exists()
    nothing = arena(cli, "--resume", str(tmp_path))
    assert nothing.returncode == 1 and "no arena run here" in nothing.stderr
    assert not (tmp_path / ".lock").exists()


def finished_run(directory: Path) -> None:
    items = [
        ArenaItem(id="1", prompt="Wheeze?", references=("Asthma",), dataset="open"),
        ArenaItem(id="2", prompt="Chest pain?", references=("Myocardial infarction",), dataset="open"),
    ]
    manifest = ArenaManifest(
        config=ArenaConfig(source="open.jsonl", contestants=["single", "cot"], judges=["reference"], model="m")
    )
    journal = ArenaJournal(directory)
    journal.write_items(items)
    single = SingleModel(ReplayModel(["Asthma.", "Myocardial infarction."]))
    cot = SingleModel(ReplayModel(["Anxiety.", "Myocardial infarction."]))
    asyncio.run(answer_all(manifest, items, journal, {"single": single, "cot": cot}))
    asyncio.run(judge_all(manifest, items, journal, ReferenceJudge()))
    journal.close()
    journal.write_manifest(manifest)


def test_a_finished_run_reports_without_a_model_and_resume_refuses_other_settings(
    cli: list[str], tmp_path: Path
) -> None:
    run = tmp_path / "run"
    finished_run(run)
    done = arena(cli, "--resume", str(run), "--anchor", "cot")
    assert done.returncode == 0, done.stderr
    assert "judge: reference" in done.stdout and "starting the embedded" not in done.stderr
    assert json.loads((run / "arena.json").read_text())["finished"]
    report = (run / "report.md").read_text()
    assert "| 1 | single | 1" in report and "| 2 | cot | 1000 |" in report  # cot anchored at 1000, single above
    unknown = arena(cli, "--resume", str(run), "--anchor", "panel")
    assert unknown.returncode == 1 and "--anchor 'panel' is not a contestant" in unknown.stderr
    changed = arena(cli, "--resume", str(run), "-c", "council,single", "--limit", "3")
    assert changed.returncode == 1 and "--contestant, --limit: fixed by the run" in changed.stderr
    bogus = arena(cli, "--resume", str(run), "--judge", "bogus")
    assert bogus.returncode == 1 and "judges: choose from" in bogus.stderr and "Traceback" not in bogus.stderr
    cold = arena(cli, "--resume", str(run), "--no-cache")
    assert cold.returncode == 1 and "without --no-cache" in cold.stderr
    more = arena(cli, "--resume", str(run), "--judge", "model")  # a judge added: the unreachable endpoint is named
    assert more.returncode == 1 and "127.0.0.1:9" in more.stderr and "arena --resume" in more.stderr

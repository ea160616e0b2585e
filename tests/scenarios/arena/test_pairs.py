"""Preference pairs from an arena run's judgements: winners only, once per pair, never from a blank answer."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from medcouncil.agents.arena_judge import ReferenceJudge
from medcouncil.agents.council import SingleModel
from medcouncil.scenarios.arena.items import ArenaItem
from medcouncil.scenarios.arena.journal import ArenaConfig, ArenaJournal, ArenaManifest, JudgementLine
from medcouncil.scenarios.arena.pairs import arena_pairs
from medcouncil.scenarios.arena.run import answer_all, judge_all
from medcouncil.serving.common.errors import ConfigError
from medcouncil.serving.replay import ReplayModel


def test_pairs_from_an_arena_run_keep_winners_once(tmp_path: Path) -> None:
    items = [
        ArenaItem(id="1", prompt="Wheeze relieved by salbutamol?", references=("Asthma",)),
        ArenaItem(id="2", prompt="Chest pain?", references=("Myocardial infarction",)),
    ]
    manifest = ArenaManifest(config=ArenaConfig(source="x", contestants=["single", "cot"], judges=["reference"]))
    journal = ArenaJournal(tmp_path)
    journal.write_items(items)
    journal.write_manifest(manifest)
    single = SingleModel(ReplayModel(["Asthma.", "Pericarditis."]))
    cot = SingleModel(ReplayModel(["Anxiety.", "Pericarditis, probably."]))
    asyncio.run(answer_all(manifest, items, journal, {"single": single, "cot": cot}))
    asyncio.run(judge_all(manifest, items, journal, ReferenceJudge()))  # item 1: single wins; item 2: a tie
    journal.add_judgement(  # a judge model's inconsistent verdict, and a repeat of item 1 by another judge
        JudgementLine(item_id="2", first="single", second="cot", judge="model", outcome="tie", orders=["A", "A"],
                      consistent=False)
    )  # fmt: skip
    journal.add_judgement(
        JudgementLine(item_id="1", first="single", second="cot", judge="human", outcome="first", orders=["A"],
                      consistent=True)
    )  # fmt: skip
    journal.close()
    (pair,) = arena_pairs(tmp_path)
    assert (pair.prompt[-1].content, pair.chosen, pair.rejected) == (
        "Wheeze relieved by salbutamol?",
        "Asthma.",
        "Anxiety.",
    )
    assert pair.source.endswith(":1:reference")


def test_a_blank_answer_makes_no_pair(tmp_path: Path) -> None:
    items = [ArenaItem(id="1", prompt="Wheeze?", references=("Asthma",))]
    manifest = ArenaManifest(config=ArenaConfig(source="x", contestants=["single", "cot"], judges=["reference"]))
    journal = ArenaJournal(tmp_path)
    journal.write_items(items)
    journal.write_manifest(manifest)
    single, cot = SingleModel(ReplayModel(["Asthma."])), SingleModel(ReplayModel(["   "]))
    asyncio.run(answer_all(manifest, items, journal, {"single": single, "cot": cot}))
    asyncio.run(judge_all(manifest, items, journal, ReferenceJudge()))
    journal.close()
    assert journal.judgements()[0].outcome == "first"
    with pytest.raises(ConfigError, match="no judgement with a winner"):
        arena_pairs(tmp_path)

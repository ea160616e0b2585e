"""The arena's run logic on scripted models: pairings, the journals (nothing answered or judged twice across a
resume, a line cut by a kill), failures journaled and retried, the blind human judge, and the report."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest
from rich.console import Console

from medcouncil.agents.arena_judge import ModelJudge, ReferenceJudge
from medcouncil.agents.cases import ClinicalCase, Finding
from medcouncil.agents.council import SingleModel
from medcouncil.agents.protocol import Answerer, Episode, Event, Question
from medcouncil.scenarios.arena.human import HumanJudge
from medcouncil.scenarios.arena.items import ArenaItem, case_to_item
from medcouncil.scenarios.arena.journal import ANSWERS, ArenaConfig, ArenaJournal, ArenaManifest, parse_contestant
from medcouncil.scenarios.arena.report import write_report
from medcouncil.scenarios.arena.run import answer_all, judge_all, missing_answers
from medcouncil.serving.common.errors import ConfigError
from medcouncil.serving.replay import ReplayModel

ITEMS = [
    ArenaItem(id="1", prompt="Episodic wheeze relieved by salbutamol?", references=("Asthma",), dataset="cases"),
    ArenaItem(id="2", prompt="Crushing chest pain, ST elevation?", references=("Myocardial infarction",)),
]


def setup(tmp_path: Path, contestants: list[str], **config: object) -> tuple[ArenaManifest, ArenaJournal]:
    manifest = ArenaManifest(config=ArenaConfig(source="x", contestants=contestants, **config))  # type: ignore[arg-type]
    journal = ArenaJournal(tmp_path)
    journal.write_items(ITEMS)
    journal.write_manifest(manifest)
    return manifest, journal


class Failing:
    """An answerer whose first ``fail`` answers end in an error episode."""

    def __init__(self, name: str, fail: int) -> None:
        self.name, self.fail, self.calls = name, fail, 0

    async def stream(self, question: Question, history: Sequence[Episode] = ()) -> AsyncIterator[Event]:
        self.calls += 1
        error = "endpoint timed out" if self.calls <= self.fail else None
        yield Episode(question=question, answerer=self.name, answer=f"{self.name} says asthma", error=error)


def test_contestants_and_pairings() -> None:
    assert parse_contestant("council") == ("council", None, False)
    assert parse_contestant("single@medgemma-lora") == ("single", "medgemma-lora", False)
    assert parse_contestant("episode:gated@x") == ("gated", "x", True)
    for bad in ("sc", "single+pride", "single@", "episode:cot", "episode:"):
        with pytest.raises(ConfigError):
            parse_contestant(bad)
    with pytest.raises(ValueError, match="two different"):
        ArenaConfig(source="x", contestants=["single", "single"])
    every = ArenaConfig(source="x", contestants=["single", "cot", "council", "panel"])
    assert len(every.pairings("7")) == 6
    sampled = ArenaConfig(source="x", contestants=["single", "cot", "council", "panel"], pairs=2, seed=3)
    assert len(sampled.pairings("7")) == 2 and sampled.pairings("7") == sampled.pairings("7")
    draws = {tuple(sampled.pairings(str(i))) for i in range(30)}
    assert len(draws) > 3  # seeded per item, not one sample for the whole run


def test_answers_are_journaled_once_and_failures_retried_on_resume(tmp_path: Path) -> None:
    manifest, journal = setup(tmp_path, ["single", "cot@flaky"])
    single = SingleModel(ReplayModel(["Asthma, because of reversible wheeze.", "An MI: ST elevation."]))
    flaky = Failing("flaky", fail=1)
    contestants: dict[str, Answerer] = {"single": single, "cot@flaky": flaky}
    tally = asyncio.run(answer_all(manifest, ITEMS, journal, contestants))
    assert (tally.answered, tally.failed) == (3, 1)
    assert [(e.item_id, e.who, e.error) for e in journal.errors()] == [("1", "cot@flaky", "endpoint timed out")]
    assert missing_answers(manifest, ITEMS, journal) == [("1", "cot@flaky")]
    again = asyncio.run(answer_all(manifest, ITEMS, journal, contestants))
    assert again.answered == 1 and flaky.calls == 3
    answers = journal.answers()
    assert sorted((a.item_id, a.contestant) for a in answers) == [
        ("1", "cot@flaky"), ("1", "single"), ("2", "cot@flaky"), ("2", "single")
    ]  # fmt: skip
    assert next(a.answer for a in answers if (a.item_id, a.contestant) == ("1", "single")).startswith("Asthma")


def test_a_line_cut_by_a_kill_is_answered_again_not_twice(tmp_path: Path) -> None:
    manifest, journal = setup(tmp_path, ["single", "cot"])
    done = Failing("single", fail=0)
    asyncio.run(answer_all(manifest, ITEMS[:1], journal, {"single": done, "cot": Failing("cot", 0)}))
    journal.close()
    path = tmp_path / ANSWERS
    text = path.read_text()
    path.write_text(text[: text.rindex("{") + 10])  # the second answer's line cut mid-write
    journal = ArenaJournal(tmp_path)
    assert [(a.item_id, a.contestant) for a in journal.answers()] == [("1", "single")]
    asyncio.run(answer_all(manifest, ITEMS[:1], journal, {"single": done, "cot": Failing("cot", 0)}))
    assert done.calls == 1
    assert sorted((a.item_id, a.contestant) for a in journal.answers()) == [("1", "cot"), ("1", "single")]


def answered(tmp_path: Path, **config: object) -> tuple[ArenaManifest, ArenaJournal]:
    manifest, journal = setup(tmp_path, ["single", "cot"], **config)
    single = SingleModel(ReplayModel(["Asthma.", "Myocardial infarction."]))
    cot = SingleModel(ReplayModel(["Probably anxiety.", "Pericarditis."]))
    asyncio.run(answer_all(manifest, ITEMS, journal, {"single": single, "cot": cot}))
    return manifest, journal


def test_judging_resumes_without_judging_twice_and_the_report_rates(tmp_path: Path) -> None:
    manifest, journal = answered(tmp_path)
    judge = ModelJudge(ReplayModel(["A", "B", "maybe"]), name="model")  # item 1: single wins; item 2: no choice
    tally = asyncio.run(judge_all(manifest, ITEMS, journal, judge))
    assert (tally.judged, tally.failed) == (1, 1)
    judge = ModelJudge(ReplayModel(["A", "A"]), name="model")  # item 2 again: position-biased -> a tie
    assert asyncio.run(judge_all(manifest, ITEMS, journal, judge)).judged == 1
    assert asyncio.run(judge_all(manifest, ITEMS, journal, judge)).judged == 0
    asyncio.run(judge_all(manifest, ITEMS, journal, ReferenceJudge()))
    journal.close()
    outcomes = [(j.judge, j.item_id, j.outcome, j.consistent) for j in journal.judgements()]
    assert outcomes == [
        ("model", "1", "first", True),
        ("model", "2", "tie", False),
        ("reference", "1", "first", True),
        ("reference", "2", "first", True),
    ]
    md, page, found = write_report(tmp_path)
    model, reference = found
    assert model.consistency == 0.5 and model.two_orders and not reference.two_orders
    assert [r.contestant for r in reference.ratings] == ["single", "cot"]
    assert reference.ratings[0].rating > 1000 > reference.ratings[1].rating
    assert reference.wins["single"]["cot"] == 1.0 and model.wins["single"]["cot"] == 0.75
    text = md.read_text()
    assert "position consistency 50% (1 of 2 pairs" in text and "W-L-T | cases |" in text
    assert "<svg" in page.read_text()


def test_the_human_judge_is_blind_randomised_and_resumable(tmp_path: Path) -> None:
    manifest, journal = answered(tmp_path)
    keys = iter(["x", "a", "q"])  # an invalid key is asked again; Q stops (judges never get contestant names)
    screen = io.StringIO()
    human = HumanJudge(seed=5, ask=lambda _: next(keys), console=Console(file=screen, width=100))
    tally = asyncio.run(judge_all(manifest, ITEMS, journal, human))
    assert tally.judged == 1 and tally.stopped and "Q" in tally.stopped
    shown = screen.getvalue()
    assert "press A, B, T, S or Q" in shown
    first = journal.judgements()[0]
    a_was_first = first.reason.endswith("A was the first")
    assert first.outcome == ("first" if a_was_first else "second") and first.orders == ["A"]
    # resume: item 1 is not asked again; S skips item 2 (journaled, in no rating)
    human = HumanJudge(seed=5, ask=lambda _: "s", console=Console(file=io.StringIO()))
    assert asyncio.run(judge_all(manifest, ITEMS, journal, human)).judged == 0
    assert [j.skipped for j in journal.judgements()] == [False, True]
    assert asyncio.run(judge_all(manifest, ITEMS, journal, human)).judged == 0
    journal.close()
    (result,) = write_report(tmp_path)[2]
    assert result.judged == 1 and result.skipped == 1


def test_sides_are_drawn_per_pair_and_mapped_back() -> None:
    sides = []
    for n in range(40):
        screen = io.StringIO()
        human = HumanJudge(seed=1, ask=lambda _: "a", console=Console(file=screen, width=200))
        verdict = asyncio.run(human.judge("Q", [], "ANSWER-ONE", "ANSWER-TWO", key=f"item{n}:x:y"))
        one_shown_first = screen.getvalue().index("ANSWER-ONE") < screen.getvalue().index("ANSWER-TWO")
        assert verdict.outcome == ("first" if one_shown_first else "second")
        sides.append(one_shown_first)
    assert 10 < sum(sides) < 30


CASE = ClinicalCase(
    id="mg",
    objective="Find the diagnosis.",
    opening="A 35-year-old woman with double vision.",
    diagnosis="Myasthenia gravis",
    patient=(Finding(name="History / Course", result="Worse after exercise, better after rest."),),
)


def test_an_episode_doctor_plays_the_case_and_answers_with_its_encounter(tmp_path: Path) -> None:
    from medcouncil.scenarios.arena.doctors import EpisodeDoctor

    model = ReplayModel(["ASK: When is it worse?", "DIAGNOSIS: Myasthenia gravis"])
    asker = SingleModel(model)
    doctor = EpisodeDoctor("episode:single", asker, asker, model, budget=3)
    items = [case_to_item(CASE, "cases"), ITEMS[1]]
    manifest, journal = setup(tmp_path, ["episode:single", "single"])
    journal.write_items(items)
    single = SingleModel(ReplayModel(["Myasthenia gravis, fatigable weakness."]))
    with pytest.raises(ConfigError, match="not a patient case"):
        asyncio.run(answer_all(manifest, items, journal, {"episode:single": doctor, "single": single}))
    (answer,) = [a for a in journal.answers() if a.contestant == "episode:single"]
    assert answer.answer.startswith("Diagnosis: Myasthenia gravis")
    assert "Doctor (ask): When is it worse?" in answer.answer and "Worse after exercise" in answer.answer
    assert answer.model_calls == 2


def test_sampled_pairings_ask_only_the_answers_they_judge(tmp_path: Path) -> None:
    manifest, journal = setup(tmp_path, ["single", "cot", "council"], pairs=1, seed=2)
    needed = missing_answers(manifest, ITEMS, journal)
    for item in ITEMS:
        (pair,) = manifest.config.pairings(item.id)
        assert sorted(c for i, c in needed if i == item.id) == sorted(pair)


def test_one_dead_contestant_stops_the_run_among_live_ones(tmp_path: Path) -> None:
    from medcouncil.scenarios.arena import run

    items = [ArenaItem(id=str(n), prompt=f"Question {n}?") for n in range(run.GIVE_UP_AFTER + 2)]
    manifest, journal = setup(tmp_path, ["single", "cot@dead"])
    live = Failing("single", fail=0)
    tally = asyncio.run(answer_all(manifest, items, journal, {"single": live, "cot@dead": Failing("dead", fail=99)}))
    assert tally.stopped is not None and tally.stopped.startswith("cot@dead: 8 failures in a row")
    assert live.calls == run.GIVE_UP_AFTER


def test_the_reference_judge_passes_over_items_without_a_reference(tmp_path: Path) -> None:
    from medcouncil.scenarios.arena.run import missing_judgements

    manifest, journal = answered(tmp_path)
    bare = [ITEMS[0], ArenaItem(id="2", prompt="No reference here?")]
    journal.write_items(bare)
    assert [i.id for i, _, _ in missing_judgements(manifest, bare, journal, "reference")] == ["1"]
    assert len(missing_judgements(manifest, bare, journal, "model")) == 2
    asyncio.run(judge_all(manifest, bare, journal, ReferenceJudge()))
    assert missing_judgements(manifest, bare, journal, "reference") == []


def test_end_of_input_stops_the_human_judge(tmp_path: Path) -> None:
    manifest, journal = answered(tmp_path)

    def closed(_: str) -> str:
        raise EOFError

    human = HumanJudge(seed=1, ask=closed, console=Console(file=io.StringIO()))
    tally = asyncio.run(judge_all(manifest, ITEMS, journal, human))
    assert tally.stopped and tally.failed == 0 and journal.judgements() == []

"""The harness's logic with scripted answerers: shuffling, journaling, errors never scored, retries, resume."""

from __future__ import annotations

import asyncio
import inspect
import json
import re
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from medcouncil.agents.council import Council, Gated, SingleModel
from medcouncil.agents.protocol import Episode, Event, Question, Turn, run_episode
from medcouncil.scenarios.bench.harness import Harness, Item, prepare
from medcouncil.scenarios.bench.journal import Journal, RunConfig, read_errors, read_records
from medcouncil.scenarios.bench.modes import SC_K
from medcouncil.scenarios.cli.bench import bench
from medcouncil.scenarios.datasets.samples import Sample
from medcouncil.serving.common.errors import ConfigError, EndpointUnreachableError
from medcouncil.serving.replay import ReplayModel
from medcouncil.tools.chunking import Document
from medcouncil.tools.search import InMemoryKnowledge

SAMPLES = [
    Sample(
        id=f"q{n}",
        question=f"Question {n}?",
        options={"A": "alpha", "B": "beta", "C": "gamma", "D": "delta"},
        answer="ABCD"[n % 4],
        metadata={"subset": "s1" if n < 3 else "s2"},
    )
    for n in range(6)
]


class Scripted:
    """Answers the option whose text is ``favourite`` (wherever it was shuffled to); fails on chosen items."""

    def __init__(self, name: str, favourite: str = "beta", fail: Sequence[str] = (), fail_times: int = 99) -> None:
        self.name = name
        self.favourite = favourite
        self.fail = set(fail)
        self.fail_times = fail_times
        self.calls: list[str] = []

    async def stream(self, question: Question, history: Sequence[Episode] = ()) -> AsyncIterator[Event]:
        assert question.item_id is not None and question.options is not None
        self.calls.append(question.item_id)
        if question.item_id in self.fail and self.calls.count(question.item_id) <= self.fail_times:
            raise EndpointUnreachableError("endpoint unreachable: http://127.0.0.1:9/v1 (ConnectError)")
        letter = next(k for k, v in question.options.items() if v == self.favourite)
        turn = Turn(agent=self.name, content=letter, prompt_tokens=10, completion_tokens=1, model_calls=1)
        yield Episode(
            question=question,
            answerer=self.name,
            letter=letter,
            turns=[turn],
            probabilities={k: float(k == letter) for k in question.options},
        )


def run(journal: Journal, answerers: dict[str, Scripted], items: list[Item], **options: object) -> Harness:
    harness = Harness(journal, list(answerers), lambda: answerers, backoff_s=0, **options)  # type: ignore[arg-type]
    asyncio.run(harness.run(harness.pending(items)))
    journal.close()
    return harness


def test_shuffled_choices_are_seeded_recorded_and_scored_in_dataset_letters(tmp_path: Path) -> None:
    sample = SAMPLES[1]  # gold B = "beta"
    first, again, other = prepare(sample, 3, True), prepare(sample, 3, True), prepare(sample, 4, True)
    assert first.order == again.order and first.question == again.question
    assert sorted(first.order or []) == ["A", "B", "C", "D"]
    assert {(prepare(sample, seed, True).question.options or {})["A"] for seed in range(12)} != {"alpha"}  # shuffled
    assert other.order is not None and prepare(sample).order is None
    journal = Journal(tmp_path)
    run(journal, {"single": Scripted("single")}, [first])
    (record,) = read_records(tmp_path)
    assert record.letter == "B" and record.correct and record.order == first.order
    assert record.probabilities == {"A": 0.0, "B": 1.0, "C": 0.0, "D": 0.0}
    shown = record.episode.letter
    assert shown is not None and first.question.options is not None and first.question.options[shown] == "beta"


def test_errors_are_retried_journaled_and_never_scored(tmp_path: Path) -> None:
    flaky = Scripted("single", fail=["q1"], fail_times=1)  # fails once, then answers
    down = Scripted("council", fail=["q2"])  # never answers q2
    journal = Journal(tmp_path)
    harness = run(journal, {"single": flaky, "council": down}, [prepare(s) for s in SAMPLES[:4]], retries=2)
    records = read_records(tmp_path)
    assert sorted(r.key for r in records if r.mode == "single") == [(f"q{n}", "single") for n in range(4)]
    assert ("q2", "council") not in {r.key for r in records}
    retried = next(r for r in records if r.key == ("q1", "single"))
    assert retried.attempts == 2 and flaky.calls.count("q1") == 2
    assert down.calls.count("q2") == 3  # the first try and two retries
    errors = read_errors(tmp_path)
    expected = [("q1", "single", 1), ("q2", "council", 1), ("q2", "council", 2), ("q2", "council", 3)]
    assert [(e.sample_id, e.mode, e.attempt) for e in errors] == expected
    assert "127.0.0.1:9" in errors[-1].error
    assert harness.tally.errors == {"council": 1} and harness.aborted is None


def test_a_dead_server_stops_the_run_early_and_leaves_the_rest_pending(tmp_path: Path) -> None:
    dead = Scripted("single", fail=[s.id for s in SAMPLES])
    harness = run(Journal(tmp_path), {"single": dead}, [prepare(s) for s in SAMPLES], retries=0, give_up_after=3)
    assert harness.aborted is not None and "3 items failed in a row" in harness.aborted
    assert dead.calls == ["q0", "q1", "q2"] and read_records(tmp_path) == []


def test_resume_runs_only_what_is_missing_and_ignores_a_line_cut_by_a_kill(tmp_path: Path) -> None:
    items = [prepare(s) for s in SAMPLES]
    first = Scripted("single")
    run(Journal(tmp_path), {"single": first}, items[:3])
    journal_file = tmp_path / "samples.jsonl"
    lines = journal_file.read_text().splitlines()
    journal_file.write_text("\n".join(lines[:2]) + "\n" + lines[2][: len(lines[2]) // 2])  # killed mid-write
    second = Scripted("single")
    harness = run(Journal(tmp_path), {"single": second}, items)
    assert harness.tally.resumed == 2 and second.calls == ["q2", "q3", "q4", "q5"]
    assert harness.tally.answered["single"] == 6  # the journaled answers counted once, with the new ones
    keys = [json.loads(line)["sample_id"] for line in journal_file.read_text().splitlines()[:2]]
    assert keys == ["q0", "q1"]
    records = read_records(tmp_path)
    assert sorted(r.sample_id for r in records) == [s.id for s in SAMPLES]  # each once


def test_concurrent_workers_answer_every_item_once(tmp_path: Path) -> None:
    answerers = {"single": Scripted("single"), "council": Scripted("council", favourite="alpha")}
    run(Journal(tmp_path), answerers, [prepare(s) for s in SAMPLES], concurrency=4)
    records = read_records(tmp_path)
    assert len(records) == len({r.key for r in records}) == 12
    assert sum(r.correct for r in records if r.mode == "council") == 2  # gold A: q0, q4


def test_gated_convenes_the_council_only_below_the_threshold() -> None:
    question = Question(text="Which?", options={"A": "x", "B": "y"}, item_id="g1")
    confident = SingleModel(ReplayModel(["B"]))  # replay choices carry probability 1.0
    council = Scripted("council", favourite="x")
    episode = asyncio.run(run_episode(Gated(confident, council, threshold=0.6), question))  # type: ignore[arg-type]
    assert episode.letter == "B" and episode.escalated is False and council.calls == []
    unsure = SingleModel(ReplayModel(["not a letter"]))
    episode = asyncio.run(run_episode(Gated(unsure, council, threshold=0.6), question))  # type: ignore[arg-type]
    assert episode.letter == "A" and episode.escalated is True and council.calls == ["g1"]
    assert [t.agent for t in episode.turns] == ["single", "council"]  # the cost of both stages
    assert episode.answerer == "gated"


def test_the_council_never_retrieves_the_item_in_plays_own_material(tmp_path: Path) -> None:
    own = Document(
        text="Gout: negatively birefringent needle-shaped urate crystals in joint fluid.",
        source="medmcqa-exp",
        item_id="gout-1",
    )
    other = Document(
        text="Gout flares: urate crystals deposit in joints; joint fluid shows crystals.", source="starter/gout.md"
    )
    knowledge = InMemoryKnowledge([own, other], threshold=0.1)
    sample = Sample(
        id="gout-1",
        question="Which crystals are seen in joint fluid in gout?",
        options={"A": "Urate crystals", "B": "Calcium pyrophosphate"},
        answer="A",
    )
    council = Council(ReplayModel(["Urate crystals [1].", "A", "Sound.", "A"]), knowledge)
    run(Journal(tmp_path), {"council": council}, [prepare(sample)])  # type: ignore[dict-item]
    (record,) = read_records(tmp_path)
    sources = [e.source for turn in record.episode.turns for e in turn.evidence]
    assert sources == ["starter/gout.md"] and record.correct


def test_the_sc_default_is_one_constant_for_the_command_and_the_run_log() -> None:
    option = inspect.signature(bench).parameters["sc_k"].default
    assert option == SC_K == RunConfig.model_fields["sc_k"].default


def test_a_resume_must_use_the_model_and_council_it_was_run_with(tmp_path: Path) -> None:
    from medcouncil.scenarios.episodes.harness import EpisodeConfig

    for config in (RunConfig(modes=["single"]), EpisodeConfig(modes=["single"])):
        config.bind("gemma", "http://127.0.0.1:1/v1", {"rounds": 1}, tmp_path)
        assert (config.model, config.endpoint, config.council) == ("gemma", "http://127.0.0.1:1/v1", {"rounds": 1})
        config.bind("gemma", "http://127.0.0.1:2/v1", {"rounds": 1}, tmp_path)  # a new port is the same model
        assert config.endpoint == "http://127.0.0.1:2/v1"
        with pytest.raises(ConfigError, match=f"^{re.escape(str(tmp_path))} was run with model 'gemma', not 'other'"):
            config.bind("other", "http://127.0.0.1:2/v1", {"rounds": 1}, tmp_path)
        with pytest.raises(ConfigError, match="was run with another council configuration: resume it with the same"):
            config.bind("gemma", "http://127.0.0.1:2/v1", {"rounds": 2}, tmp_path)


def test_a_resume_with_other_reply_shapes_is_refused(tmp_path: Path) -> None:
    config = RunConfig(modes=["single"])
    config.bind("gemma-3-270m", "http://127.0.0.1:8000/v1", {}, tmp_path, shapes=True)
    config.bind("gemma-3-270m", "http://127.0.0.1:8001/v1", {}, tmp_path, shapes=True)  # another port: fine
    with pytest.raises(ConfigError, match="was run with reply shapes on: resume it with MEDCOUNCIL_SHAPES=on"):
        config.bind("gemma-3-270m", "http://127.0.0.1:8000/v1", {}, tmp_path, shapes=False)
    older = RunConfig(modes=["single"], model="gemma-3-270m")  # bound before shapes existed: answered without
    with pytest.raises(ConfigError, match="reply shapes off: resume it with MEDCOUNCIL_SHAPES=off"):
        older.bind("gemma-3-270m", "http://127.0.0.1:8000/v1", {}, tmp_path, shapes=True)
    older.bind("gemma-3-270m", "http://127.0.0.1:8000/v1", {}, tmp_path, shapes=False)
    assert older.shapes is False

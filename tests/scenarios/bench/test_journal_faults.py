"""Answers that must count: journal lines with raw U+2028/U+0085, lines cut inside a UTF-8 character, corrupt lines
in the middle, duplicate item ids and requests the engine refuses outright."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from medcouncil.agents.protocol import Episode, Event, Question, Turn
from medcouncil.scenarios.bench.harness import Harness, prepare
from medcouncil.scenarios.bench.journal import SAMPLES, Journal, Record, read_errors, read_records
from medcouncil.scenarios.datasets.ids import unique_ids
from medcouncil.scenarios.datasets.registry import load_dataset
from medcouncil.scenarios.datasets.samples import Sample
from medcouncil.serving.common.errors import RequestRejectedError

OPTIONS = {"A": "alpha", "B": "beta"}


def _sample(item_id: str, text: str = "Which?") -> Sample:
    return Sample(id=item_id, question=text, options=OPTIONS, answer="B")


class Answers:
    """Answers B with a reasoning text of choice; refuses the items in ``refuse`` as an engine would."""

    name = "single"

    def __init__(self, text: str = "ok", refuse: Sequence[str] = ()) -> None:
        self.text, self.refuse, self.calls = text, set(refuse), 0

    async def stream(self, question: Question, history: Sequence[Episode] = ()) -> AsyncIterator[Event]:
        self.calls += 1
        if question.item_id in self.refuse:
            raise RequestRejectedError(
                "http://127.0.0.1:1/v1 refused the request (HTTP 400): Requested tokens "
                "(9000) exceed context window of 2048"
            )
        turn = Turn(agent="single", content=self.text, model_calls=1)
        yield Episode(question=question, answerer="single", letter="B", answer=self.text, turns=[turn])


def _run(directory: Path, samples: list[Sample], answerer: Answers) -> Harness:
    journal = Journal(directory)
    harness = Harness(journal, ["single"], lambda: {"single": answerer}, backoff_s=0)
    asyncio.run(harness.run(harness.pending([prepare(s) for s in samples])))
    journal.close()
    return harness


def test_an_answer_holding_line_separators_is_read_back_whole(tmp_path: Path) -> None:
    text = "first part\u2028second\u0085third\u2029end\x1c\x1d\x1e\r"
    _run(tmp_path, [_sample("q1")], Answers(text))
    raw = (tmp_path / SAMPLES).read_bytes()
    assert "\u2028".encode() in raw  # written raw by JSON: splitlines() would cut the line here
    records = read_records(tmp_path)
    assert [r.sample_id for r in records] == ["q1"] and records[0].episode.answer == text
    again = Answers()
    _run(tmp_path, [_sample("q1")], again)
    assert again.calls == 0  # the resume finds it: nothing is answered twice


def test_a_last_line_cut_at_every_byte_is_ignored_then_dropped_on_resume(tmp_path: Path) -> None:
    _run(tmp_path, [_sample("q1"), _sample("q2")], Answers("진단: 천식 — 확실함"))
    whole = (tmp_path / SAMPLES).read_bytes()
    first, second = whole.split(b"\n")[:2]
    for cut in range(1, len(second)):
        (tmp_path / SAMPLES).write_bytes(first + b"\n" + second[:cut])  # a kill -9 mid-write, inside any character
        assert [r.sample_id for r in read_records(tmp_path)] == ["q1"]
    answerer = Answers()
    _run(tmp_path, [_sample("q1"), _sample("q2")], answerer)
    assert answerer.calls == 1
    lines = (tmp_path / SAMPLES).read_bytes().split(b"\n")
    assert len(lines) == 3 and lines[-1] == b""  # the cut line was removed, not left in the middle
    assert sorted(r.sample_id for r in read_records(tmp_path)) == ["q1", "q2"]


def test_a_corrupt_middle_line_is_reported(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    _run(tmp_path, [_sample("q1"), _sample("q2"), _sample("q3")], Answers())
    path = tmp_path / SAMPLES
    lines = path.read_bytes().split(b"\n")
    lines[1] = b'{"sample_id": "q2", \xff\xfe broken'
    path.write_bytes(b"\n".join(lines))
    with caplog.at_level(logging.WARNING):
        assert sorted(r.sample_id for r in read_records(tmp_path)) == ["q1", "q3"]
    assert f"{path}:2: unreadable journal line" in caplog.text
    caplog.clear()
    whole = path.read_bytes().split(b"\n")  # a bad last line that ends in a newline was written whole: no kill cut it
    path.write_bytes(b"\n".join([*whole[:2], b'{"sample_id": "q3", "mode": 7}', b""]))
    with caplog.at_level(logging.WARNING):
        assert sorted(r.sample_id for r in read_records(tmp_path)) == ["q1"]
    assert f"{path}:3: unreadable journal line skipped" in caplog.text
    caplog.clear()
    path.write_bytes(b"\n".join([*whole[:2], b'{"sample_id": "q3", "mo']))  # cut short by a kill: quiet
    with caplog.at_level(logging.WARNING):
        read_records(tmp_path)
    assert f"{path}:3:" not in caplog.text


def test_duplicate_ids_are_renamed_so_every_item_is_answered_once(tmp_path: Path) -> None:
    samples, renamed = unique_ids([_sample("x"), _sample("y"), _sample("x", "Other?"), _sample("x#2")])
    assert [s.id for s in samples] == ["x", "y", "x#3", "x#2"] and renamed == ["x#3"]
    answerer = Answers()
    harness = _run(tmp_path, samples, answerer)
    assert answerer.calls == 4 and harness.tally.answered["single"] == 4
    data = tmp_path / "dup.jsonl"
    data.write_text('{"id": "7", "question": "a?", "options": {"A": "x", "B": "y"}, "answer": "A"}\n' * 2)
    loaded, info = load_dataset(str(data))
    assert [s.id for s in loaded] == ["7", "7#2"] and info.renamed_ids == ["7#2"]


def test_a_request_the_engine_refuses_is_a_failed_item_not_pending(tmp_path: Path) -> None:
    answerer = Answers(refuse=["long"])
    harness = _run(tmp_path, [_sample("long"), _sample("short")], answerer)
    assert answerer.calls == 2  # no retries of a request that will be refused again
    records = {r.sample_id: r for r in read_records(tmp_path)}
    failed = records["long"]
    assert failed.letter is None and not failed.correct and "exceed context window" in (failed.failure or "")
    assert not read_errors(tmp_path) and harness.aborted is None
    again = Answers()
    _run(tmp_path, [_sample("long"), _sample("short")], again)
    assert again.calls == 0  # recorded once: a resume has nothing left to do


def test_journal_lines_validate_as_records(tmp_path: Path) -> None:
    _run(tmp_path, [_sample("q1")], Answers())
    line = (tmp_path / SAMPLES).read_text(encoding="utf-8").splitlines()[0]
    assert Record.model_validate_json(line).sample_id == "q1"

"""Preference pairs from distillation: every reply journaled, ``--pairs`` asking on until a reply misses, the pairs
built from a journal (a wrong letter before an unreadable reply), read by ``finetune --method dpo --data``, and
decontaminated by their question, not by the wrapped task."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from medcouncil.scenarios.training.decontamination import EvalItem
from medcouncil.scenarios.training.distill import (
    DistillSettings,
    distil,
    distil_one,
    distill_pairs,
    pair_of,
    read_rows,
    tally,
    teacher_messages,
)
from medcouncil.scenarios.training.preferences import decontaminate_pairs, load_preferences
from medcouncil.serving.common.errors import ConfigError, RequestRejectedError
from medcouncil.serving.training.config import FinetuneConfig
from tests.scenarios.training.test_distill import sample, scripted

PAIRS = DistillSettings(teacher_model="teacher", tries=4, temperature=0.7, pairs=True)
ONCE = DistillSettings(teacher_model="teacher", tries=4, temperature=0.7)


def test_pairs_mode_asks_on_after_the_gold_reply_until_one_misses() -> None:
    replies = {
        "Case 1": ["Reversible.\nFinal answer: A", "Smoker.\nFinal answer: B", "never asked"],
        "Case 2": ["Reversible.\nFinal answer: A", "Also.\nFinal answer: A", "Fever.\nFinal answer: C", "never"],
        "Case 3": ["Fever.\nFinal answer: C", "Reversible.\nFinal answer: A", "never asked"],
        "Case 4": ["Reversible.\nFinal answer: A"] * 4,
    }
    teacher = scripted(replies)
    first = asyncio.run(distil_one(sample(1), teacher, PAIRS, "http://t/v1"))
    assert first.kept and first.answers == ["A", "B"] and first.rationale == "Reversible." and first.letter == "A"
    assert first.replies == ["Reversible.\nFinal answer: A", "Smoker.\nFinal answer: B"]
    assert first.reason == "matched the gold letter at try 1" and first.question == sample(1).question
    assert pair_of(first) == ("Reversible.\nFinal answer: A", "Smoker.\nFinal answer: B")
    second = asyncio.run(distil_one(sample(2), teacher, PAIRS, "http://t/v1"))
    assert second.answers == ["A", "A", "C"] and pair_of(second) == (second.replies[0], second.replies[2])
    third = asyncio.run(distil_one(sample(3), teacher, PAIRS, "http://t/v1"))  # a miss first: the gold one ends it
    assert third.answers == ["C", "A"] and third.rationale == "Reversible." and replies["Case 3"] == ["never asked"]
    fourth = asyncio.run(distil_one(sample(4), teacher, PAIRS, "http://t/v1"))  # never misses: no pair, all tries
    assert fourth.kept and fourth.answers == ["A"] * 4 and pair_of(fourth) is None
    # Without --pairs the first gold reply ends the item, as before; its replies are journaled all the same.
    once = asyncio.run(distil_one(sample(5), scripted({"Case 5": ["Ok.\nFinal answer: A", "x"]}), ONCE, "u"))
    assert once.answers == ["A"] and once.replies == ["Ok.\nFinal answer: A"] and pair_of(once) is None


def test_the_rejected_reply_is_a_wrong_letter_before_an_unreadable_one() -> None:
    said = ["no final line", "Smoker.\nFinal answer: B", "Reversible.\nFinal answer: A"]
    row = asyncio.run(distil_one(sample(1), scripted({"Case 1": list(said)}), PAIRS, "http://t/v1"))
    assert row.answers == [None, "B", "A"] and pair_of(row) == (said[2], said[1])
    unreadable = asyncio.run(
        distil_one(sample(2), scripted({"Case 2": ["rambling", "Why.\nFinal answer: A"]}), PAIRS, "u")
    )
    assert pair_of(unreadable) == ("Why.\nFinal answer: A", "rambling")  # no wrong letter: the unreadable one
    unkept = asyncio.run(distil_one(sample(3), scripted({"Case 3": ["Final answer: B"] * 4}), PAIRS, "u"))
    assert not unkept.kept and pair_of(unkept) is None
    old = row.model_copy(update={"replies": []})  # a schema-1 row: letters only, no text to train on
    assert pair_of(old) is None
    # A bare gold answer line before the kept reply is not the chosen one: the kept reply is.
    said = ["Final answer: A", "Smoker.\nFinal answer: B", "Reversible.\nFinal answer: A"]
    bare = asyncio.run(distil_one(sample(4), scripted({"Case 4": list(said)}), PAIRS, "u"))
    assert bare.kept_try == 3 and pair_of(bare) == (said[2], said[1])


def test_a_refusal_after_the_kept_reply_keeps_it() -> None:
    calls = iter(["Reversible.\nFinal answer: A"])

    async def then_refuses(messages: list[dict[str, str]], temperature: float, max_tokens: int) -> tuple[str, int, int]:
        reply = next(calls, None)
        if reply is None:
            raise RequestRejectedError("http://t/v1 refused the request (HTTP 400): too long")
        return reply, 1, 1

    row = asyncio.run(distil_one(sample(1), then_refuses, PAIRS, "http://t/v1"))
    assert row.kept and row.reason == "matched the gold letter at try 1" and tally([row])["refused"] == 0


def journal(tmp_path: Path) -> Path:
    out = tmp_path / "rationales.jsonl"
    replies = {
        "Case 1": ["Reversible.\nFinal answer: A", "Smoker.\nFinal answer: B"],
        "Case 2": ["Fever.\nFinal answer: C", "Reversible.\nFinal answer: A"],
        "Case 3": ["Reversible.\nFinal answer: A"] * 4,
    }
    asyncio.run(distil([sample(n) for n in (1, 2, 3)], scripted(replies), PAIRS, "http://t/v1", out, concurrency=1))
    return out


def test_a_journal_gives_pairs_that_finetune_reads(tmp_path: Path) -> None:
    out = journal(tmp_path)
    assert tally(read_rows(out))["pairs"] == 2
    pairs = distill_pairs(out)
    assert [p.source for p in pairs] == [f"{out}:q1", f"{out}:q2"]
    assert [m.model_dump() for m in pairs[0].prompt] == teacher_messages(sample(1))  # the diagnostician's prompt
    assert pairs[1].chosen.endswith("Final answer: A") and pairs[1].rejected.startswith("Fever.")
    assert pairs[0].question == sample(1).question
    loaded, source = load_preferences(FinetuneConfig(data=str(out), objective="dpo"))
    assert loaded == pairs and source == str(out.resolve())
    assert not out.with_suffix(".run.json").exists()  # recognised by its rows alone (the CLI writes the manifest)
    assert load_preferences(FinetuneConfig(data=str(out), objective="dpo", limit=1))[0] == pairs[:1]


def test_a_journal_without_pairs_is_refused_with_the_hint(tmp_path: Path) -> None:
    out = tmp_path / "once.jsonl"
    replies = {"Case 1": ["Reversible.\nFinal answer: A"]}
    asyncio.run(distil([sample(1)], scripted(replies), ONCE, "http://t/v1", out))
    with pytest.raises(ConfigError, match=r"once\.jsonl: no item has both .*--pairs"):
        load_preferences(FinetuneConfig(data=str(out), objective="dpo"))
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    empty.with_suffix(".run.json").write_text("{}")
    with pytest.raises(ConfigError, match=r"empty\.jsonl: no distilled rows"):
        load_preferences(FinetuneConfig(data=str(empty), objective="dpo"))
    other = tmp_path / "other.jsonl"
    other.write_text(json.dumps({"question": "Q", "answer": "A"}) + "\n")
    with pytest.raises(ConfigError, match=r"not preference pairs .*a distill output"):
        load_preferences(FinetuneConfig(data=str(other), objective="dpo"))


def test_pairs_are_decontaminated_by_their_question_not_the_wrapped_task(tmp_path: Path) -> None:
    pairs = distill_pairs(journal(tmp_path))
    evals = [EvalItem(source="medqa", id="e1", question=sample(2).question)]
    clean, dropped = decontaminate_pairs(pairs, evals, None)
    assert dropped == 1 and [p.source.rsplit(":", 1)[1] for p in clean] == ["q1"]
    # The task wraps the question in the role's text, so an exact match on the prompt alone would miss it.
    unwrapped = [p.model_copy(update={"question": ""}) for p in pairs]
    assert decontaminate_pairs(unwrapped, evals, None)[1] == 0

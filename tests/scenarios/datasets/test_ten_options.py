"""Up to ten options (A-J), MMLU-Pro style, through adapters, shuffling, the constraint, scoring and the report."""

from __future__ import annotations

import json
from pathlib import Path

from medcouncil.scenarios.bench.harness import prepare
from medcouncil.scenarios.bench.journal import Journal, read_records
from medcouncil.scenarios.bench.metrics import accuracy
from medcouncil.scenarios.datasets.generic import FieldMap
from medcouncil.scenarios.datasets.registry import load_dataset
from medcouncil.serving.dialects import choice_args
from tests.scenarios.bench.test_bench import Scripted, run

TEN = [f"choice {i}" for i in range(10)]


def write_items(path: Path) -> Path:
    rows = [
        {"question": "Ten options?", "options": TEN, "answer": "J"},
        {"question": "Eleven?", "options": [*TEN, "choice 10"], "answer": "A"},
        {"question": "Answer off the list?", "options": TEN[:4], "answer": "H"},
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_ten_options_load_and_more_are_named(tmp_path: Path) -> None:
    path = write_items(tmp_path / "pro.jsonl")
    samples, info = load_dataset(str(path), fields=FieldMap.parse("question=question;options=options;answer=answer"))
    [sample] = samples
    assert list(sample.options) == list("ABCDEFGHIJ") and sample.answer == "J" and sample.options["J"] == "choice 9"
    assert info.skipped_rows == [
        f"{path}:2: options: 11 given, at most 10 (A-J) are supported",
        f"{path}:3: answer: 'H' is not one of the options A-D",
    ]


def test_a_ten_option_item_is_shuffled_answered_and_scored_in_its_own_letters(tmp_path: Path) -> None:
    path = write_items(tmp_path / "pro.jsonl")
    [sample], _ = load_dataset(str(path), fields=FieldMap.parse("question=question;options=options;answer=answer"))
    item = prepare(sample, 7, True)
    assert sorted(item.order or []) == list("ABCDEFGHIJ") and item.order != list("ABCDEFGHIJ")
    journal = Journal(tmp_path / "run")
    run(journal, {"single": Scripted("single", favourite="choice 9")}, [item])
    [record] = read_records(tmp_path / "run")
    assert record.letter == "J" and record.correct and set(record.probabilities or {}) == set("ABCDEFGHIJ")
    assert accuracy(["J", "A"], ["J", "B"]).macro_f1 == 0.5


def test_the_constraint_covers_every_letter() -> None:
    letters = list("ABCDEFGHIJ")
    grammar = choice_args("llamacpp", letters)["extra_body"]["grammar"]
    assert grammar == "root ::= " + " | ".join(f'"{letter}"' for letter in letters)
    assert choice_args("vllm", letters)["extra_body"]["structured_outputs"] == {"choice": letters}
    schema = choice_args("openai", letters)["response_format"]["json_schema"]["schema"]
    assert schema["properties"]["answer"]["enum"] == letters

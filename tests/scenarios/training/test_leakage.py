"""The bench's check of a fine-tuned model's training data against a run's items (``scenarios/training/leakage.py``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from medcouncil.scenarios.bench.journal import Manifest, RunConfig
from medcouncil.scenarios.bench.report import markdown
from medcouncil.scenarios.bench.summary import summarize
from medcouncil.scenarios.datasets.registry import DatasetInfo
from medcouncil.scenarios.datasets.samples import Sample
from medcouncil.scenarios.training.leakage import check
from medcouncil.scenarios.training.sft import critic, diagnostician
from medcouncil.serving.training.config import FinetuneConfig

OPTIONS = {"A": "Asthma", "B": "COPD"}


def item(n: int, question: str | None = None) -> Sample:
    return Sample(
        id=f"b{n}",
        question=question or f"Patient {n} wheezes after exercise, aged {20 + n}.",
        options=OPTIONS,
        answer="A",
    )


def card_for(tmp_path: Path, data: Path, objective: Literal["sft", "dpo", "grpo"] = "sft") -> Path:
    folder = tmp_path / f"adapter-{objective}"
    folder.mkdir(parents=True)
    config = FinetuneConfig(data=str(data), out=folder, objective=objective).model_dump(mode="json")
    (folder / "run.json").write_text(json.dumps({"config": config, "method": "lora"}))
    return folder


def chat_file(tmp_path: Path, samples: list[Sample], extra: list[str] = ()) -> Path:  # type: ignore[assignment]
    import random

    path = tmp_path / f"train{len(list(tmp_path.glob('train*.jsonl')))}.jsonl"
    examples = [diagnostician(s) for s in samples[:1]] + [e for s in samples[1:] for e in critic(s, random.Random(0))]
    rows = [{"messages": [m.model_dump() for m in e.messages]} for e in examples]
    rows += [{"messages": [{"role": "user", "content": text}, {"role": "assistant", "content": "A"}]} for text in extra]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_items_quoted_in_any_role_prompt_or_contained_in_a_plain_turn_are_found(tmp_path: Path) -> None:
    bench = [item(n) for n in range(6)]
    # Training saw items 0 (diagnostician) and 1-2 (critic), item 3 reworded in a different case, item 4 inside an
    # unquoted user turn; item 5 never.
    trained = [bench[0], bench[1], bench[2], item(3, "Patient 3 WHEEZES after exercise -- aged 23")]
    data = chat_file(tmp_path, trained, extra=[f"Please answer: {bench[4].question} Options: A or B"])
    result = check(card_for(tmp_path, data), bench)
    assert result.overlapping == 5 and result.ids == ["b0", "b1", "b2", "b3", "b4"] and result.checked == 6
    assert result.data == str(data.resolve()) and not result.note
    assert "trained on 5 of these 6 items" in result.warning()


def test_a_dataset_named_by_the_card_is_read_as_finetune_reads_it(tmp_path: Path) -> None:
    rows = [{"id": "t1", "question": "Wheeze after exercise?", "options": OPTIONS, "answer": "A"}]
    data = tmp_path / "mcqa.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = check(card_for(tmp_path, data), [item(1, "Wheeze after exercise?"), item(2)])
    assert result.overlapping == 1 and result.ids == ["b1"]


def test_dpo_and_grpo_runs_are_checked_on_their_prompts_and_items(tmp_path: Path) -> None:
    pairs = tmp_path / "pairs.jsonl"
    pair = {"prompt": f"Case: {item(1).question}", "chosen": "Asthma.", "rejected": "COPD."}
    pairs.write_text(json.dumps(pair) + "\n")
    dpo = check(card_for(tmp_path, pairs, "dpo"), [item(1), item(2)])
    assert (dpo.overlapping, dpo.ids, dpo.note) == (1, ["b1"], "")
    rows = [{"id": "t2", "question": item(2).question, "options": OPTIONS, "answer": "A"}]
    data = tmp_path / "mcqa.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    grpo = check(card_for(tmp_path, data, "grpo"), [item(1), item(2)])
    assert (grpo.overlapping, grpo.ids, grpo.note) == (1, ["b2"], "")


def test_a_card_that_cannot_be_read_is_a_note_not_a_crash(tmp_path: Path) -> None:
    assert "cannot read" in check(tmp_path / "missing", [item(1)]).note
    (tmp_path / "bad.json").write_text('{"method": "lora"}')
    assert "not a medcouncil finetune run card" in check(tmp_path / "bad.json", [item(1)]).note
    gone = card_for(tmp_path, tmp_path / "deleted.jsonl")
    result = check(gone, [item(1)])
    assert result.note and "not checked" in result.warning()


def test_the_report_carries_the_warning(tmp_path: Path) -> None:
    bench = [item(n) for n in range(2)]
    training = check(card_for(tmp_path, chat_file(tmp_path, bench[:1])), bench)
    info = DatasetInfo(dataset="x", source="x.jsonl", fingerprint="f", rows=2, skipped=0)
    manifest = Manifest(dataset=info, config=RunConfig(modes=["single"]), sample_ids=["b0", "b1"], training=training)
    text = markdown(manifest, summarize(manifest, [], []), {})
    assert "WARNING: the model was trained on 1 of these 2 items" in text
    clean = manifest.model_copy(
        update={"training": check(card_for(tmp_path / "c", chat_file(tmp_path, [item(9)])), bench)}
    )
    assert "checked: none of these items is in" in markdown(clean, summarize(clean, [], []), {})

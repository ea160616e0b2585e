"""Arena items from every source a user brings: patient cases, BioASQ, chat transcripts, arena JSONL and MCQA
datasets asked without their options; bad rows named by FILE:LINE."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medcouncil.agents.protocol import Episode, Question
from medcouncil.scenarios.arena.items import load_items
from medcouncil.scenarios.chat.transcript import write_transcript
from medcouncil.serving.common.errors import ConfigError
from tests.conftest import SHARED

needs_data = pytest.mark.skipif(not (SHARED / "data").is_dir(), reason="../shared/data is not beside the project")


def lines(path: Path, *records: object) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" if not isinstance(r, str) else r + "\n" for r in records))
    return path


@needs_data
def test_agentclinic_cases_ask_for_the_diagnosis_with_its_reasoning() -> None:
    items, skipped = load_items("agentclinic", limit=3)
    assert len(items) == 3 and not skipped
    first = items[0]
    assert first.references[0] == "Myasthenia gravis" and first.dataset == "agentclinic"
    assert "double vision" in first.prompt.lower()
    assert first.prompt.rstrip().endswith("Give the diagnosis and the reasoning that supports it.")


@needs_data
def test_mcqa_items_are_asked_without_their_options() -> None:
    medqa = SHARED / "data" / "mcqa" / "medqa.test.jsonl"
    items, _ = load_items(str(medqa), limit=2)
    record = json.loads(medqa.read_text().splitlines()[0])
    assert items[0].prompt == record["question"]
    assert items[0].references == (record["options"][record["answer_idx"]],)
    assert not any(option in items[0].prompt for option in record["options"].values() if len(option) > 12)


def test_bioasq_json_and_jsonl(tmp_path: Path) -> None:
    questions = [
        {"id": "q1", "body": "What causes cystic fibrosis?", "ideal_answer": ["Mutations in CFTR."],
         "exact_answer": [["CFTR"]], "type": "factoid"},
        {"id": "q2", "body": "Is aspirin an NSAID?", "ideal_answer": "Yes.", "type": "yesno"},
    ]  # fmt: skip
    (tmp_path / "bioasq.json").write_text(json.dumps({"questions": questions}))
    items, _ = load_items(str(tmp_path / "bioasq.json"))
    assert [i.id for i in items] == ["q1", "q2"]
    assert items[0].references == ("Mutations in CFTR.", "CFTR") and items[1].references == ("Yes.",)
    assert items[0].dataset == "bioasq"
    jsonl, _ = load_items(str(lines(tmp_path / "b.jsonl", *questions)))
    assert [i.prompt for i in jsonl] == [i.prompt for i in items]


def test_saved_chat_transcripts_become_reference_free_items(tmp_path: Path) -> None:
    episodes = [
        Episode(question=Question(text="Chest pain with ST elevation: what now?"), answerer="council", answer="PCI"),
        Episode(question=Question(text="And after that?"), answerer="council", answer="DAPT"),
    ]
    jsonl, _ = write_transcript(episodes, tmp_path / "chat")
    items, _ = load_items(str(jsonl))
    assert [(i.id, i.prompt, i.references) for i in items] == [
        ("turn-1", "Chest pain with ST elevation: what now?", ()),
        ("turn-2", "And after that?", ()),
    ]


def test_arena_jsonl_with_bad_rows_named_by_line(tmp_path: Path) -> None:
    path = lines(
        tmp_path / "open.jsonl",
        {"id": "a", "prompt": "Define sepsis.", "reference": "Life-threatening organ dysfunction from infection."},
        "{not json",
        {"id": "b", "prompt": "   "},
        {"id": "c", "question": "Treat anaphylaxis?", "reference": "IM adrenaline", "dataset": "er"},
    )
    items, skipped = load_items(str(path))
    assert [(i.id, i.dataset) for i in items] == [("a", "open"), ("c", "er")]
    assert len(skipped) == 2 and skipped[0].startswith(f"{path}:2:") and skipped[1].startswith(f"{path}:3:")
    assert "empty question" in skipped[1]


def test_a_null_or_blank_id_is_no_id(tmp_path: Path) -> None:
    path = lines(
        tmp_path / "ids.jsonl", {"id": None, "prompt": "Define sepsis."}, {"id": " ", "prompt": "Define shock."}
    )
    items, _ = load_items(str(path))
    assert [i.id for i in items] != ["None", " "] and len({i.id for i in items}) == 2  # their positions, not "None"
    bioasq = lines(tmp_path / "b.jsonl", {"id": None, "body": "What is BRCA1?", "ideal_answer": "A gene."})
    assert load_items(str(bioasq))[0][0].id != "None"


def test_errors_name_the_source(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no valid arena item.*empty question"):
        load_items(str(lines(tmp_path / "empty.jsonl", {"prompt": ""})))
    with pytest.raises(ConfigError, match="not an arena source"):
        load_items(str(tmp_path / "missing.jsonl"))


def test_a_malformed_first_row_does_not_hide_the_format(tmp_path: Path) -> None:
    path = lines(tmp_path / "q.jsonl", "{broken", {"id": "q", "body": "Is it?", "ideal_answer": "Yes."})
    items, skipped = load_items(str(path))
    assert [(i.id, i.references) for i in items] == [("q", ("Yes.",))] and skipped[0].startswith(f"{path}:1:")


def test_a_repeated_item_id_is_renamed_not_fatal(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = lines(
        tmp_path / "open.jsonl",
        {"id": "q1", "question": "What causes gout?", "reference": "Urate crystals."},
        {"id": "q1", "question": "What causes croup?", "reference": "Parainfluenza virus."},
    )
    items, _ = load_items(str(path))
    assert [(i.id, i.prompt) for i in items] == [("q1", "What causes gout?"), ("q1#2", "What causes croup?")]
    assert "1 item repeats an earlier one's id: renamed q1#2" in capsys.readouterr().err

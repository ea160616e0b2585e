"""Recognising a JSONL file's format by its first object."""

from __future__ import annotations

from pathlib import Path

from medcouncil.scenarios.training.preferences import is_distillation
from medcouncil.serving.common.jsonl import first_object
from medcouncil.serving.training.data import is_chat_jsonl
from medcouncil.serving.training.preference import is_preference_jsonl


def test_the_first_object_decides_the_format_past_a_bad_first_line(tmp_path: Path) -> None:
    chat = tmp_path / "chat.jsonl"
    chat.write_bytes(b'\xef\xbb\xbf{oops\n\n[1, 2]\n{"messages": []}\n{"chosen": 1}\n')
    assert first_object(chat) == {"messages": []}
    assert is_chat_jsonl(chat) and not is_preference_jsonl(chat) and not is_distillation(chat)
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text('"a string"\n{"prompt": "q", "chosen": "a", "rejected": "b"}\n', encoding="utf-8")
    assert is_preference_jsonl(pairs) and not is_chat_jsonl(pairs)
    rows = tmp_path / "distill.jsonl"
    rows.write_text('{"kept": true, "gold": "A", "answers": []}\n', encoding="utf-8")
    assert is_distillation(rows) and not is_preference_jsonl(rows)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n{broken\n", encoding="utf-8")
    assert first_object(empty) is None and first_object(tmp_path / "missing.jsonl") is None
    assert not is_chat_jsonl(empty) and not is_preference_jsonl(tmp_path / "missing.jsonl")


def test_chat_files_are_recognised_whatever_the_case_of_their_json_lines_suffix(tmp_path: Path) -> None:
    for name in ("chat.JSONL", "chat.ndjson"):
        path = tmp_path / name
        path.write_text('{"messages": [{"role": "user", "content": "q"}]}\n', encoding="utf-8")
        assert is_chat_jsonl(path), name
    other = tmp_path / "chat.txt"
    other.write_text('{"messages": []}\n', encoding="utf-8")
    assert not is_chat_jsonl(other)

"""Preference pairs for DPO: the pairs file (bad lines named) and the decontamination of their prompts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medcouncil.scenarios.training.decontamination import EvalItem
from medcouncil.scenarios.training.preferences import decontaminate_pairs, load_preferences
from medcouncil.serving.common.errors import ConfigError
from medcouncil.serving.training.config import FinetuneConfig
from medcouncil.serving.training.preference import read_preferences


def write(path: Path, *records: object) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


def test_pairs_file_text_or_messages_and_bad_lines(tmp_path: Path) -> None:
    good = write(
        tmp_path / "p.jsonl",
        {"prompt": "Which organ pumps blood?", "chosen": "The heart.", "rejected": "The liver."},
        {"prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Scurvy?"}],
         "chosen": "Vitamin C.", "rejected": "Vitamin D."},
    )  # fmt: skip
    pairs = read_preferences(good)
    assert [p.prompt[-1].content for p in pairs] == ["Which organ pumps blood?", "Scurvy?"]
    chosen, rejected = pairs[1].examples()
    assert chosen.messages[-1].content == "Vitamin C." and rejected.messages[-1].content == "Vitamin D."
    assert chosen.messages[0].role == "system"
    same = write(tmp_path / "s.jsonl", {"prompt": "Q", "chosen": "x", "rejected": "x"})
    with pytest.raises(ConfigError, match=r"s\.jsonl:1: .*the same answer"):
        read_preferences(same)
    missing = write(
        tmp_path / "m.jsonl", {"prompt": "Q", "chosen": "x", "rejected": "y"}, {"prompt": "Q", "chosen": "x"}
    )
    with pytest.raises(ConfigError, match=r"m\.jsonl:2: missing field 'rejected'"):
        read_preferences(missing)
    with pytest.raises(ConfigError, match="not preference pairs"):
        load_preferences(FinetuneConfig(data=str(write(tmp_path / "chat.jsonl", {"messages": []}))))


def test_prompts_found_in_an_evaluation_set_are_dropped() -> None:
    from medcouncil.serving.training.data import Message
    from medcouncil.serving.training.preference import PreferenceExample

    def pair(question: str) -> PreferenceExample:
        return PreferenceExample(prompt=(Message(role="user", content=question),), chosen="a", rejected="b")

    evals = [EvalItem(source="medqa", id="7", question="A 23-year-old woman has  episodic WHEEZE.")]
    clean, dropped = decontaminate_pairs(
        [pair("a 23-year-old woman has episodic wheeze."), pair("Other?")], evals, None
    )
    assert dropped == 1 and [p.prompt[-1].content for p in clean] == ["Other?"]

"""GRPO's verifiable MCQA reward: the gold letter in the last final answer line, and the role's shape."""

from __future__ import annotations

from pathlib import Path

import pytest

from medcouncil.agents import prompts
from medcouncil.scenarios.datasets.samples import Sample
from medcouncil.scenarios.training.rewards import (
    FORMAT_REWARD,
    load_reward_examples,
    mcqa_reward,
    sample_to_reward_example,
)
from medcouncil.serving.common.errors import ConfigError
from medcouncil.serving.training.config import FinetuneConfig
from tests.conftest import SHARED

SAMPLE = Sample(
    id="7", question="Which organ pumps blood?", options={"A": "Liver", "B": "Heart", "C": "Lung"}, answer="B"
)
EXAMPLE = sample_to_reward_example(SAMPLE)


@pytest.mark.parametrize(
    ("text", "reward"),
    [
        ("1. Heart failure…\n\nFinal answer: B. Heart", 1 + FORMAT_REWARD),
        ("Final answer: A\nOn reflection, Final answer: **B**", 1 + FORMAT_REWARD),  # the last line counts
        ("Final answer: Heart", 1 + FORMAT_REWARD),  # an option's text
        ("Final answer: C. Lung", FORMAT_REWARD),
        ("Final answer:", FORMAT_REWARD),
        ("B. Heart", 0.0),  # the right letter without the role's answer line
        ("", 0.0),
    ],
)
def test_reward(text: str, reward: float) -> None:
    assert mcqa_reward(text, EXAMPLE) == pytest.approx(reward)


def test_the_prompt_is_the_diagnosticians_at_run_time() -> None:
    system, user = EXAMPLE.prompt
    assert system.content == prompts.DIAGNOSTICIAN_SYSTEM and "Which organ pumps blood?" in user.content
    assert "B. ⟪Heart⟫" in user.content and (EXAMPLE.answer, EXAMPLE.source) == ("B", "7")


@pytest.mark.skipif(not (SHARED / "data").is_dir(), reason="../shared/data is not beside the project")
def test_reward_examples_from_a_dataset_and_bad_rows(tmp_path: Path) -> None:
    medmcqa = SHARED / "data" / "raw" / "medmcqa_dev.jsonl"
    examples, source = load_reward_examples(FinetuneConfig(data=str(medmcqa), limit=3), decontaminate=False)
    assert len(examples) == 3 and source == str(medmcqa) and examples[0].answer in examples[0].options
    bad = tmp_path / "bad.jsonl"
    bad.write_text(medmcqa.read_text().splitlines()[0] + "\n{not json\n")
    with pytest.raises(ConfigError, match=r"bad\.jsonl:2"):
        load_reward_examples(FinetuneConfig(data=str(bad)), decontaminate=False)

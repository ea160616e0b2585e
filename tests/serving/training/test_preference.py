"""DPO's data logic without a model: pairs held out by prompt, so no question is on both sides."""

from __future__ import annotations

from medcouncil.serving.training.config import FinetuneConfig
from medcouncil.serving.training.data import Message
from medcouncil.serving.training.preference import PreferenceExample, PreferenceTrainer


def test_pairs_are_held_out_by_prompt() -> None:
    pairs = [
        PreferenceExample(prompt=(Message(role="user", content=f"Question {n % 4}?"),), chosen=f"good {n}",
                          rejected=f"bad {n}")
        for n in range(12)
    ]  # fmt: skip
    trainer = PreferenceTrainer(FinetuneConfig(objective="dpo", eval_fraction=0.25, seed=3), pairs, None, "x")  # type: ignore[arg-type]
    train, held = trainer._split()
    assert sorted(train + held) == list(range(12)) and held
    assert not {pairs[i].prompt for i in train} & {pairs[i].prompt for i in held}
    assert len({pairs[i].prompt for i in held}) == 1 and len(held) == 3  # one question of four, all its pairs

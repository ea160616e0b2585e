"""GRPO on the real embedded Gemma 3 270M: groups sampled and rewarded, the adapter moved only by reward
differences within a group, Ctrl-C in the middle of a step resumed to the same samples and weights, and the adapter
served by llama.cpp."""

from __future__ import annotations

from pathlib import Path

import pytest
from safetensors.torch import load_file

from medcouncil.serving.config import EngineConfig
from medcouncil.serving.health import list_models
from medcouncil.serving.server import EngineServer
from medcouncil.serving.training.config import FinetuneConfig
from medcouncil.serving.training.data import Message
from medcouncil.serving.training.grpo import GroupTrainer, RewardExample
from medcouncil.serving.training.model import BaseModelInfo, resolve_base
from medcouncil.serving.training.train import TrainingInterrupted

pytestmark = pytest.mark.integration
EXAMPLES = [
    RewardExample(prompt=(Message(role="user", content=q),), answer="A", options={"A": "x", "B": "y"}, source=str(n))
    for n, q in enumerate(["Which organ pumps blood?", "Antidote for paracetamol?", "Cause of scurvy?"])
]


@pytest.fixture(scope="module")
def base() -> BaseModelInfo:
    return resolve_base(None)


def config(out: Path) -> FinetuneConfig:
    return FinetuneConfig(
        out=out, objective="grpo", max_steps=2, batch_size=1, group_size=2, max_new_tokens=8, eval_fraction=0.0,
        learning_rate=1e-3, seed=4, max_seq_len=64,
    )  # fmt: skip


def lora_b(out: Path) -> list[float]:
    tensors = load_file(str(out / "adapter_model.safetensors"))
    return [float(t.abs().sum()) for name, t in sorted(tensors.items()) if "lora_B" in name]


def test_equal_rewards_leave_the_adapter_and_differing_ones_move_it(base: BaseModelInfo, tmp_path: Path) -> None:
    flat = GroupTrainer(config(tmp_path / "flat"), EXAMPLES, base, "facts", reward=lambda text, example: 1.0)
    card = flat.run()
    assert card.finished and len(card.steps) == 2 and flat.loss is not None
    assert flat.loss.rewards == [1.0] * 4 and flat.loss.generated > 0
    assert all(value == 0.0 for value in lora_b(tmp_path / "flat"))  # no advantage, KL 0 at the reference: no step
    seen: list[str] = []

    def by_length(text: str, example: RewardExample) -> float:
        seen.append(text)
        return float(len(text))

    moved = GroupTrainer(config(tmp_path / "moved"), EXAMPLES, base, "facts", reward=by_length)
    moved.run()
    assert len(seen) == 4 and len(set(seen)) > 1
    assert any(value > 0.0 for value in lora_b(tmp_path / "moved"))

    def interrupt_in_step_two(text: str, example: RewardExample) -> float:
        if len(seen) == 6:  # step 2's rollout has sampled (and drawn from the RNG): Ctrl-C now
            raise KeyboardInterrupt
        return by_length(text, example)

    with pytest.raises(TrainingInterrupted, match="after step 1 of 2"):
        GroupTrainer(config(tmp_path / "split"), EXAMPLES, base, "facts", reward=interrupt_in_step_two).run()
    GroupTrainer(config(tmp_path / "split"), EXAMPLES, base, "facts", reward=by_length).run(resume=True)
    assert seen[4:6] == seen[0:2] and seen[6:] == seen[2:4]  # step 2 sampled again what the whole run sampled
    a = load_file(str(tmp_path / "moved" / "adapter_model.safetensors"))
    b = load_file(str(tmp_path / "split" / "adapter_model.safetensors"))
    assert a.keys() == b.keys() and all(a[k].equal(b[k]) for k in a)
    server = EngineServer(EngineConfig(lora={"grpo": tmp_path / "moved"}))
    state = server.start()
    try:
        assert {m["id"] for m in list_models(state.base_url)} >= {"gemma-3-270m", "grpo"}
    finally:
        server.stop()

"""DPO on the real embedded Gemma 3 270M: the loss against its formula (the reference is the adapter switched
off), a run interrupted and resumed to the same weights, and the adapter served by llama.cpp."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from medcouncil.serving.common.errors import ConfigError
from medcouncil.serving.config import EngineConfig
from medcouncil.serving.health import list_models
from medcouncil.serving.server import EngineServer
from medcouncil.serving.training.card import StepLog
from medcouncil.serving.training.config import FinetuneConfig
from medcouncil.serving.training.data import IGNORE, Message, tokenize
from medcouncil.serving.training.model import BaseModelInfo, load_model, load_tokenizer, resolve_base
from medcouncil.serving.training.preference import PreferenceExample, PreferenceLoss, PreferenceTrainer, collate_pairs
from medcouncil.serving.training.train import TrainingInterrupted

pytestmark = pytest.mark.integration
FACTS = [
    ("Which organ pumps blood?", "The heart pumps blood.", "The liver pumps blood."),
    ("First-line drug for anaphylaxis?", "Intramuscular adrenaline.", "An oral antihistamine."),
    ("Which vitamin deficiency causes scurvy?", "Vitamin C.", "Vitamin D."),
    ("Antidote for paracetamol overdose?", "N-acetylcysteine.", "Naloxone."),
]
PAIRS = [
    PreferenceExample(prompt=(Message(role="user", content=q),), chosen=c, rejected=r, source=f"facts:{n}")
    for n, (q, c, r) in enumerate(FACTS)
]


@pytest.fixture(scope="module")
def base() -> BaseModelInfo:
    return resolve_base(None)


def config(out: Path, **update: object) -> FinetuneConfig:
    values: dict[str, object] = {"out": out, "objective": "dpo", "max_steps": 3, "batch_size": 2,
                                 "learning_rate": 1e-3, "eval_fraction": 0.0, "save_every": 2, "seed": 1}  # fmt: skip
    return FinetuneConfig.model_validate({**values, **update})


def test_the_loss_is_the_dpo_formula_with_the_adapter_off_as_reference(base: BaseModelInfo, tmp_path: Path) -> None:
    settings = config(tmp_path)
    model = load_model(base, settings)
    tokenizer = load_tokenizer(base)
    units = [tuple(tokenize(tokenizer, e, 128) for e in pair.examples()) for pair in PAIRS[:2]]
    batch = collate_pairs(units, int(tokenizer.pad_token_id))  # type: ignore[arg-type]
    loss_fn = PreferenceLoss(model, beta=0.5)
    model.eval()  # no LoRA dropout: the two computations below must see the same policy
    loss, pairs = loss_fn(batch.input_ids, batch.attention_mask, batch.labels)
    assert int(pairs) == 2 and float(loss.detach()) == pytest.approx(2 * math.log(2), abs=1e-5)  # LoRA B starts at 0
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.02)
        policy = loss_fn.sequence_logps(batch.input_ids, batch.attention_mask, batch.labels)
        with model.disable_adapter():  # type: ignore[operator]
            logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits.float()
        # the reference, the slow way: every position's logits, the answer tokens' log-probabilities summed
        targets = batch.labels[:, 1:]
        logps = torch.log_softmax(logits[:, :-1], dim=-1).gather(2, targets.clamp(min=0).unsqueeze(2)).squeeze(2)
        reference = (logps * (targets != IGNORE)).sum(dim=1)
        margin = (policy[:2] - reference[:2]) - (policy[2:] - reference[2:])
        expected = -torch.nn.functional.logsigmoid(0.5 * margin).sum()
        again, _ = loss_fn(batch.input_ids, batch.attention_mask, batch.labels)
    assert float(again) == pytest.approx(float(expected), rel=1e-4) and abs(float(again) - 2 * math.log(2)) > 1e-4
    with pytest.raises(ConfigError, match="LoRA"):
        PreferenceLoss(load_model(base, FinetuneConfig(out=tmp_path, method="full")))


def test_a_dpo_run_resumes_to_the_same_weights_and_is_served(base: BaseModelInfo, tmp_path: Path) -> None:
    whole = PreferenceTrainer(config(tmp_path / "whole"), PAIRS, base, "facts").run()
    assert whole.finished and len(whole.steps) == 3 and whole.steps[0].loss == pytest.approx(math.log(2), abs=1e-4)

    def stop_at_two(log: StepLog, total: int) -> None:
        if log.step == 2:
            raise KeyboardInterrupt

    with pytest.raises(TrainingInterrupted, match="after step 2 of 3"):
        PreferenceTrainer(config(tmp_path / "split"), PAIRS, base, "facts", on_step=stop_at_two).run()
    resumed = PreferenceTrainer(config(tmp_path / "split"), PAIRS, base, "facts").run(resume=True)
    assert [s.loss for s in resumed.steps] == [s.loss for s in whole.steps]
    a = load_file(str(tmp_path / "whole" / "adapter_model.safetensors"))
    b = load_file(str(tmp_path / "split" / "adapter_model.safetensors"))
    assert a.keys() == b.keys() and all(a[k].equal(b[k]) for k in a)
    with pytest.raises(Exception, match="other settings"):
        PreferenceTrainer(config(tmp_path / "split", beta=0.5), PAIRS, base, "facts").run(resume=True)
    server = EngineServer(EngineConfig(lora={"dpo": tmp_path / "whole"}))
    state = server.start()
    try:
        assert {m["id"] for m in list_models(state.base_url)} >= {"gemma-3-270m", "dpo"}
    finally:
        server.stop()

"""Real fine-tuning runs of the embedded Gemma 3 270M on shared MedQA items, and the adapter served by llama.cpp."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from autogen_core.models import UserMessage
from safetensors.torch import load_file

from medcouncil.serving.client import ModelClient
from medcouncil.serving.common.errors import ConfigError
from medcouncil.serving.components import Choice, ClientSettings, endpoint_component
from medcouncil.serving.config import EngineConfig
from medcouncil.serving.health import describe_endpoint, list_models
from medcouncil.serving.server import EngineServer
from medcouncil.serving.training.card import RunCard, StepLog
from medcouncil.serving.training.config import FinetuneConfig
from medcouncil.serving.training.data import ChatExample, Message
from medcouncil.serving.training.model import BaseModelInfo, resolve_base
from medcouncil.serving.training.train import Trainer, TrainingInterrupted
from medcouncil.tools.mcqa import answer_line, format_mcqa
from tests.conftest import SHARED

pytestmark = pytest.mark.integration
MEDQA = SHARED / "data" / "mcqa" / "medqa.test.jsonl"
if not MEDQA.exists():
    pytest.skip(f"shared data not found at {MEDQA}", allow_module_level=True)


def medqa_rows(n: int) -> list[dict[str, Any]]:
    with MEDQA.open(encoding="utf-8") as handle:
        return [json.loads(line) for _, line in zip(range(n), handle, strict=False)]


def examples(n: int) -> list[ChatExample]:
    chats = []
    for i, row in enumerate(medqa_rows(n)):
        user = Message(role="user", content=format_mcqa(row["question"], row["options"]))
        answer = Message(role="assistant", content=answer_line(row["answer_idx"], row["options"]))
        chats.append(ChatExample(messages=(user, answer), source=f"medqa:{i}"))
    return chats


@pytest.fixture(scope="module")
def base() -> BaseModelInfo:
    return resolve_base(None)  # the embedded GGUF, dequantised once into the test home's cache


@pytest.fixture(scope="module")
def trained(base: BaseModelInfo, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, RunCard]:
    out = tmp_path_factory.mktemp("adapter")
    config = FinetuneConfig(
        out=out,
        max_steps=10,
        batch_size=4,
        learning_rate=1e-3,
        eval_fraction=0.125,
        eval_every=5,
        save_every=5,
        max_seq_len=256,
        seed=0,
    )
    card = Trainer(config, examples(32), base, str(MEDQA)).run()
    return out, card


def test_training_lowers_the_loss_and_writes_adapter_card_and_report(
    trained: tuple[Path, RunCard], base: BaseModelInfo
) -> None:
    out, card = trained
    losses = [s.loss for s in card.steps]
    assert [s.step for s in card.steps] == list(range(1, 11))
    assert sum(losses[-3:]) / 3 < 0.5 * sum(losses[:3]) / 3, losses
    assert len(card.evals) == 2 and card.evals[-1].loss < card.evals[0].loss
    saved = RunCard.model_validate_json((out / "run.json").read_text())
    assert saved.finished and saved.base.digest == base.digest and saved.data.examples == 32
    assert saved.data.train == 28 and saved.data.eval == 4 and len(saved.data.fingerprint) == 64
    assert saved.config["lora_r"] == 16 and saved.tokens > 0 and saved.tokens_per_second > 0
    assert saved.peak_rss_mb > 0 and saved.medcouncil_version
    assert "<svg" in (out / "report.html").read_text() and (out / "adapter_model.safetensors").is_file()
    assert json.loads((out / "adapter_config.json").read_text())["r"] == 16
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-000005", "step-000010"]


def test_adapter_reloads_with_the_trained_weights(trained: tuple[Path, RunCard], base: BaseModelInfo) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    out, _ = trained
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base.folder, dtype=torch.float32), out)
    saved = load_file(str(out / "adapter_model.safetensors"))
    loaded = {n: p for n, p in model.named_parameters() if "lora_" in n}
    assert len(loaded) == len(saved) == 18 * 4 * 2  # 18 layers x q/k/v/o x A/B
    name = next(n for n in saved if "lora_B" in n)
    match = next(p for n, p in loaded.items() if n.replace(".default", "") == name)
    assert torch.equal(match.detach(), saved[name]) and saved[name].abs().sum() > 0  # B starts at zero: it trained


def choose(base_url: str, model: str, questions: Sequence[dict[str, Any]]) -> list[Choice]:
    async def run() -> list[Choice]:
        info = describe_endpoint(base_url, None, model)
        settings = ClientSettings(cache=False)
        client = ModelClient(endpoint_component(info, settings), info, settings)
        try:
            prompts = [[UserMessage(content=format_mcqa(q["question"], q["options"]), source="u")] for q in questions]
            return [await client.choose(p, list(q["options"])) for p, q in zip(prompts, questions, strict=True)]
        finally:
            await client.close()

    return asyncio.run(run())


def test_llamacpp_serves_the_adapter_under_its_name(trained: tuple[Path, RunCard]) -> None:
    out, _ = trained
    server = EngineServer(EngineConfig(lora={"med": out}))
    state = server.start()
    try:
        assert {m["id"] for m in list_models(state.base_url)} >= {"gemma-3-270m", "med"}
        questions = medqa_rows(2)  # trained on
        tuned = choose(state.base_url, "med", questions)
        plain = choose(state.base_url, "gemma-3-270m", questions)
    finally:
        server.stop()
    assert plain[0].letter == "A" and tuned[0].letter != plain[0].letter, (plain, tuned)
    assert tuned[1].probabilities != plain[1].probabilities


def test_adapter_of_another_base_is_refused_before_launch(trained: tuple[Path, RunCard], tmp_path: Path) -> None:
    out, _ = trained
    other = tmp_path / "other"
    shutil.copytree(out, other, ignore=shutil.ignore_patterns("checkpoints"))
    card = json.loads((other / "run.json").read_text())
    card["base"]["digest"] = "0" * 64
    (other / "run.json").write_text(json.dumps(card))
    server = EngineServer(EngineConfig(lora={"other": other}))
    with pytest.raises(ConfigError, match=r"'other' .* was trained on base 0000000000000000, not on the served model"):
        server.start()
    assert server.process is None


def test_resume_continues_the_steps_and_reaches_the_same_weights(base: BaseModelInfo, tmp_path: Path) -> None:
    data = examples(12)

    def config(out: Path) -> FinetuneConfig:
        return FinetuneConfig(
            out=out,
            max_steps=6,
            batch_size=2,
            learning_rate=5e-4,
            lora_dropout=0.1,
            eval_fraction=0.0,
            save_every=3,
            max_seq_len=160,
            seed=3,
        )

    whole = Trainer(config(tmp_path / "whole"), data, base, "medqa").run()

    def stop_at_four(log: StepLog, total: int) -> None:
        if log.step == 4:
            raise KeyboardInterrupt  # what Ctrl-C raises, mid-run

    with pytest.raises(TrainingInterrupted, match="interrupted after step 4 of 6: checkpoint saved"):
        Trainer(config(tmp_path / "split"), data, base, "medqa", on_step=stop_at_four).run()
    assert (tmp_path / "split" / "checkpoints" / "step-000004").is_dir()
    resumed = Trainer(config(tmp_path / "split"), data, base, "medqa").run(resume=True)
    assert [s.step for s in resumed.steps] == [1, 2, 3, 4, 5, 6] and resumed.resumed_from
    assert [s.loss for s in resumed.steps] == [s.loss for s in whole.steps]
    a = load_file(str(tmp_path / "whole" / "adapter_model.safetensors"))
    b = load_file(str(tmp_path / "split" / "adapter_model.safetensors"))
    assert a.keys() == b.keys() and all(a[k].equal(b[k]) for k in a)
    with pytest.raises(Exception, match="other settings"):
        Trainer(config(tmp_path / "split").model_copy(update={"learning_rate": 1e-3}), data, base, "m").run(resume=True)


def test_cli_trains_from_a_dataset_and_reports_errors_in_one_line(
    cli: list[str], tmp_path: Path, base: BaseModelInfo
) -> None:
    out = tmp_path / "cli-run"
    args = [
        *cli,
        "finetune",
        "--data",
        str(MEDQA),
        "--limit",
        "6",
        "--max-steps",
        "2",
        "--batch-size",
        "2",
        "--max-seq-len",
        "128",
        "--out",
        str(out),
        "--merge",
    ]
    done = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "2/2" in done.stderr and "Trained lora on 5 examples" in done.stdout.replace("\n", " ")
    card = json.loads((out / "run.json").read_text())
    assert card["data"]["source"] == str(MEDQA) and len(card["steps"]) == 2
    merged = out / "merged"
    assert card["merged"] == str(merged) and (merged / "config.json").is_file()
    assert list(merged.glob("*.safetensors")) and (merged / "tokenizer_config.json").is_file()
    template = [merged / "chat_template.jinja", merged / "tokenizer_config.json"]
    assert any(p.is_file() and "start_of_turn" in p.read_text() for p in template)  # vLLM can serve it as is
    again = subprocess.run(args[:-1], capture_output=True, text=True, timeout=120)
    assert again.returncode == 1 and "already holds a run: continue it with --resume" in again.stderr
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}\n{oops\n')
    for extra, message in (
        (["--data", str(bad)], f"{bad}:2: not JSON"),
        (["--data", str(tmp_path / "none.jsonl")], "none.jsonl"),
        (["--data", str(MEDQA), "--limit", "2", "--method", "qlora"], "qlora needs a CUDA GPU"),
        (["--resume", str(tmp_path / "empty")], "no finished checkpoint"),
        (["--data", str(MEDQA), "--base", str(tmp_path / "nope.gguf")], "base model not found"),
    ):
        failed = subprocess.run(
            [*cli, "finetune", "--out", str(tmp_path / "x"), *extra], capture_output=True, text=True, timeout=300
        )
        assert failed.returncode == 1, failed.stderr
        assert message in failed.stderr and "Traceback" not in failed.stderr, failed.stderr

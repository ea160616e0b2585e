"""Fine-tuning logic without a model: config, chat data and label masks, data order, checkpoints, GGUF LoRA."""

from __future__ import annotations

import errno
import json
import shutil
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
import pytest
import torch

from medcouncil.serving.common.errors import ConfigError, MedcouncilError, ModelPathError
from medcouncil.serving.config import GEMMA_TEMPLATE
from medcouncil.serving.lora_gguf import check_base, convert
from medcouncil.serving.training import checkpoint
from medcouncil.serving.training.config import FinetuneConfig
from medcouncil.serving.training.data import (
    IGNORE,
    ChatExample,
    is_chat_jsonl,
    read_chat_jsonl,
    segments,
    split_eval,
    tokenize,
)
from medcouncil.serving.training.model import BaseModelInfo, load_model
from medcouncil.serving.training.train import micro_batches, plan_steps


class CharTokenizer:
    """Renders medcouncil's Gemma template; one token per character."""

    def __init__(self) -> None:
        self.template = jinja2.Environment().from_string(GEMMA_TEMPLATE.read_text())

    def apply_chat_template(self, conversation: Any, **kwargs: Any) -> str:
        return self.template.render(
            messages=conversation, bos_token="<bos>", add_generation_prompt=kwargs.get("add_generation_prompt", False)
        )

    def __call__(self, text: str, **kwargs: Any) -> dict[str, list[int]]:
        return {"input_ids": [ord(c) for c in text]}


def example(*turns: tuple[str, str]) -> ChatExample:
    return ChatExample.model_validate({"messages": [{"role": r, "content": c} for r, c in turns], "source": "t"})


def test_config_yaml_then_flags(tmp_path: Path) -> None:
    path = tmp_path / "ft.yaml"
    path.write_text("method: full\nlearning_rate: 0.001\nmax_steps: 5\ntarget_modules: [q_proj]\n")
    config = FinetuneConfig.load(path, max_steps=7, seed=None)
    assert config.method == "full" and config.learning_rate == 0.001 and config.max_steps == 7
    assert config.lora_r == 16 and config.lora_alpha == 32  # the documented defaults
    path.write_text("method: dora\n")
    with pytest.raises(ConfigError, match=r"ft\.yaml: method"):
        FinetuneConfig.load(path)
    with pytest.raises(ConfigError, match="batch_size"):
        FinetuneConfig.load(None, batch_size=0)


def test_loss_only_on_assistant_turns() -> None:
    tokenizer = CharTokenizer()
    chat = example(("system", "Be brief."), ("user", "Q1"), ("assistant", "A1"), ("user", "Q2"), ("assistant", "A2"))
    pieces = segments(tokenizer, chat)
    assert [text for text, trained in pieces if trained] == ["A1<end_of_turn>", "A2<end_of_turn>"]
    assert "".join(text for text, _ in pieces) + "\n" == tokenizer.apply_chat_template(
        [m.model_dump() for m in chat.messages]
    )
    tokens = tokenize(tokenizer, chat, max_len=10_000)
    trained = "".join(chr(i) for i, label in zip(tokens.input_ids, tokens.labels, strict=True) if label != IGNORE)
    assert trained == "A1<end_of_turn>A2<end_of_turn>"
    assert "Be brief." in "".join(chr(i) for i in tokens.input_ids)
    # Too long: the start goes, the answer stays.
    cut = tokenize(tokenizer, chat, max_len=20)
    assert cut.truncated and len(cut.input_ids) == 20 and cut.labelled == len("A2<end_of_turn>")


SYSTEM = {"role": "system", "content": "late"}


def test_chat_jsonl_errors_name_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "train.jsonl"
    good = json.dumps({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]})
    cases = {
        "{not json": "train.jsonl:2: not JSON",
        json.dumps({"text": "x"}): "train.jsonl:2: expected an object with a 'messages' list",
        json.dumps({"messages": [{"role": "doctor", "content": "x"}]}): "train.jsonl:2: messages.0.role",
        json.dumps({"messages": [{"role": "user", "content": "x"}]}): "train.jsonl:2: .*no assistant turn",
        json.dumps({"message": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}): (
            "train.jsonl:2: expected an object with a 'messages' list \\(its 'message' looks like one: rename it"
        ),
        json.dumps(
            {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}, SYSTEM]}
        ): "train.jsonl:2: messages: message 3 is a system message: a system message only opens a conversation",
        json.dumps({"conversations": [{"from": "bot", "value": "x"}]}): "train.jsonl:2: conversations.1.from: 'bot'",
        json.dumps({"conversations": [{"from": "human", "value": None}]}): (
            "train.jsonl:2: conversations.1.value: expected text, got null"
        ),
        json.dumps({"conversations": "q"}): "train.jsonl:2: conversations: expected a list of",
    }
    for line, message in cases.items():
        path.write_text(good + "\n" + line + "\n")
        with pytest.raises(ConfigError, match=message):
            read_chat_jsonl(path)
    path.write_text(good + "\n\n" + good + "\n")
    assert [e.source for e in read_chat_jsonl(path)] == [f"{path}:1", f"{path}:3"]
    turns = [{"from": "system", "value": "s"}, {"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]
    path.write_text(json.dumps({"conversations": turns}) + "\n")  # ShareGPT
    assert is_chat_jsonl(path)
    (sharegpt,) = read_chat_jsonl(path)
    assert [(m.role, m.content) for m in sharegpt.messages] == [("system", "s"), ("user", "q"), ("assistant", "a")]
    with pytest.raises(ConfigError, match=r"missing\.jsonl: cannot read training data"):
        read_chat_jsonl(tmp_path / "missing.jsonl")


def test_data_order_is_seeded_and_covers_every_example() -> None:
    config = FinetuneConfig(batch_size=3, epochs=2, seed=5)
    steps, per_epoch = plan_steps(10, config)
    assert (steps, per_epoch) == (8, 4)
    plan = micro_batches(list(range(10)), config, steps)
    assert plan == micro_batches(list(range(10)), config, steps)
    assert sorted(i for batch in plan[:4] for i in batch) == list(range(10))  # epoch 1: each example once
    assert plan[:4] != plan[4:8]  # epoch 2: another order
    assert plan != micro_batches(list(range(10)), config.model_copy(update={"seed": 6}), steps)
    assert plan_steps(10, FinetuneConfig(batch_size=2, grad_accum=2, max_steps=3)) == (3, 5)
    train, held = split_eval([example(("user", "q"), ("assistant", str(i))) for i in range(20)], 0.1, seed=0)
    assert len(held) == 2 and not set(train) & set(held) and len(train) == 18


def tiny_state() -> tuple[torch.nn.Linear, torch.optim.Optimizer, Any]:
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    model(torch.ones(1, 4)).sum().backward()
    optimizer.step()
    return model, optimizer, scheduler


def test_checkpoints_round_trip_and_prune(tmp_path: Path) -> None:
    model, optimizer, scheduler = tiny_state()
    for step in (1, 2, 3):
        checkpoint.save(tmp_path, step, model, optimizer, scheduler, {"note": step}, keep=2)
    assert [p.name for p in checkpoint.checkpoint_dirs(tmp_path)] == ["step-000002", "step-000003"]
    copy = tmp_path / "checkpoints" / "step-000002-backup"  # a copy a user made beside them is not a checkpoint
    shutil.copytree(tmp_path / "checkpoints" / "step-000002", copy)
    assert [p.name for p in checkpoint.checkpoint_dirs(tmp_path)] == ["step-000002", "step-000003"]
    tensors, progress = checkpoint.load(tmp_path / "checkpoints" / "step-000003")
    assert progress == {"step": 3, "note": 3}
    other, _, _ = tiny_state()
    with torch.no_grad():
        other.weight.zero_()
    checkpoint.apply(other, tensors)
    assert torch.equal(other.weight, model.weight)
    with pytest.raises(Exception, match="do not match this model"):
        checkpoint.apply(torch.nn.Linear(3, 3), tensors)


def test_disk_full_during_a_checkpoint_keeps_the_last_finished_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model, optimizer, scheduler = tiny_state()
    first = checkpoint.save(tmp_path, 5, model, optimizer, scheduler, {}, keep=1)
    before = (first / checkpoint.TENSORS).read_bytes()

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full)  # the module checkpoint calls through
    with pytest.raises(checkpoint.DiskFullError, match=r"disk full while writing checkpoint step 10 .*step-000005"):
        checkpoint.save(tmp_path, 10, model, optimizer, scheduler, {}, keep=1)
    assert checkpoint.latest(tmp_path) == first and (first / checkpoint.TENSORS).read_bytes() == before
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["step-000005"]  # no partial folder left


def test_disk_full_while_deepspeed_writes_its_shards_is_the_same_one_line_error(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from medcouncil.serving.training import zero

    model, optimizer, scheduler = tiny_state()
    first = checkpoint.save(tmp_path, 5, model, optimizer, scheduler, {}, keep=1)

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.EDQUOT, "Disk quota exceeded")

    engine = SimpleNamespace(save_checkpoint=full)
    accelerator = SimpleNamespace(is_main_process=True, wait_for_everyone=lambda: None)
    with pytest.raises(
        checkpoint.DiskFullError, match=r"disk full while writing checkpoint step 10 \(DeepSpeed's .*step-0+5"
    ):
        zero.save(engine, tmp_path, 10, accelerator)
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == [first.name]  # its partial folder is gone
    engine.save_checkpoint = lambda *a, **k: (_ for _ in ()).throw(OSError(errno.EACCES, "Permission denied"))
    with pytest.raises(
        MedcouncilError, match=r"^cannot write checkpoint step 10 \(DeepSpeed's optimizer shards\) .*Permission denied"
    ):
        zero.save(engine, tmp_path, 10, accelerator)


def test_qlora_without_cuda_is_one_clear_error() -> None:
    info = BaseModelInfo("m", "folder", "/nope", "/nope", "d")
    with pytest.raises(ConfigError, match="qlora needs a CUDA GPU"):
        load_model(info, FinetuneConfig(method="qlora"))


def fake_base(path: Path, layers: int = 2, hidden: int = 8) -> Path:
    from gguf import GGUFWriter

    writer = GGUFWriter(str(path), "gemma3")
    for i in range(layers):
        writer.add_tensor(f"blk.{i}.attn_q.weight", np.zeros((hidden, hidden), dtype=np.float32))
        writer.add_tensor(f"blk.{i}.attn_v.weight", np.zeros((4, hidden), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def fake_adapter(folder: Path, out_v: int = 4, rank: int = 2) -> Path:
    from safetensors.numpy import save_file

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "adapter_config.json").write_text(json.dumps({"r": rank, "lora_alpha": 4, "peft_type": "LORA"}))
    prefix = "base_model.model.model.layers"
    tensors = {}
    for i in range(2):
        tensors[f"{prefix}.{i}.self_attn.q_proj.lora_A.weight"] = np.full((rank, 8), i + 1, dtype=np.float32)
        tensors[f"{prefix}.{i}.self_attn.q_proj.lora_B.weight"] = np.full((8, rank), 0.5, dtype=np.float32)
        tensors[f"{prefix}.{i}.self_attn.v_proj.lora_A.weight"] = np.ones((rank, 8), dtype=np.float32)
        tensors[f"{prefix}.{i}.self_attn.v_proj.lora_B.weight"] = np.ones((out_v, rank), dtype=np.float32)
    save_file(tensors, str(folder / "adapter_model.safetensors"))
    return folder


def test_peft_adapter_becomes_a_gguf_lora_checked_against_the_base(tmp_path: Path) -> None:
    from gguf import GGUFReader

    base = fake_base(tmp_path / "base.gguf")
    out = convert(fake_adapter(tmp_path / "adapter"), base, tmp_path / "lora.gguf")
    reader = GGUFReader(str(out))

    def field(name: str) -> Any:
        value = reader.fields[name]
        raw = value.parts[value.data[0]]
        return bytes(raw).decode() if value.types[0].name == "STRING" else float(raw[0])

    assert field("general.type") == "adapter" and field("adapter.type") == "lora"
    assert field("general.architecture") == "gemma3" and field("adapter.lora.alpha") == 4.0
    tensors = {t.name: t for t in reader.tensors}
    assert set(tensors) == {f"blk.{i}.attn_{m}.weight.lora_{p}" for i in (0, 1) for m in "qv" for p in "ab"}
    # ggml shapes: lora_a [n_in, r], lora_b [r, n_out]; values unchanged.
    assert [int(x) for x in tensors["blk.1.attn_v.weight.lora_a"].shape] == [8, 2]
    assert [int(x) for x in tensors["blk.1.attn_v.weight.lora_b"].shape] == [2, 4]
    assert float(np.asarray(tensors["blk.1.attn_q.weight.lora_a"].data).mean()) == 2.0
    with pytest.raises(ConfigError, match="do not fit the base"):
        convert(fake_adapter(tmp_path / "wrong", out_v=6), base, tmp_path / "wrong.gguf")
    with pytest.raises(ModelPathError, match="not a PEFT adapter"):
        convert(tmp_path, base, tmp_path / "x.gguf")


def test_adapter_trained_on_another_base_is_refused(tmp_path: Path) -> None:
    adapter = fake_adapter(tmp_path / "adapter")
    assert check_base("med", adapter, "abc") is False  # no run card: nothing recorded to check
    (adapter / "run.json").write_text(json.dumps({"base": {"digest": "f00d" * 16}}))
    assert check_base("med", adapter, "f00d" * 16) is True
    with pytest.raises(ConfigError, match=r"'med' .* was trained on base f00df00d"):
        check_base("med", adapter, "beef" * 16)


def test_ctrl_c_during_an_update_waits_for_its_end() -> None:
    import os
    import signal

    from medcouncil.serving.training.checkpoint import deferred_interrupt

    done = []
    with pytest.raises(KeyboardInterrupt), deferred_interrupt():
        os.kill(os.getpid(), signal.SIGINT)
        done.append("update recorded")  # still runs: the interrupt waits for the block's end
    assert done == ["update recorded"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_where_the_data_was_found_does_not_decide_the_weights() -> None:
    """``--data-dir`` names a folder, not the data (the data's fingerprint is checked on resume): a run resumed with
    another folder, or saved before the option existed, still resumes."""
    from pathlib import Path

    from medcouncil.serving.training.config import FinetuneConfig

    assert FinetuneConfig(data_dir=Path("a")).training_fields() == FinetuneConfig().training_fields()

"""``medcouncil finetune`` refuses an output it cannot write before it loads or trains anything."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from medcouncil.serving.common.errors import ConfigError
from medcouncil.serving.training.checkpoint import CHECKPOINTS, STATE, prepare_out

ROW = {"messages": [{"role": "user", "content": "Which organ pumps blood?"}, {"role": "assistant", "content": "Heart"}]}


def test_an_output_that_is_a_file_is_refused_at_once(tmp_path: Path) -> None:
    taken = tmp_path / "taken"
    taken.write_text("keep me")
    for out, blocked in ((taken, "it is a file"), (taken / "sub", f"{taken} is a file")):
        with pytest.raises(ConfigError, match=f"--out {out}: {blocked}, not a folder"):
            prepare_out(out)
    assert taken.read_text() == "keep me"
    prepare_out(tmp_path / "new" / "folder")
    assert (tmp_path / "new" / "folder").is_dir() and not list((tmp_path / "new" / "folder").iterdir())


def test_cli_refuses_a_file_as_out_before_loading_the_model(cli: list[str], tmp_path: Path) -> None:
    data = tmp_path / "train.jsonl"
    data.write_text(json.dumps(ROW) + "\n")
    taken = tmp_path / "adapter.bin"
    taken.write_text("x")
    started = time.monotonic()
    result = subprocess.run(
        [*cli, "finetune", "--data", str(data), "--out", str(taken), "--save-every", "100"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.endswith(
        f"error: --out {taken}: it is a file, not a folder: choose a folder for the adapter and checkpoints\n"
    )
    assert "loading the base model" not in result.stderr and time.monotonic() - started < 60


def test_resume_of_a_corrupt_checkpoint_state_is_one_line(cli: list[str], tmp_path: Path) -> None:
    step = tmp_path / "run" / CHECKPOINTS / "step-000001"
    step.mkdir(parents=True)
    for content in (b"\xff", b"[]", b'{"card": {"config": "x"}}', b'{"card": {"config": {"lora_r": "many"}}}'):
        (step / STATE).write_bytes(content)
        result = subprocess.run(
            [*cli, "finetune", "--resume", str(tmp_path / "run")], capture_output=True, text=True, timeout=300
        )
        assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
        assert result.stderr.startswith(f"error: {step / STATE}") and result.stderr.count("\n") == 1, result.stderr
    (step / STATE).write_text('{"card": {"config": {}}}')  # a readable run: what a resume cannot change is next
    changed = subprocess.run(
        [
            *cli,
            "finetune",
            "--resume",
            str(tmp_path / "run"),
            "--lr",
            "5",
            "--epochs",
            "9",
            "--threads",
            "1",
            "--beta",
            "1",
            "--no-gradient-checkpointing",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )  # settings a resume cannot change are refused, not silently dropped (--threads may change)
    assert changed.returncode == 1 and changed.stderr.startswith(f"error: --resume continues {tmp_path / 'run'}")
    assert "--learning-rate/--lr, --epochs" in changed.stderr  # every spelling of an option, the one typed too
    assert "--beta" in changed.stderr  # a method's option is the run's to keep, not "not an option of --method lora"
    assert "--gradient-checkpointing/--no-gradient-checkpointing" in changed.stderr


def _checkpoint(out: Path, config: dict[str, object]) -> None:
    step = out / CHECKPOINTS / "step-000002"
    step.mkdir(parents=True)
    (step / STATE).write_text(json.dumps({"card": {"config": config}}))


def test_a_resume_keeps_the_runs_decontamination_choice(tmp_path: Path) -> None:
    from medcouncil.scenarios.cli.finetune import _saved_config

    skipped, older = tmp_path / "skipped", tmp_path / "older"
    _checkpoint(skipped, {"objective": "dpo", "data": "pairs.jsonl", "decontaminate": False})
    assert _saved_config(skipped).decontaminate is False  # no flag on the resume: the run's choice
    assert _saved_config(skipped, False).decontaminate is False
    with pytest.raises(ConfigError, match=f"--resume {skipped}: the run was trained with --no-decontaminate"):
        _saved_config(skipped, True)
    _checkpoint(older, {"objective": "dpo", "data": "pairs.jsonl"})  # recorded before the choice was
    assert _saved_config(older).decontaminate is True
    assert _saved_config(older, False).decontaminate is False
    sft = tmp_path / "sft"
    _checkpoint(sft, {"data": "chat.jsonl"})  # SFT: the flag is not an option, on a resume either
    with pytest.raises(ConfigError, match="options of --method dpo and grpo"):
        _saved_config(sft, False)


def test_the_choice_is_recorded_and_decides_no_weight_field() -> None:
    from medcouncil.serving.training.config import FinetuneConfig

    settings = FinetuneConfig.load(None, objective="dpo", decontaminate=False)
    assert settings.model_dump(mode="json")["decontaminate"] is False  # the run card's config holds it
    assert "decontaminate" not in settings.training_fields()  # older checkpoints, without it, still resume


def test_sft_refuses_the_decontamination_flag(cli: list[str], tmp_path: Path) -> None:
    data = tmp_path / "train.jsonl"
    data.write_text(json.dumps(ROW) + "\n")
    result = subprocess.run(
        [*cli, "finetune", "--data", str(data), "--no-decontaminate", "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert "options of --method dpo and grpo" in result.stderr and not (tmp_path / "out").exists()

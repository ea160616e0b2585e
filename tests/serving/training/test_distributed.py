"""Training on several processes: the step's share, the global batch across world sizes, and real 2-process CPU
runs (torchrun, gloo) against 1-process runs of the same global batch.

Tolerance: per-step losses within 1e-4 and trained weights within 1e-5 (absolute; 1e-4 for DeepSpeed, whose
reduce-scatter sums in its own order: 1.3e-5 here). DDP and FSDP come out bit-identical on this CPU: the
micro-batches, their dropout seeds and the gradient scaling are the same; only the order of float sums in the
all-reduce could differ.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from medcouncil.serving.common.errors import ConfigError
from medcouncil.serving.training import checkpoint
from medcouncil.serving.training.config import FinetuneConfig
from medcouncil.serving.training.distributed import check_fsdp, micro_seed, my_share, resumed_on
from medcouncil.serving.training.train import micro_batches, plan_steps
from tests.conftest import SHARED

MEDQA = SHARED / "data" / "mcqa" / "medqa.test.jsonl"
LOSS_TOLERANCE = 1e-4
WEIGHT_TOLERANCE = 1e-5
DEEPSPEED_WEIGHT_TOLERANCE = 1e-4
RESUME = ["-m", "medcouncil.scenarios.cli", "finetune", "--resume"]


def test_a_step_is_shared_whole_and_disjoint() -> None:
    batches = list(range(6))
    shares = [my_share(batches, rank, 3) for rank in range(3)]
    assert sorted(b for share in shares for _, b in share) == batches
    assert shares[1] == [(1, 1), (4, 4)]  # the index in the step (its dropout seed) travels with the micro-batch
    assert len({micro_seed(0, s, i) for s in range(50) for i in range(8)}) == 400
    assert micro_seed(0, 1, 2) != micro_seed(1, 1, 2)


def test_the_global_batch_decides_the_steps_whatever_the_processes() -> None:
    one = FinetuneConfig(batch_size=2, grad_accum=2, epochs=1)
    two = FinetuneConfig(batch_size=2, global_batch=4, epochs=1)
    assert two.accumulation(2) == 1 and two.accumulation(1) == 2 and one.accumulation(2) == 2
    assert one.training_fields(1) == two.training_fields(2)  # a checkpoint of one resumes as the other
    assert one.training_fields(2)["grad_accum"] == 4  # grad_accum per process: twice the batch on 2 processes
    assert plan_steps(20, one, 1) == plan_steps(20, two, 2) == (5, 10)
    assert micro_batches(range(20), one, 4) == micro_batches(range(20), two, 4)
    with pytest.raises(ConfigError, match=r"--global-batch 4 is not a multiple of --batch-size 2 x 3 processes"):
        two.accumulation(3)
    with pytest.raises(ValueError, match="not both"):
        FinetuneConfig(grad_accum=2, global_batch=8)
    with pytest.raises(ValueError, match="not a multiple of batch_size"):
        FinetuneConfig(batch_size=4, global_batch=6)


def _checkpoint_with(out: Path, micro: int, processes: int | None = 1) -> None:
    card: dict[str, Any] = {"config_fields": {"grad_accum": micro}}
    if processes is not None:
        card["processes"] = processes
    checkpoint.write_whole(out / checkpoint.CHECKPOINTS, "step-000002", {}, {"step": 2, "card": card})


def test_a_resume_is_refused_where_the_step_cannot_be_kept(tmp_path: Path) -> None:
    _checkpoint_with(tmp_path, 4, processes=None)  # written before the processes were recorded
    with pytest.raises(ConfigError, match="does not record how many processes"):
        resumed_on(FinetuneConfig(out=tmp_path, batch_size=2, grad_accum=4), 2)
    assert resumed_on(FinetuneConfig(out=tmp_path, batch_size=2, grad_accum=4), 1).accumulation(1) == 4
    _checkpoint_with(tmp_path, 4, processes=2)
    deepspeed = FinetuneConfig(out=tmp_path, batch_size=2, global_batch=8, deepspeed=tmp_path / "ds.json")
    with pytest.raises(ConfigError, match="DeepSpeed's optimizer shards of 2 processes: resume it on 2"):
        resumed_on(deepspeed, 4)
    by_global = FinetuneConfig(out=tmp_path, batch_size=2, global_batch=8)  # --global-batch runs name the counts too
    with pytest.raises(ConfigError, match=r"3 processes cannot share them evenly: launch 1, 2, 4"):
        resumed_on(by_global, 3)


def test_a_resume_on_another_number_of_processes_keeps_the_step_or_is_refused(tmp_path: Path) -> None:
    _checkpoint_with(tmp_path, 4)  # 4 micro-batches per step: 1 process x 4, 2 x 2 or 4 x 1
    config = FinetuneConfig(out=tmp_path, batch_size=2, grad_accum=4)
    assert resumed_on(config, 1) is config
    on_two = resumed_on(config, 2)
    assert on_two.accumulation(2) == 2 and on_two.training_fields(2) == config.training_fields(1)
    assert resumed_on(config, 4).accumulation(4) == 1
    with pytest.raises(ConfigError, match=r"takes 4 micro-batches of 2 examples; 3 processes .* launch 1, 2, 4"):
        resumed_on(config, 3)
    assert resumed_on(FinetuneConfig(out=tmp_path / "fresh"), 3).accumulation(3) == 1  # nothing to resume


def test_fsdp_is_refused_where_it_does_not_shard() -> None:
    for settings in ({"method": "lora"}, {"method": "full", "merge": True}):
        with pytest.raises(ConfigError, match=r"--fsdp|--merge"):
            check_fsdp(FinetuneConfig(fsdp=True, **settings))
    check_fsdp(FinetuneConfig(fsdp=True, method="full"))


def test_a_deepspeed_launch_is_refused_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    with pytest.raises(ConfigError, match=r"DeepSpeed launch would .*\(finetune --deepspeed ds.json"):
        check_fsdp(FinetuneConfig())


def test_a_deepspeed_file_gets_the_runs_batch_and_keeps_its_own_sharding(tmp_path: Path) -> None:
    from medcouncil.serving.training import zero

    path = tmp_path / "ds.yaml"
    path.write_text("zero_optimization: {stage: 1, overlap_comm: true}\nbf16: {enabled: true}\n")
    settings = zero.engine_config(FinetuneConfig(deepspeed=path, batch_size=2, global_batch=8), 2)
    assert settings["train_micro_batch_size_per_gpu"] == 2 and settings["gradient_accumulation_steps"] == 2
    assert settings["train_batch_size"] == 8 and settings["managed_gradient_accumulation"] is False
    assert settings["bf16"] == {"enabled": True} and settings["gradient_clipping"] == 0.0
    assert settings["zero_force_ds_cpu_optimizer"] is False  # offload with the loop's own AdamW
    assert settings["zero_optimization"] == {"stage": 1, "overlap_comm": False}
    for text, message in (
        ('{"optimizer": {"type": "Adam"}}', "remove optimizer: medcouncil's flags set them"),
        ('{"train_batch_size": 32}', "train_batch_size is 32, this run's is 8"),
        ('{"checkpoint": {"writer": {"type": "decoupled"}}}', "remove checkpoint: medcouncil writes each"),
        ("[1, 2]", "expected a mapping"),
        ("{oops", "not valid json"),
        ('{"zero_optimization": "stage3"}', "zero_optimization must be a mapping"),
        ('{"bf16": {"enabled": true}, "bf16": {"enabled": false}}', "key 'bf16' given twice"),
        ('{"zero_optimization": {"stage": "three"}}', "zero_optimization.stage must be 0, 1, 2 or 3, got 'three'"),
        ('{"zero_optimization": {"stage": 4}}', "zero_optimization.stage must be 0, 1, 2 or 3, got 4"),
        ("[" * 100_000, r"not valid json \(.*\)"),
        (b'{"bf16": "\xe9t\xe9"}', r"bad\.json:1: not UTF-8 \(byte 0xe9\)"),
    ):
        bad = tmp_path / "bad.json"
        bad.write_bytes(text if isinstance(text, bytes) else text.encode())
        with pytest.raises(ConfigError, match=message):
            zero.engine_config(FinetuneConfig(deepspeed=bad, batch_size=2, global_batch=8), 2)
    with pytest.raises(ConfigError, match="cannot read it"):
        zero.engine_config(FinetuneConfig(deepspeed=tmp_path / "none.json"), 1)
    for settings_ in ({"fsdp": True, "method": "full"}, {"objective": "dpo"}, {"merge": True}):
        with pytest.raises(ConfigError, match="--deepspeed"):
            zero.check(FinetuneConfig(deepspeed=path, **settings_))


def test_a_deepspeed_run_records_what_of_its_file_decides_the_weights(tmp_path: Path) -> None:
    from medcouncil.serving.training import zero
    from medcouncil.serving.training.card import RunCard

    path = tmp_path / "ds.json"
    path.write_text('{"zero_optimization": {"stage": 3, "offload_optimizer": {"device": "cpu"}}}')
    config = FinetuneConfig(deepspeed=path, batch_size=2, global_batch=4)
    recorded = zero.weight_settings(zero.engine_config(config, 2))
    assert recorded == {"gradient_clipping": 0.0, "zero": {"stage": 3}}
    path.write_text(  # where states live, and a precision section switched off, do not change a step
        '{"zero_optimization": {"stage": 3, "offload_optimizer": {"device": "none"}}, "fp16": {"enabled": false}}'
    )
    assert zero.weight_settings(zero.engine_config(config, 2)) == recorded
    path.write_text(
        '{"zero_optimization": {"stage": 2, "zero_quantized_gradients": true}, "gradient_clipping": 1.0, '
        '"bf16": {"enabled": true}}'
    )
    edited = zero.weight_settings(zero.engine_config(config, 2))

    def card(fields: dict[str, Any], deepspeed: bool = True) -> RunCard:
        return RunCard.model_construct(config_fields=fields, config={"deepspeed": "ds.json" if deepspeed else None})

    run = card({"lr": 1e-4, "deepspeed": edited})
    assert run.changed_settings(card({"lr": 1e-4, "deepspeed": recorded})) == [
        "deepspeed.bf16",
        "deepspeed.gradient_clipping",
        "deepspeed.zero.stage",
        "deepspeed.zero.zero_quantized_gradients",
    ]
    assert run.changed_settings(card({"lr": 1e-4})) == []  # a DeepSpeed run written before the record
    assert run.changed_settings(card({"lr": 1e-4}, deepspeed=False)) == ["deepspeed"]  # a run without DeepSpeed
    assert run.changed_settings(card({"lr": 2e-4, "deepspeed": edited})) == ["lr"]
    plain = card({"lr": 1e-4}, deepspeed=False)
    assert plain.changed_settings(card({"lr": 1e-4, "data_dir": "x"}, deepspeed=False)) == []  # a retired field


# --- real processes -------------------------------------------------------------------------------------------


def _launch(processes: int, args: list[str]) -> subprocess.CompletedProcess[str]:
    """``medcouncil finetune ARGS`` as a user runs it: alone, or under torchrun with ``processes`` CPU processes."""
    module = ["-m", "medcouncil.scenarios.cli", "finetune", *args]
    if processes == 1:
        command = [sys.executable, *module]
    else:
        torchrun = str(Path(sys.executable).with_name("torchrun"))
        command = [torchrun, "--standalone", f"--nproc-per-node={processes}", *module]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def _finetune(out: Path, processes: int, *args: str) -> subprocess.CompletedProcess[str]:
    return _launch(processes, [*args, "--threads", "1", "--eval-every", "100", "--out", str(out)])


def _curve(out: Path) -> tuple[list[float], list[float], int]:
    card = json.loads((out / "run.json").read_text())
    return [s["loss"] for s in card["steps"]], [e["loss"] for e in card["evals"]], card["processes"]


def _assert_same_weights(
    a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], tolerance: float = WEIGHT_TOLERANCE
) -> None:
    assert set(a) == set(b) and a
    worst = max(float((a[k].float() - b[k].float()).abs().max()) for k in a)
    assert worst <= tolerance, f"weights differ by {worst}"


def _assert_same_curve(one: Path, two: Path) -> None:
    (loss_1, eval_1, n_1), (loss_2, eval_2, n_2) = _curve(one), _curve(two)
    assert (n_1, n_2) == (1, 2) and len(loss_1) == len(loss_2) >= 2
    assert max(abs(a - b) for a, b in zip(loss_1, loss_2, strict=True)) <= LOSS_TOLERANCE, (loss_1, loss_2)
    assert max(abs(a - b) for a, b in zip(eval_1, eval_2, strict=True)) <= LOSS_TOLERANCE
    assert loss_1[0] != loss_1[-1]  # it trained


@pytest.mark.integration
@pytest.mark.skipif(not MEDQA.exists(), reason=f"shared data not found at {MEDQA}")
def test_two_processes_train_the_lora_of_one_and_resume_across_world_sizes(tmp_path: Path) -> None:
    data = ["--data", str(MEDQA), "--limit", "16", "--max-steps", "3", "--batch-size", "2", "--max-seq-len", "128"]
    one, two = tmp_path / "one", tmp_path / "two"
    _finetune(one, 1, *data, "--grad-accum", "2", "--save-every", "2")  # dropout on (LoRA's 0.05)
    done = _finetune(two, 2, *data, "--global-batch", "4")
    _assert_same_curve(one, two)
    _assert_same_weights(load_file(one / "adapter_model.safetensors"), load_file(two / "adapter_model.safetensors"))
    # rank 0 alone speaks and writes: one summary, one checkpoint, no partial folder
    assert done.stdout.count("Trained lora on 15 examples") == 1, done.stdout
    assert [p.name for p in (two / checkpoint.CHECKPOINTS).iterdir()] == ["step-000003"]

    # the 1-process run's step-2 checkpoint, resumed by 2 processes: its 2 micro-batches per step shared 1 + 1
    resumed = tmp_path / "resumed"
    shutil.copytree(one / checkpoint.CHECKPOINTS / "step-000002", resumed / checkpoint.CHECKPOINTS / "step-000002")
    _launch(2, ["--resume", str(resumed), "--threads", "1"])
    card: dict[str, Any] = json.loads((resumed / "run.json").read_text())
    assert card["processes"] == 2 and len(card["steps"]) == 3 and card["resumed_from"]
    assert card["config_fields"]["grad_accum"] == 2  # the run's 2 micro-batches per step, kept
    assert abs(card["steps"][-1]["loss"] - _curve(one)[0][-1]) <= LOSS_TOLERANCE
    _assert_same_weights(load_file(one / "adapter_model.safetensors"), load_file(resumed / "adapter_model.safetensors"))


def _tiny_gemma(folder: Path) -> Path:
    """A 2-layer Gemma 3 of random weights with the embedded model's tokenizer: FSDP's sharding, gathering and
    checkpoints on a full fine-tune in seconds (the 270M's full runs are the benchmark's)."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from medcouncil.serving.training.model import resolve_base

    base = resolve_base(None).folder
    config = AutoConfig.from_pretrained(base)
    config.num_hidden_layers, config.hidden_size, config.intermediate_size = 2, 64, 128
    config.num_attention_heads, config.num_key_value_heads, config.head_dim = 2, 1, 32
    config.layer_types = config.layer_types[:2]
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(folder)  # type: ignore[no-untyped-call]
    AutoTokenizer.from_pretrained(base).save_pretrained(folder)
    return folder


TINY_ARGS = ["--method", "full", "--data", str(MEDQA), "--limit", "12", "--max-steps", "3", "--batch-size", "2"]
TINY_ARGS += ["--global-batch", "4", "--max-seq-len", "96", "--lr", "1e-3", "--save-every", "2"]


@pytest.fixture(scope="module")
def tiny_reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(the tiny model, its full fine-tune on one process without sharding)."""
    if not MEDQA.exists():
        pytest.skip(f"shared data not found at {MEDQA}")
    folder = tmp_path_factory.mktemp("tiny")
    base = _tiny_gemma(folder / "model")
    _finetune(folder / "one", 1, "--base", str(base), *TINY_ARGS)
    return base, folder / "one"


def _resume_step_2(run: Path, into: Path, processes: int) -> None:
    shutil.copytree(run / checkpoint.CHECKPOINTS / "step-000002", into / checkpoint.CHECKPOINTS / "step-000002")
    _launch(processes, ["--resume", str(into), "--threads", "1"])


@pytest.mark.integration
def test_fsdp_on_two_processes_trains_the_full_model_of_one(tiny_reference: tuple[Path, Path], tmp_path: Path) -> None:
    base, one = tiny_reference
    two = tmp_path / "two"
    done = _finetune(two, 2, "--base", str(base), *TINY_ARGS, "--fsdp")
    _assert_same_curve(one, two)
    _assert_same_weights(load_file(one / "model.safetensors"), load_file(two / "model.safetensors"))
    assert json.loads((two / "run.json").read_text())["config"]["fsdp"] is True
    assert done.stdout.count("Trained full on") == 1
    # the sharded run's step-2 checkpoint (gathered whole, keyed by name) resumes on one process
    tensors, _ = checkpoint.load(two / checkpoint.CHECKPOINTS / "step-000002")
    assert checkpoint.OPTIMIZER_BY_NAME in tensors and "optimizer" not in tensors
    assert tensors["model"]["model.layers.0.mlp.up_proj.weight"].shape == (128, 64)  # whole, not a shard
    _resume_step_2(two, tmp_path / "resumed", 1)
    _assert_same_weights(load_file(one / "model.safetensors"), load_file(tmp_path / "resumed" / "model.safetensors"))


@pytest.mark.integration
def test_deepspeed_zero3_on_two_processes_trains_the_full_model_of_one(
    tiny_reference: tuple[Path, Path], tmp_path: Path
) -> None:
    base, one = tiny_reference
    config = tmp_path / "ds.json"
    config.write_text(  # the README's example: stage 3, optimizer states offloaded to the CPU
        '{"zero_optimization": {"stage": 3, "offload_optimizer": {"device": "cpu"}, "overlap_comm": true}, '
        '"train_micro_batch_size_per_gpu": "auto"}'
    )
    two = tmp_path / "two"
    _finetune(two, 2, "--base", str(base), *TINY_ARGS, "--deepspeed", str(config))
    _assert_same_curve(one, two)
    _assert_same_weights(  # ZeRO's reduce-scatter sums in its own order
        load_file(one / "model.safetensors"), load_file(two / "model.safetensors"), DEEPSPEED_WEIGHT_TOLERANCE
    )
    step_2 = two / checkpoint.CHECKPOINTS / "step-000002"
    assert sorted(p.name for p in step_2.iterdir()) == ["deepspeed", "state.json", "training.pt"]
    # ZeRO's optimizer shards resume on the same number of processes; another is refused in one line
    _resume_step_2(two, tmp_path / "resumed", 2)
    resumed = load_file(tmp_path / "resumed" / "model.safetensors")
    _assert_same_weights(load_file(one / "model.safetensors"), resumed, DEEPSPEED_WEIGHT_TOLERANCE)
    shutil.copytree(step_2, tmp_path / "other" / checkpoint.CHECKPOINTS / "step-000002")
    refused = subprocess.run(
        [sys.executable, "-m", "medcouncil.scenarios.cli", "finetune", "--resume", str(tmp_path / "other")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert refused.returncode == 1 and "optimizer shards of 2 processes: resume it on 2" in refused.stderr
    assert "Traceback" not in refused.stderr
    config.write_text(json.dumps({**json.loads(config.read_text()), "gradient_clipping": 1.0}))
    torchrun = str(Path(sys.executable).with_name("torchrun"))
    edited = subprocess.run(  # the file is read again on a resume: an edit that changes the steps is refused
        [torchrun, "--standalone", "--nproc-per-node=2", *RESUME, str(tmp_path / "other"), "--threads", "1"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert edited.returncode != 0 and "other settings (deepspeed.gradient_clipping)" in edited.stderr


@pytest.mark.integration
def test_ctrl_c_stops_every_process_after_the_same_step_with_a_checkpoint(
    tiny_reference: tuple[Path, Path], tmp_path: Path
) -> None:
    """torchrun passes SIGINT to every worker: under FSDP a rank that stopped where the signal found it would wait
    in a barrier while another waits in a layer's all-gather. They agree on a step, save it and stop."""
    import re
    import signal
    import time

    base, _ = tiny_reference
    out = tmp_path / "run"
    args = ["--base", str(base), "--method", "full", "--data", str(MEDQA), "--limit", "64", "--max-steps", "500"]
    args += ["--batch-size", "2", "--global-batch", "4", "--max-seq-len", "96", "--save-every", "2", "--fsdp"]
    torchrun = str(Path(sys.executable).with_name("torchrun"))
    command = [torchrun, "--standalone", "--nproc-per-node=2", "-m", "medcouncil.scenarios.cli", "finetune"]
    run = subprocess.Popen(
        [*command, *args, "--threads", "1", "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 300
    while checkpoint.latest(out) is None and time.monotonic() < deadline and run.poll() is None:
        time.sleep(0.5)
    assert run.poll() is None, "the run ended before it could be interrupted"
    run.send_signal(signal.SIGINT)
    stdout, stderr = run.communicate(timeout=240)  # a hang would end here, in torchrun's SIGKILL or the timeout
    stopped = {int(n) for n in re.findall(r"interrupted after step (\d+) of 500", stdout + stderr)}
    assert len(stopped) == 1, stdout + stderr[-3000:]  # both ranks, the same step
    latest = checkpoint.latest(out)
    assert latest is not None and latest.name == f"step-{stopped.pop():06d}"
    tensors, progress = checkpoint.load(latest)
    assert checkpoint.OPTIMIZER_BY_NAME in tensors and len(progress["card"]["steps"]) == progress["step"]

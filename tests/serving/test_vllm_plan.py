"""vLLM at its sizes: impossible combinations refused while the config is read (before any engine starts), the
model's own config.json checked, and ``serve --dry-run`` printing the README's single-node and multi-node
deployments, whose vLLM command lines vLLM's own argument parser accepts (CI: vllm-cpu)."""

from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path

import pytest

from medcouncil.serving.common.errors import ConfigError
from medcouncil.serving.config import EngineConfig
from medcouncil.serving.vllm_plan import check_model, plan, size_args
from tests.serving.test_vllm_engine import REQUIRED, VLLM_PYTHON, vllm_importable


def load(**fields: object) -> EngineConfig:
    return EngineConfig.load(None, **fields)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"tensor_parallel_size": 2}, "tensor_parallel_size: vLLM settings; llama.cpp serves from one process"),
        ({"engine": "vllm", "nodes": 2, "distributed_executor_backend": "mp", "tensor_parallel_size": 2},
         "nodes > 1 needs distributed_executor_backend ray"),
        ({"engine": "vllm", "tensor_parallel_size": 8, "pipeline_parallel_size": 2, "nodes": 2, "gpus_per_node": 4},
         "= 16 GPUs, but 2 node.s. x 4 GPUs have 8"),
        ({"engine": "vllm", "nodes": 3, "tensor_parallel_size": 2}, "3 nodes but the sizes use 2 GPU.s.: 2 node"),
        ({"engine": "vllm", "nodes": 2, "tensor_parallel_size": 8, "gpus_per_node": 8}, "2 nodes but the sizes use 8"),
        ({"engine": "vllm", "lora": ["a=/x"], "max_lora_rank": 48}, "max_lora_rank 48: vLLM accepts 1, 8, 16"),
        ({"engine": "vllm", "lora": ["a=/x"], "max_loras": 4, "max_cpu_loras": 2}, "max_cpu_loras 2 is below"),
        ({"engine": "vllm", "tensor_parallel_size": 0}, "tensor_parallel_size: Input should be greater than"),
        ({"engine": "vllm", "max_loras": 2, "max_lora_rank": 64}, "max_lora_rank, max_loras: LoRA limits without an"),
        ({"engine": "vllm", "extra_args": ["--host", "0.0.0.0", "--api-key=k"]}, "extra_args --api-key, --host: medc"),
        ({"engine": "vllm", "extra_args": ["--api_key", "k", "--hos", "0.0.0.0"]}, "extra_args --api_key, --hos: med"),
        ({"engine": "vllm", "extra_args": ["--config", "vllm.yaml"]}, "extra_args --config: medcouncil sets"),
    ],
)  # fmt: skip
def test_impossible_combinations_are_refused_when_the_config_is_read(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load(**fields)


def test_a_yaml_config_is_checked_the_same_way_and_named(tmp_path: Path) -> None:
    path = tmp_path / "engine.yaml"
    path.write_text("engine: vllm\ntensor_parallel_size: 4\ngpus_per_node: 2\n")
    with pytest.raises(ConfigError, match=r"engine\.yaml: .*= 4 GPUs, but 1 node\(s\) x 2 GPUs have 2"):
        EngineConfig.load(path)
    assert EngineConfig.load(path, gpus_per_node=4).tensor_parallel_size == 4  # a flag overrides the file


def test_the_models_config_decides_heads_layers_and_context(tmp_path: Path) -> None:
    model = tmp_path / "medgemma"
    model.mkdir()
    # A multimodal config nests the language model's numbers (Gemma 3 4B and up, MedGemma).
    text: dict[str, object] = {"num_attention_heads": 32, "num_hidden_layers": 62, "max_position_embeddings": 131072}
    (model / "config.json").write_text(json.dumps({"model_type": "gemma3", "text_config": text}))
    check_model(load(engine="vllm", tensor_parallel_size=8, pipeline_parallel_size=2, gpus_per_node=16), model)
    with pytest.raises(ConfigError, match=r"config\.json: 32 attention heads do not split over .* 3"):
        check_model(load(engine="vllm", tensor_parallel_size=3, gpus_per_node=4), model)
    with pytest.raises(ConfigError, match="62 layers cannot make 64 pipeline stages"):
        check_model(load(engine="vllm", pipeline_parallel_size=64, gpus_per_node=64), model)
    with pytest.raises(ConfigError, match="max_model_len 200000 is above the model's 131072"):
        check_model(load(engine="vllm", max_model_len=200000), model)
    text["rope_scaling"] = {"rope_type": "yarn", "factor": 2.0}  # a stretched context is the model's too
    (model / "config.json").write_text(json.dumps({"model_type": "gemma3", "text_config": text}))
    check_model(load(engine="vllm", max_model_len=200000), model)
    check_model(load(engine="vllm", tensor_parallel_size=3, gpus_per_node=4), None)  # a hub id: nothing local


def test_size_flags_and_the_cluster_plan() -> None:
    one = load(engine="vllm")
    assert size_args(one) == [] and [s.where for s in plan(one, ["vllm"])] == ["this host"]
    cluster = load(engine="vllm", tensor_parallel_size=8, pipeline_parallel_size=2, nodes=2, gpus_per_node=8)
    assert size_args(cluster) == [
        "--tensor-parallel-size", "8", "--pipeline-parallel-size", "2", "--distributed-executor-backend", "ray",
    ]  # fmt: skip
    steps = plan(cluster, ["vllm", "serve"])
    assert [s.line() for s in steps[:2]] == [
        "ray start --head --port=6379 --num-gpus=8",
        "ray start --address=HEAD_IP:6379 --num-gpus=8",
    ]
    assert steps[2].where.startswith("the head node") and steps[2].command == ["vllm", "serve"]
    replicas = load(engine="vllm", tensor_parallel_size=4, data_parallel_size=2, nodes=2, gpus_per_node=4)
    assert size_args(replicas)[-2:] == ["--data-parallel-backend", "ray"]
    limits = load(engine="vllm", model="/m", max_loras=2, extra_args=["--enable-lora"])  # adapters loaded later
    assert "--max-loras" in limits.command(8000, None, Path("."))
    with pytest.raises(ConfigError, match="max_loras: LoRA limits without an adapter"):  # as the README says
        load(engine="vllm", model="/m", max_loras=2)
    keyed = load(engine="vllm", api_key="s3cret")
    assert plan(keyed, ["x"])[0].environment == ["VLLM_API_KEY"] and "s3cret" not in plan(keyed, ["x"])[0].line()


def dry_run(cli: list[str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*cli, "serve", "--engine", "vllm", "--dry-run", "--python", VLLM_PYTHON, *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def engine_lines(output: str) -> list[list[str]]:
    return [shlex.split(line) for line in output.splitlines() if "vllm.entrypoints" in line]


PARSE = """
import json, sys
try:
    from vllm.entrypoints.launchers.cli_args import make_arg_parser
except ImportError:
    from vllm.entrypoints.openai.cli_args import make_arg_parser
try:
    from vllm.utils.argparse_utils import FlexibleArgumentParser
except ImportError:
    from vllm.utils import FlexibleArgumentParser
parser = make_arg_parser(FlexibleArgumentParser())
for argv in json.loads(sys.stdin.read()):
    args = parser.parse_args(argv)
    print(args.tensor_parallel_size, args.pipeline_parallel_size, args.data_parallel_size,
          args.distributed_executor_backend, args.max_loras, args.max_lora_rank)
"""


@pytest.mark.skipif(
    not REQUIRED and not vllm_importable(VLLM_PYTHON),
    reason=f"vllm is not importable by {VLLM_PYTHON}; set MEDCOUNCIL_VLLM_PYTHON to a venv with vllm-cpu (README)",
)
def test_the_readme_deployments_print_command_lines_vllm_accepts(cli: list[str], tmp_path: Path) -> None:
    adapter = tmp_path / "ko-adapter"
    adapter.mkdir()
    single = dry_run(cli, "--model", "google/medgemma-27b-text-it", "-tp", "4", "--gpus-per-node", "4",
                     "--max-model-len", "8192", "--gpu-memory-utilization", "0.9",
                     "--lora", f"ko={adapter}", "--max-loras", "2", "--max-lora-rank", "64")  # fmt: skip
    assert single.returncode == 0, single.stderr
    assert "# vLLM: tensor 4 x pipeline 1 x data 1 = 4 GPU(s) on 1 node(s)" in single.stdout
    multi = dry_run(cli, "--model", "google/medgemma-27b-text-it", "-tp", "8", "-pp", "2", "--nodes", "2",
                    "--gpus-per-node", "8")  # fmt: skip
    assert multi.returncode == 0, multi.stderr
    assert "ray start --head --port=6379 --num-gpus=8" in multi.stdout
    assert "ray start --address=HEAD_IP:6379 --num-gpus=8" in multi.stdout
    lines = engine_lines(single.stdout) + engine_lines(multi.stdout)
    assert len(lines) == 2 and all(
        line[:3] == [VLLM_PYTHON, "-m", "vllm.entrypoints.openai.api_server"] for line in lines
    )
    parsed = subprocess.run(
        [VLLM_PYTHON, "-c", PARSE], input=json.dumps([line[3:] for line in lines]),
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert parsed.returncode == 0, parsed.stderr[-2000:]
    assert parsed.stdout.split("\n")[:2] == ["4 1 1 None 2 64", "8 2 1 ray 1 16"]
    llama = subprocess.run([*cli, "serve", "--dry-run"], capture_output=True, text=True, timeout=60)
    assert llama.returncode == 1 and "--dry-run plans a vLLM deployment" in llama.stderr

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from medcouncil.serving.common.errors import ConfigError, ModelPathError
from medcouncil.serving.config import GEMMA_TEMPLATE, HOST, EngineConfig, layout_clash


def flag(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


def server_config(command: list[str]) -> dict[str, Any]:
    path = Path(flag(command, "--config_file"))
    assert path.stat().st_mode & 0o077 == 0, "the server config may hold the API key: owner-only"
    settings: dict[str, Any] = json.loads(path.read_text())
    return settings


def test_llamacpp_command_binds_loopback_with_gemma_template(tmp_path: Path) -> None:
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"x")
    config = EngineConfig(model=str(gguf), threads=3, max_model_len=2048, extra_args=["--n_batch", "256"])
    command = config.command(8123, gguf, tmp_path)
    assert command[1:3] == ["-m", "medcouncil.serving.llama_engine"]
    assert "--extra-buffers" not in command  # off unless asked for (AMX CPUs crash: llama.cpp #20824)
    settings = server_config(command)
    assert settings["host"] == HOST == "127.0.0.1"
    assert settings["port"] == 8123
    [model] = settings["models"]
    assert model["n_ctx"] == 2048 and model["n_threads"] == 3 and model["model_alias"] == "m"
    assert model["n_threads_batch"] == 3  # prompt processing too (llama-cpp-python's default: every core)
    assert model["n_batch"] == "256"  # extra_args reach the model settings
    # Not the built-in "gemma" format, which drops system messages.
    assert model["chat_format"] == "hf-tokenizer-config"
    rendered = json.loads(Path(model["hf_tokenizer_config_path"]).read_text())
    assert rendered["chat_template"] == GEMMA_TEMPLATE.read_text()
    assert rendered["eos_token"] == "<end_of_turn>"
    assert "api_key" not in settings
    assert settings["interrupt_requests"] is False  # a second request waits: it does not cut a running stream
    default = server_config(EngineConfig().command(8124, gguf, tmp_path))
    assert default["models"][0]["n_threads"] == os.cpu_count()
    shared = server_config(EngineConfig(replicas=2).command(8126, gguf, tmp_path))["models"][0]
    assert shared["n_threads"] == shared["n_threads_batch"] == max(1, (os.cpu_count() or 1) // 2)
    with pytest.raises(ConfigError, match="pairs"):
        EngineConfig(extra_args=["--n_batch"]).command(8125, gguf, tmp_path)


def test_llamacpp_serves_each_adapter_as_a_model_name_and_keeps_the_key_off_argv(tmp_path: Path) -> None:
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"x")
    lora = tmp_path / "med.gguf"
    config = EngineConfig(model=str(gguf), api_key="s3cret")
    command = config.command(8126, gguf, tmp_path, {"med": lora})
    assert not any("s3cret" in part for part in command)
    settings = server_config(command)
    assert settings["api_key"] == "s3cret"
    base, adapter = settings["models"]
    assert base["model_alias"] == "m" and "lora_path" not in base
    assert adapter["model_alias"] == "med" and adapter["lora_path"] == str(lora) and adapter["model"] == str(gguf)


def test_vllm_command_has_prefix_caching_lora_and_template(tmp_path: Path) -> None:
    model = tmp_path / "medgemma"
    model.mkdir()
    adapter = tmp_path / "ko-adapter"
    adapter.mkdir()
    config = EngineConfig.model_validate(  # adapters as the CLI gives them: NAME=PATH
        {
            "engine": "vllm",
            "model": str(model),
            "lora": [f"ko={adapter}"],
            "max_model_len": 4096,
            "served_model_name": "medgemma-ko",
            "chat_template": GEMMA_TEMPLATE,
            "api_key": "secret",
            "python": "/opt/vllm/bin/python",
            "gpu_memory_utilization": 0.3,
        }
    )
    config.check_paths()
    converted = tmp_path / "converted-hf"
    assert flag(config.command(9000, converted, tmp_path), "--model") == str(converted)
    command = config.command(9000, None, tmp_path)
    assert flag(command, "--model") == str(model)
    assert command[:3] == ["/opt/vllm/bin/python", "-m", "vllm.entrypoints.openai.api_server"]
    assert flag(command, "--host") == "127.0.0.1"
    assert flag(command, "--port") == "9000"
    assert flag(command, "--served-model-name") == "medgemma-ko"
    assert flag(command, "--max-model-len") == "4096"
    assert flag(command, "--chat-template") == str(GEMMA_TEMPLATE)
    assert "--enable-prefix-caching" in command
    assert "--enable-lora" in command
    assert flag(command, "--lora-modules") == f"ko={adapter}"
    assert "secret" not in command and config.environment() == {"VLLM_API_KEY": "secret"}
    assert flag(command, "--gpu-memory-utilization") == "0.3"


def test_yaml_file_then_flags_override(tmp_path: Path) -> None:
    path = tmp_path / "engine.yaml"
    path.write_text("engine: vllm\nmodel: google/medgemma-4b-it\nmax_model_len: 8192\nport: 8001\n")
    config = EngineConfig.load(path, port=8002, served_model_name=None)
    assert config.engine == "vllm"
    assert config.max_model_len == 8192  # from the file
    assert config.port == 8002  # the flag wins
    assert config.display_name() == "medgemma-4b-it"


def test_a_reused_server_must_not_contradict_what_serve_asks_for(tmp_path: Path) -> None:
    running = EngineConfig(engine="vllm", tensor_parallel_size=2, max_model_len=8192).layout()
    assert running["tensor_parallel_size"] == 2 and running["chat_template"] is None
    plain = EngineConfig.load(None, engine="vllm", tensor_parallel_size=None)  # no layout flag: any server will do
    assert plain.layout(asked_only=True) == {} and layout_clash(running, plain.layout(asked_only=True)) == []
    path = tmp_path / "engine.yaml"
    path.write_text("engine: vllm\ntensor_parallel_size: 2\n")  # the file asks what runs: no clash
    assert layout_clash(running, EngineConfig.load(path).layout(asked_only=True)) == []
    asked = EngineConfig.load(path, tensor_parallel_size=4, data_parallel_size=2, chat_template=tmp_path / "t.jinja")
    assert layout_clash(running, asked.layout(asked_only=True)) == [
        "tensor_parallel_size 2 (asked 4)",
        "data_parallel_size 1 (asked 2)",
        f"chat_template default (asked {tmp_path / 't.jinja'})",
    ]
    assert layout_clash(running, EngineConfig.load(None, threads=1).layout(asked_only=True)) == [
        "threads default (asked 1)"
    ]
    assert layout_clash({}, asked.layout(asked_only=True)) == []  # recorded before layouts were: nothing to hold
    two = EngineConfig.load(None, replicas=2).layout(asked_only=True)
    assert layout_clash({}, two, engines=1) == ["replicas 1 (asked 2)"]  # ... but its number of engines
    assert layout_clash({}, two, engines=2) == []
    cores = os.cpu_count() or 1
    started = EngineConfig(replicas=2).layout()  # llama.cpp records the threads it runs with
    assert started["threads"] == max(1, cores // 2)
    assert layout_clash(started, EngineConfig.load(None, threads=max(1, cores // 2)).layout(asked_only=True)) == []


def test_replicas_share_out_the_cores_and_are_llamacpp_only() -> None:
    assert EngineConfig(replicas=2, threads=3).resolved_threads() == 3  # threads given: each replica's
    cores = os.cpu_count() or 1
    assert EngineConfig(replicas=2).resolved_threads() == max(1, cores // 2)
    assert EngineConfig(replicas=2).layout()["replicas"] == 2
    with pytest.raises(ConfigError, match="vLLM serves replicas behind one endpoint: use --data-parallel-size"):
        EngineConfig.load(None, engine="vllm", replicas=2)
    with pytest.raises(ConfigError, match="3 replicas from port 65534 run past port 65535"):
        EngineConfig.load(None, replicas=3, port=65534)


def test_yaml_errors_name_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "engine.yaml"
    path.write_text("engine: vllm\nmodel: [unclosed\n")
    with pytest.raises(ConfigError, match=r"engine\.yaml:\d+: invalid YAML"):
        EngineConfig.load(path)
    path.write_text("engine: tensorrt\n")
    with pytest.raises(ConfigError, match=r"engine\.yaml: engine"):
        EngineConfig.load(path)
    path.write_text("enigne: vllm\n")
    with pytest.raises(ConfigError, match="enigne"):
        EngineConfig.load(path)
    with pytest.raises(ConfigError, match="not found"):
        EngineConfig.load(tmp_path / "missing.yaml")


def test_missing_paths_are_reported_before_launch(tmp_path: Path) -> None:
    with pytest.raises(ModelPathError, match=r"model file not found: /nope/model\.gguf"):
        EngineConfig(model="/nope/model.gguf").check_paths()
    with pytest.raises(ModelPathError, match=r"model path not found: \./missing-folder"):
        EngineConfig(engine="vllm", model="./missing-folder").check_paths()
    with pytest.raises(ModelPathError, match="LoRA adapter 'ko' not found"):
        EngineConfig(engine="vllm", model="google/medgemma-4b-it", lora={"ko": Path("/nope/adapter")}).check_paths()
    with pytest.raises(ModelPathError, match="LoRA adapter 'ko' not found"):
        EngineConfig(lora={"ko": Path("/nope/adapter")}).check_paths()
    EngineConfig(engine="vllm").check_paths()  # the embedded GGUF, converted at start-up
    with pytest.raises(ModelPathError, match=r"model path not found: /nope/x\.gguf"):
        EngineConfig(engine="vllm", model="/nope/x.gguf").check_paths()
    # A hub id is not a local path: vLLM resolves it.
    EngineConfig(engine="vllm", model="Qwen/Qwen2.5-0.5B").check_paths()


def test_lora_must_be_name_equals_path() -> None:
    with pytest.raises(ValueError, match="NAME=PATH"):
        EngineConfig.model_validate({"engine": "vllm", "model": "m/x", "lora": ["just-a-path"]})

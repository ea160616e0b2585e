"""``medcouncil serve`` and ``medcouncil ask`` driven as a user would, on the real embedded server."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from medcouncil.serving.common.paths import state_dir
from medcouncil.serving.state import EXIT_WAIT_S, ServerState, read_state, state_path

pytestmark = pytest.mark.integration


def medcouncil(cli: list[str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*cli, *args], capture_output=True, text=True, timeout=timeout, env={**os.environ, "COLUMNS": "200"}
    )


def engines_under_home() -> list[int]:
    """Engine processes started from this test session's MEDCOUNCIL_HOME."""
    home = os.environ["MEDCOUNCIL_HOME"]
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if cmdline.split()[1:3] == ["-m", "medcouncil.serving.llama_engine"] and home in cmdline:
            found.append(int(proc.name))
    return found


def assert_one_line_error(result: subprocess.CompletedProcess[str], pattern: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout
    assert re.search(pattern, result.stderr.splitlines()[0]), result.stderr


@pytest.fixture
def no_server(cli: list[str]) -> Iterator[set[int]]:
    """No recorded server; yields the engines already running (the session's shared server) to leave aside."""
    medcouncil(cli, "serve", "--stop")
    yield set(engines_under_home())
    medcouncil(cli, "serve", "--stop")


def test_detach_status_reuse_stop(cli: list[str], no_server: set[int], tmp_path: Path) -> None:
    started = medcouncil(cli, "serve", "--detach")
    assert started.returncode == 0, started.stderr
    url = re.search(r"http://127\.0\.0\.1:\d+/v1", started.stdout)
    assert url is not None, started.stdout
    state = read_state()
    assert state is not None and state.base_url == url.group(0) and state.engine == "llamacpp"
    assert state.log_path.exists()

    status = medcouncil(cli, "serve", "--status")
    assert status.returncode == 0 and url.group(0) in status.stdout and "Running" in status.stdout

    again = medcouncil(cli, "serve", "--detach")
    assert again.returncode == 0 and "Reusing" in again.stdout and url.group(0) in again.stdout
    assert set(engines_under_home()) - no_server == {state.engine_pid}
    with_adapter = medcouncil(cli, "serve", "--detach", "--lora", f"med={tmp_path}")
    assert with_adapter.returncode == 1 and "does not serve the adapters ['med']" in with_adapter.stderr
    cores = os.cpu_count() or 1
    other_layout = medcouncil(cli, "serve", "--detach", "--threads", str(cores + 1), "--max-model-len", "2048")
    assert_one_line_error(
        other_layout,
        rf"error: a llamacpp server already runs at {re.escape(url.group(0))} with other settings: "
        rf"max_model_len default \(asked 2048\), threads {cores} \(asked {cores + 1}\)",
    )
    assert medcouncil(cli, "serve", "--detach", "--threads", str(cores)).returncode == 0  # what it runs with
    two = medcouncil(cli, "serve", "--detach", "--replicas", "2")
    assert_one_line_error(two, r"with other settings: replicas 1 \(asked 2\)")

    answer = medcouncil(cli, "ask", "Which organ pumps blood?", "--options", "A=Heart;B=Liver;C=Kidney")
    assert answer.returncode == 0, answer.stderr
    assert "starting the embedded" not in answer.stderr  # reused the detached server
    assert re.search(r"Answer: [ABC]", answer.stdout)

    stopped = medcouncil(cli, "serve", "--stop")
    assert stopped.returncode == 0 and "Stopped" in stopped.stdout
    assert read_state() is None and set(engines_under_home()) == no_server
    assert medcouncil(cli, "serve", "--status").returncode == 1


def test_replicas_serve_as_one_pool_and_a_dead_one_is_dropped(
    cli: list[str], no_server: set[int], tmp_path: Path
) -> None:
    started = medcouncil(cli, "serve", "--detach", "--replicas", "2", "--threads", "1")
    assert started.returncode == 0, started.stderr
    state = read_state()
    assert state is not None and len(state.engines) == 2 and state.layout["replicas"] == 2
    urls = [engine.base_url for engine in state.engines]
    assert f"{urls[0]},{urls[1]}" in started.stdout and "2 replicas" in started.stdout
    assert set(engines_under_home()) - no_server == {engine.engine_pid for engine in state.engines}
    status = medcouncil(cli, "serve", "--status")
    assert status.returncode == 0 and "Running" in status.stdout and urls[1] in status.stdout

    items = tmp_path / "items.jsonl"
    question = {"question": "Which organ pumps blood?", "options": {"A": "Heart", "B": "Liver"}, "answer_idx": "A"}
    items.write_text("".join(json.dumps({**question, "realidx": n}) + "\n" for n in range(2)))
    run = tmp_path / "run"
    bench = medcouncil(cli, "bench", "--dataset", str(items), "--mode", "single", "--no-cache", "--out", str(run))
    assert bench.returncode == 0, bench.stderr
    assert json.loads((run / "run.json").read_text())["config"]["endpoint"] == ",".join(urls)  # used as a pool

    victim = state.replicas[0]
    assert victim.engine_pid is not None
    os.kill(victim.engine_pid, signal.SIGKILL)
    time.sleep(EXIT_WAIT_S)
    status = medcouncil(cli, "serve", "--status")
    assert status.returncode == 0 and urls[1] not in status.stdout, status.stdout
    assert f"replica {urls[1]} of the recorded server is gone" in status.stderr.replace("\n", " ")
    answer = medcouncil(cli, "ask", "Which organ pumps blood?", "--options", "A=Heart;B=Liver")
    assert answer.returncode == 0 and "starting the embedded" not in answer.stderr, answer.stderr

    stopped = medcouncil(cli, "serve", "--stop")
    assert stopped.returncode == 0 and read_state() is None and set(engines_under_home()) == no_server


def test_a_corrupted_state_file_neither_orphans_nor_doubles_the_server(cli: list[str], no_server: set[int]) -> None:
    started = medcouncil(cli, "serve", "--detach")
    assert started.returncode == 0, started.stderr
    state = read_state()
    assert state is not None
    state_path().write_bytes(b"\xff{ corrupted")

    status = medcouncil(cli, "serve", "--status")
    assert status.returncode == 0 and "Running" in status.stdout and state.base_url in status.stdout, status.stderr
    assert "server.json is unreadable" in status.stderr and "recorded it again" in status.stderr.replace("\n", " ")
    kept = list(state_path().parent.glob("server.json.unreadable-*"))
    assert len(kept) == 1 and kept[0].read_bytes() == b"\xff{ corrupted"  # the evidence is kept, not deleted

    state_path().write_text("[]")  # corrupted again: --detach reuses the engine, never starts a second one
    again = medcouncil(cli, "serve", "--detach")
    assert again.returncode == 0 and "Reusing" in again.stdout and state.base_url in again.stdout, again.stderr
    assert set(engines_under_home()) - no_server == {state.engine_pid}
    other_port = medcouncil(cli, "serve", "--detach", "--port", str(state.port + 1))
    assert_one_line_error(
        other_port,
        rf"error: a llamacpp server already runs at {re.escape(state.base_url)}, "
        rf"not on port {state.port + 1}",
    )

    stopped = medcouncil(cli, "serve", "--stop")
    assert stopped.returncode == 0 and "Stopped" in stopped.stdout
    assert read_state() is None and set(engines_under_home()) == no_server


def test_ask_autostarts_and_stops_the_embedded_server(cli: list[str], no_server: set[int]) -> None:
    result = medcouncil(cli, "ask", "Name one symptom of asthma.", "--max-tokens", "12", "--no-cache")
    assert result.returncode == 0, result.stderr
    assert "starting the embedded Gemma 3 270M" in result.stderr
    assert result.stdout.strip()
    assert re.search(r"gemma-3-270m · \d+ prompt \+ \d+ completion tokens", result.stdout)
    assert read_state() is None
    assert set(engines_under_home()) == no_server


def test_port_in_use(cli: list[str], no_server: None) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = medcouncil(cli, "serve", "--detach", "--port", str(port))
    assert_one_line_error(result, rf"error: port {port} on 127\.0\.0\.1 is already in use")


def test_endpoint_unreachable(cli: list[str]) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = medcouncil(cli, "ask", "hi", "--endpoint", f"http://127.0.0.1:{port}/v1")
    assert_one_line_error(result, rf"error: endpoint unreachable: http://127\.0\.0\.1:{port}/v1/models")


def test_missing_model_and_adapter_paths(cli: list[str], tmp_path: Path) -> None:
    result = medcouncil(cli, "serve", "--model", "/nope/model.gguf")
    assert_one_line_error(result, r"error: model file not found: /nope/model\.gguf")
    result = medcouncil(cli, "serve", "--engine", "vllm", "--model", str(tmp_path), "--lora", "ko=/nope/adapter")
    assert_one_line_error(result, r"error: LoRA adapter 'ko' not found: /nope/adapter")


def test_server_dying_during_startup_shows_its_log(cli: list[str], tmp_path: Path, no_server: set[int]) -> None:
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\0" * 64)
    result = medcouncil(cli, "serve", "--model", str(broken), "--detach")
    assert_one_line_error(result, r"error: llamacpp server exited with code \d+ \(log: .*\.log\)")
    assert len(result.stderr.strip().splitlines()) > 1  # the log's tail follows the one-line message
    assert read_state() is None and set(engines_under_home()) == no_server


def test_corrupt_gguf_is_reassembled_on_serve(cli: list[str], no_server: None) -> None:
    from medcouncil.serving.model_file import embedded_gguf

    gguf = embedded_gguf()
    head = gguf.read_bytes()[:4096]
    gguf.unlink()  # a new inode: the session's running server keeps its mapped copy
    gguf.write_bytes(head)
    result = medcouncil(cli, "serve", "--detach")
    assert result.returncode == 0, result.stderr
    assert "sha256 mismatch" in result.stderr
    assert gguf.stat().st_size > 100_000_000


def test_status_without_server(cli: list[str], no_server: None) -> None:
    result = medcouncil(cli, "serve", "--status")
    assert result.returncode == 1 and "No medcouncil server is running" in result.stdout
    assert not (state_dir() / "server.json").exists()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_foreground_serve_stops_its_engine_on_interrupt(cli: list[str], no_server: set[int], sig: int) -> None:
    process = subprocess.Popen(
        [*cli, "serve"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "COLUMNS": "200"}
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    assert "Healthy after" in line, line
    state = read_state()
    assert state is not None and set(engines_under_home()) - no_server == {state.engine_pid}
    process.send_signal(sig)
    process.wait(timeout=60)
    assert read_state() is None and set(engines_under_home()) == no_server


def test_ask_with_a_model_config_file(cli: list[str], tmp_path: Path, embedded_server: ServerState) -> None:
    template = Path(__file__).resolve().parents[2] / "serving" / "model_config_template.yaml"
    config = yaml.safe_load(template.read_text())
    config["config"].update(model=embedded_server.served_model_name, base_url=embedded_server.base_url)
    path = tmp_path / "model_config.yaml"
    path.write_text(yaml.safe_dump(config))
    result = medcouncil(cli, "ask", "Is aspirin an NSAID?", "--options", "A=Yes;B=No", "--model-config", str(path))
    assert result.returncode == 0, result.stderr
    assert "starting the embedded" not in result.stderr
    assert re.search(r"Answer: [AB]", result.stdout)

    # No api_key (a keyless local server): answered, and never with OPENAI_API_KEY, which the server is not for.
    del config["config"]["api_key"]
    path.write_text(yaml.safe_dump(config))
    env = {key: value for key, value in os.environ.items() if key != "OPENAI_API_KEY"}
    keyless = subprocess.run(
        [*cli, "ask", "Is aspirin an NSAID?", "--options", "A=Yes;B=No", "--model-config", str(path)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert keyless.returncode == 0 and re.search(r"Answer: [AB]", keyless.stdout), keyless.stderr[-2000:]

    config["config"]["base_url"] = 8000
    path.write_text(yaml.safe_dump(config))
    numeric = medcouncil(cli, "ask", "hi", "--model-config", str(path))
    assert_one_line_error(numeric, r"error: .*model_config\.yaml: config\.base_url must be a URL \(text\)")

    path.write_text("provider: autogen_ext.models.openai.OpenAIChatCompletionClient\nconfig: {model: [x\n")
    broken = medcouncil(cli, "ask", "hi", "--model-config", str(path))
    assert_one_line_error(broken, r"error: .*model_config\.yaml:\d+: invalid YAML")

"""Faults around engines and their state: slow or dead recorded endpoints (never a silent switch to another model),
two writers at once, stale pids, engines orphaned by a killed command, private state files."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest

from medcouncil.serving.common.errors import EndpointUnreachableError
from medcouncil.serving.common.locks import LockHeldError, acquire, release
from medcouncil.serving.common.paths import state_dir
from medcouncil.serving.health import is_healthy
from medcouncil.serving.session import ModelSource, open_model
from medcouncil.serving.state import (
    ServerState,
    clear_state,
    free_port,
    read_state,
    server_lock_path,
    start_ticks,
    state_path,
    write_state,
)

from ..conftest import QuietHandler, serving


class SlowModels(QuietHandler):
    delay = 3.0

    def do_GET(self) -> None:
        time.sleep(self.delay)
        self.reply(200, {"object": "list", "data": [{"id": "slow-model", "owned_by": "vllm"}]})

    def do_POST(self) -> None:
        """The identity probe that keys the response cache of an endpoint medcouncil did not start."""
        self.rfile.read(int(self.headers["Content-Length"]))
        message = {"role": "assistant", "content": "Heart"}
        self.reply(200, {"object": "chat.completion", "choices": [{"index": 0, "message": message}]})


@pytest.fixture
def slow_endpoint() -> Iterator[str]:
    with serving(ThreadingHTTPServer(("127.0.0.1", 0), SlowModels)) as server:
        yield f"http://127.0.0.1:{server.server_port}/v1"


def external(url: str) -> ServerState:
    return ServerState(
        pid=None,
        port=0,
        engine="vllm",
        model="m",
        served_model_name="m",
        log_path=Path("/dev/null"),
        started_at=datetime.now(UTC),
        endpoint=url,
    )


def _open(notices: list[str]) -> str:
    async def go() -> str:
        async with open_model(ModelSource(), notice=notices.append) as client:
            return client.name

    return asyncio.run(go())


def test_a_slow_recorded_endpoint_is_used_not_replaced(slow_endpoint: str) -> None:
    write_state(external(slow_endpoint))  # answers /v1/models in 3 s, as a busy engine does
    try:
        notices: list[str] = []
        assert _open(notices) == "slow-model"
        assert notices == []  # no "starting the embedded Gemma"
    finally:
        clear_state()


def test_a_dead_recorded_endpoint_is_an_error_never_a_fallback() -> None:
    write_state(external(f"http://127.0.0.1:{free_port()}/v1"))
    try:
        notices: list[str] = []
        with pytest.raises(EndpointUnreachableError, match=r"does not answer.*serve --status"):
            _open(notices)
        assert notices == []
    finally:
        clear_state()


def test_health_checks_tolerate_a_busy_engine(slow_endpoint: str) -> None:
    assert is_healthy(slow_endpoint)
    assert not is_healthy(slow_endpoint, timeout=1.0, attempts=1)


def _holder(lock: Path) -> subprocess.Popen[str]:
    code = (
        "import sys, time; from pathlib import Path; from medcouncil.serving.common.locks import acquire; "
        "acquire(Path(sys.argv[1]), 'x'); print('held', flush=True); time.sleep(60)"
    )
    process = subprocess.Popen([sys.executable, "-c", code, str(lock)], stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None and process.stdout.readline().strip() == "held"
    return process


def test_one_writer_per_lock_across_processes_and_kill_9_frees_it(tmp_path: Path) -> None:
    lock = tmp_path / "run" / ".lock"
    holder = _holder(lock)
    try:
        with pytest.raises(LockHeldError, match=f"in use by process {holder.pid}"):
            acquire(lock, "the run folder")
    finally:
        holder.kill()
        holder.wait()
    acquire(lock, "the run folder")  # the kernel dropped the dead owner's lock
    release(lock)


def test_second_bench_and_serve_are_refused_while_another_writes(tmp_path: Path, cli: list[str]) -> None:
    run = tmp_path / "run"
    data = tmp_path / "d.jsonl"
    data.write_text('{"question": "q?", "options": {"A": "x", "B": "y"}, "answer": "A"}\n')
    holder = _holder(run / ".lock")
    server_holder = _holder(server_lock_path())
    try:
        result = subprocess.run(
            [*cli, "bench", "--dataset", str(data), "--out", str(run)], capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 1 and f"in use by process {holder.pid}" in result.stderr, result.stderr
        assert not (run / "run.json").exists()
        result = subprocess.run([*cli, "serve", "--detach"], capture_output=True, text=True, timeout=120)
        assert result.returncode == 1 and f"in use by process {server_holder.pid}" in result.stderr, result.stderr
        assert read_state() is None
    finally:
        for process in (holder, server_holder):
            process.kill()
            process.wait()


def test_serve_never_starts_a_second_server_beside_a_silent_recorded_one(cli: list[str]) -> None:
    sleeper = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        update = {
            "pid": sleeper.pid,
            "endpoint": None,
            "port": free_port(),
            "engine": "llamacpp",
            "start_ticks": start_ticks(sleeper.pid),
        }
        state = external("x").model_copy(update=update)
        write_state(state)
        before = state_path().read_text()
        result = subprocess.run([*cli, "serve", "--detach"], capture_output=True, text=True, timeout=120)
        assert result.returncode == 1 and "does not answer" in result.stderr, result.stderr
        assert state_path().read_text() == before  # not overwritten by a second server
    finally:
        clear_state()
        sleeper.kill()
        sleeper.wait()


def test_stop_never_signals_a_process_that_reused_the_pid(cli: list[str]) -> None:
    sleeper = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        recorded = start_ticks(sleeper.pid)
        assert recorded is not None
        stale = external("x").model_copy(update={"pid": sleeper.pid, "endpoint": None, "start_ticks": recorded - 1})
        write_state(stale)  # the engine died; its pid now names an unrelated process
        result = subprocess.run([*cli, "serve", "--stop"], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0 and "No medcouncil server is running" in result.stdout
        time.sleep(0.5)
        assert sleeper.poll() is None  # still running: not signalled
        assert read_state() is None
    finally:
        sleeper.kill()
        sleeper.wait()


def test_stop_of_a_registered_endpoint_says_it_was_forgotten(cli: list[str]) -> None:
    write_state(external("http://127.0.0.1:9/v1"))
    result = subprocess.run([*cli, "serve", "--stop"], capture_output=True, text=True, timeout=60)
    assert "Forgot the registered endpoint http://127.0.0.1:9/v1" in result.stdout and "Stopped" not in result.stdout
    assert read_state() is None


def test_state_is_private_whatever_the_umask() -> None:
    old = os.umask(0o022)
    try:
        write_state(external("http://127.0.0.1:9/v1").model_copy(update={"api_key": "sk-secret"}))
        assert state_path().stat().st_mode & 0o777 == 0o600
        assert state_dir().stat().st_mode & 0o777 == 0o700
    finally:
        os.umask(old)
        clear_state()


def _children(pid: int, marker: str) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                stat = (proc / "stat").read_text().rsplit(")", 1)[1].split()
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except (OSError, IndexError):
                continue
            if int(stat[1]) == pid and marker in cmdline:
                found.append(int(proc.name))
    return found


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state in ("Z", "X")


@pytest.mark.integration
@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM])
def test_an_auto_started_engine_dies_with_its_command(cli: list[str], how: signal.Signals) -> None:
    clear_state()
    command = subprocess.Popen(
        [*cli, "ask", "Name three causes of chest pain.", "--max-tokens", "400", "--no-cache"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    engines: list[int] = []
    while not engines and time.monotonic() < deadline and command.poll() is None:
        engines = [
            engine
            for supervisor in _children(command.pid, "medcouncil.serving.supervise")
            for engine in _children(supervisor, "-m medcouncil.serving.llama_engine")
        ]
        time.sleep(0.2)
    assert engines, "the command did not start an engine"
    time.sleep(3)
    command.send_signal(how)
    _, stderr = command.communicate(timeout=60)
    deadline = time.monotonic() + 30
    while not _gone(engines[0]) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _gone(engines[0]), f"engine {engines[0]} outlived its command ({how.name})"
    if how == signal.SIGTERM:
        assert "Traceback" not in stderr and "interrupted" in stderr, stderr


@pytest.mark.integration
def test_the_api_key_is_never_on_an_engine_command_line() -> None:
    from medcouncil.serving.config import EngineConfig
    from medcouncil.serving.server import EngineServer

    server = EngineServer(EngineConfig(api_key="s3cret-key-42"))
    state = server.start()
    try:
        assert is_healthy(state.base_url, "s3cret-key-42") and not is_healthy(state.base_url, "wrong", attempts=1)
        assert state.pid is not None
        pids = [state.pid, *_children(state.pid, "")]
        for pid in pids:
            assert b"s3cret-key-42" not in Path(f"/proc/{pid}/cmdline").read_bytes()
            assert b"s3cret-key-42" not in Path(f"/proc/{pid}/environ").read_bytes()
    finally:
        server.stop()

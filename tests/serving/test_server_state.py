from __future__ import annotations

import json
import logging
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from medcouncil.serving.common.paths import state_dir
from medcouncil.serving.server import stop_pid
from medcouncil.serving.state import (
    ServerState,
    clear_death,
    clear_state,
    free_port,
    log_tail,
    pid_alive,
    port_in_use,
    read_state,
    state_path,
    write_state,
)


def make_state(pid: int | None, **extra: object) -> ServerState:
    return ServerState(
        pid=pid,
        port=8123,
        engine="llamacpp",
        model="/m.gguf",
        served_model_name="gemma-3-270m",
        log_path=Path("/tmp/x.log"),
        started_at=datetime.now(UTC),
        **extra,  # type: ignore[arg-type]
    )


def test_state_round_trip_for_a_live_process() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"], start_new_session=True)
    try:
        write_state(make_state(child.pid))
        state = read_state()
        assert state is not None
        assert state.pid == child.pid
        assert state.base_url == "http://127.0.0.1:8123/v1"
    finally:
        stop_pid(child.pid, grace=2)
        child.wait()
    # The process is gone: the state is stale and removed.
    assert read_state() is None
    assert not state_path().exists()


def test_an_unreadable_state_file_is_kept_aside_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    state_path().write_text("{not json")
    with caplog.at_level(logging.WARNING):
        assert read_state() is None  # no engine of ours runs orphaned
    assert not state_path().exists()
    kept = sorted(state_path().parent.glob("server.json.unreadable-*"))
    assert kept and kept[-1].read_text() == "{not json"
    assert f"{state_path()} is unreadable (Invalid JSON" in caplog.text and kept[-1].name in caplog.text
    for path in kept:
        path.unlink()


def start_orphan(folder: Path, alias: str = "gemma-test", stamp: str = "20261204T081500") -> tuple[int, int]:
    """A stand-in for a detached llama.cpp engine: its output in the state folder's logs, its settings in a config
    file, its parent init (the shell that started it has exited). Returns (pid, port)."""
    logs = state_dir() / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    port = free_port()
    settings = folder / f"llamacpp-{port}.json"
    model = {"model": "/m.gguf", "model_alias": alias}
    settings.write_text(json.dumps({"port": port, "api_key": "k3y", "models": [model]}))
    log = logs / f"llamacpp-{port}-{stamp}.log"
    script = (
        f"{shlex.quote(sys.executable)} -c 'import time; time.sleep(60)' --config_file "
        f"{shlex.quote(str(settings))} > {shlex.quote(str(log))} 2>&1 & echo $!"
    )
    return int(subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=True).stdout), port


def kill_orphan(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)  # not a group leader: stop_pid's killpg would miss it
    deadline = time.monotonic() + 10
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)


@pytest.fixture
def orphan(tmp_path: Path) -> Iterator[tuple[int, int]]:
    pid, port = start_orphan(tmp_path)
    try:
        yield pid, port
    finally:
        kill_orphan(pid)
        clear_state()


def test_orphaned_replicas_are_recorded_again_as_one_server(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    started = [
        start_orphan(tmp_path, "gemma-test", "20261204T081500"),
        start_orphan(tmp_path, "gemma-test", "20261204T081503"),
        start_orphan(tmp_path, "other-model", "20261204T081400"),
    ]
    try:
        clear_state()
        with caplog.at_level(logging.WARNING):
            state = read_state()
        assert state is not None and [e.pid for e in state.engines] == [started[1][0], started[0][0]]  # newest first
        assert "and its 1 replica(s) on port(s)" in caplog.text
        assert f"pid {started[2][0]} on port {started[2][1]}" in caplog.text  # another model: named, not pooled
    finally:
        for pid, _ in started:
            kill_orphan(pid)
        clear_state()


def test_an_orphaned_engine_is_found_again_and_recorded(
    orphan: tuple[int, int], caplog: pytest.LogCaptureFixture
) -> None:
    pid, port = orphan
    for corrupt in (b"\x00\x01", None):  # unreadable, then missing altogether
        if corrupt is None:
            clear_state()
        else:
            state_path().write_bytes(corrupt)
        with caplog.at_level(logging.WARNING):
            state = read_state()
        assert state is not None and (state.pid, state.port, state.engine) == (pid, port, "llamacpp")
        assert (state.served_model_name, state.model, state.api_key) == ("gemma-test", "/m.gguf", "k3y")
        assert f"the llamacpp engine medcouncil started on port {port} (pid {pid})" in caplog.text
        assert read_state() == state  # recorded again: the next reader finds the file
    for path in state_path().parent.glob("server.json.unreadable-*"):
        path.unlink()


def test_a_gone_replica_is_dropped_from_the_record_and_named(caplog: pytest.LogCaptureFixture) -> None:
    sleepers = [
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"], start_new_session=True)
        for _ in range(3)
    ]
    replicas = [make_state(p.pid).model_copy(update={"port": 8124 + n}) for n, p in enumerate(sleepers[1:])]
    layout = {"replicas": 3, "threads": 1}
    try:
        write_state(make_state(sleepers[0].pid, replicas=replicas, layout=layout))
        state = read_state()
        assert state is not None and [e.port for e in state.engines] == [8123, 8124, 8125]
        stop_pid(sleepers[1].pid, grace=2)
        sleepers[1].wait()
        with caplog.at_level(logging.WARNING):
            state = read_state()
        assert state is not None and [e.port for e in state.engines] == [8123, 8125]
        assert state.layout == {"replicas": 2, "threads": 1}  # `serve --replicas 3` no longer reuses it as 3
        assert "replica http://127.0.0.1:8124/v1 of the recorded server is gone" in caplog.text
        assert "2 still serve" in caplog.text
        stop_pid(sleepers[0].pid, grace=2)  # the first one gone: the next takes its place
        sleepers[0].wait()
        state = read_state()
        assert state is not None and [e.port for e in state.engines] == [8125] and state.replicas == []
    finally:
        for sleeper in sleepers:
            stop_pid(sleeper.pid, grace=2)
            sleeper.wait()
    assert read_state() is None
    clear_death()  # the stand-ins' deaths are no engine's: later tests start with none on record


def test_external_endpoint_state_has_no_pid() -> None:
    write_state(make_state(None, endpoint="http://127.0.0.1:9999/v1"))
    state = read_state()
    assert state is not None and state.pid is None
    assert state.base_url == "http://127.0.0.1:9999/v1"
    clear_state()
    assert read_state() is None


def test_port_probe_and_free_port() -> None:
    port = free_port()
    assert not port_in_use(port)
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", port))
        holder.listen()
        assert port_in_use(port)


def test_stop_pid_kills_a_process_ignoring_sigterm() -> None:
    code = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); time.sleep(60)"
    )
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, start_new_session=True)
    assert child.stdout is not None and child.stdout.readline().strip() == b"ready"
    stop_pid(child.pid, grace=0.5)
    assert child.wait(timeout=10) != 0


def test_log_tail_keeps_last_nonblank_lines(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    log.write_text("\n".join(f"line {i}" for i in range(30)) + "\n\n")
    assert log_tail(log, 3) == "line 27\nline 28\nline 29"
    assert log_tail(tmp_path / "absent.log") == ""

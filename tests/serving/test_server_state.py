from __future__ import annotations

import socket
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from medcouncil.serving.server import (
    ServerState,
    clear_state,
    free_port,
    log_tail,
    port_in_use,
    read_state,
    state_path,
    stop_pid,
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


def test_corrupt_state_file_is_discarded() -> None:
    state_path().write_text("{not json")
    assert read_state() is None
    assert not state_path().exists()


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

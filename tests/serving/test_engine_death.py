"""An engine that dies is named: the real llama.cpp server killed with SIGSEGV and SIGKILL in the middle of a
request, through the client, ``ask`` against a detached server, and the AMX setting reaching the engine."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from autogen_core.models import UserMessage

from medcouncil.serving.common.errors import EngineDiedError
from medcouncil.serving.components import ClientSettings
from medcouncil.serving.config import EngineConfig
from medcouncil.serving.llama_engine import MARKER
from medcouncil.serving.server import EngineServer
from medcouncil.serving.session import EngineLink, ModelSource, open_model
from medcouncil.serving.state import clear_state, read_state
from medcouncil.serving.supervise import EngineExit, read_exit

pytestmark = pytest.mark.integration
LONG = [UserMessage(content="Write a long, detailed essay on the causes of chest pain.", source="user")]


def test_how_an_engine_ended_is_told_plainly() -> None:
    assert EngineExit(engine_pid=1, returncode=-signal.SIGSEGV).how() == "killed by SIGSEGV (segmentation fault)"
    assert EngineExit(engine_pid=1, returncode=-signal.SIGKILL).how() == "killed by SIGKILL"
    assert EngineExit(engine_pid=1, returncode=3).how() == "exited with code 3"
    assert EngineExit(engine_pid=1, returncode=-15, requested="SIGTERM").died is False


@pytest.mark.parametrize("how", [signal.SIGSEGV, signal.SIGKILL])
def test_an_engine_killed_mid_request_is_named_and_restarted_once(how: signal.Signals) -> None:
    clear_state()

    async def scenario() -> tuple[str, int, str]:
        async with open_model(ModelSource(), ClientSettings(cache=False), notice=lambda text: None) as client:
            link = client.engine
            assert isinstance(link, EngineLink) and link.can_restart
            engine_pid = link.state.engine_pid
            assert engine_pid is not None and engine_pid != link.state.pid  # the engine, not its supervisor
            with pytest.raises(EngineDiedError) as died:
                async for chunk in client.stream(LONG, max_tokens=1500):
                    if isinstance(chunk, str) and chunk.strip():
                        os.kill(engine_pid, how)  # mid-answer
            # The next call fails at once, with the same explanation, instead of retrying a dead port.
            started = time.monotonic()
            with pytest.raises(EngineDiedError):
                await client.chat(LONG, max_tokens=4)
            assert time.monotonic() - started < 3
            link.restart()  # chat does this on the next turn: same port, so the client keeps working
            again = await client.chat([UserMessage(content="Say hello.", source="user")], max_tokens=4)
            assert not link.can_restart and link.failure() is None
            return str(died.value), engine_pid, str(again.content)

    message, engine_pid, answer = asyncio.run(scenario())
    first, *tail = message.splitlines()
    assert re.search(rf"the llama\.cpp engine \(pid {engine_pid}\) killed by {how.name}.*; log: /\S+\.log$", first)
    assert tail, "the log's last lines follow"
    if how == signal.SIGSEGV:  # the engine's fault handler leaves the crash in its log
        assert "Segmentation fault" in "\n".join(tail)
    assert answer


def test_a_stop_is_not_a_death() -> None:
    server = EngineServer(EngineConfig())
    state = server.start()
    assert server.failure() is None
    server.stop()
    assert state.status_path is not None
    ended = read_exit(state.status_path)
    assert ended is not None and ended.requested == "SIGTERM" and not ended.died
    assert server.failure() is None


@pytest.fixture
def detached(cli: list[str]) -> Iterator[None]:
    """A clean slate, and no server left behind whatever happens."""
    subprocess.run([*cli, "serve", "--stop"], capture_output=True, timeout=120)
    yield
    subprocess.run([*cli, "serve", "--stop"], capture_output=True, timeout=120)


def test_ask_against_a_dead_detached_engine_names_it(cli: list[str], detached: None) -> None:
    started = subprocess.run([*cli, "serve", "--detach"], capture_output=True, text=True, timeout=300)
    assert started.returncode == 0, started.stderr
    state = read_state()
    assert state is not None and state.engine_pid is not None
    os.kill(state.engine_pid, signal.SIGKILL)
    result = subprocess.run(
        [*cli, "ask", "Name one symptom of asthma.", "--max-tokens", "8", "--no-cache"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    first = result.stderr.splitlines()[0]
    assert f"the llama.cpp engine (pid {state.engine_pid}) killed by SIGKILL" in first, result.stderr
    assert str(state.log_path) in first
    status = subprocess.run([*cli, "serve", "--status"], capture_output=True, text=True, timeout=120)
    assert status.returncode == 1 and "The recorded server died" in status.stderr and "SIGKILL" in status.stderr


@pytest.mark.parametrize("extra_buffers", [False, True])
def test_the_extra_buffer_setting_reaches_the_engine(extra_buffers: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """Off by default (llama.cpp's AMX path crashes some CPUs); the environment variable turns it on. llama.cpp's own
    log then shows the repacked (or AMX) weight buffer, which it allocates only when the setting is on."""
    monkeypatch.setenv("MEDCOUNCIL_EXTRA_BUFFERS", "1" if extra_buffers else "0")
    server = EngineServer(EngineConfig())
    state = server.start()
    try:
        log = Path(state.log_path).read_text(encoding="utf-8", errors="replace")
    finally:
        server.stop()
    assert f"{MARKER}: {'on' if extra_buffers else 'off'}" in log
    extra = re.search(r"(CPU_REPACK|AMX) model buffer size", log)
    assert (extra is not None) == extra_buffers, "llama.cpp's load log disagrees with the setting"

"""``medcouncil chat`` driven as a user would, in a pseudo-terminal (pexpect), on the real embedded server."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pexpect
import pytest

from medcouncil.serving.config import EngineConfig
from medcouncil.serving.server import EngineServer
from medcouncil.serving.state import ServerState

pytestmark = pytest.mark.integration
PROMPT = "you ›"
STEMI = (
    "A 58-year-old man has crushing substernal chest pain for 40 minutes radiating to the left arm, diaphoresis, "
    "and ST elevation in II, III and aVF. What is the diagnosis and the first treatment?"
)


def spawn(cli: list[str], *args: str) -> pexpect.spawn:
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "140", "TERM": "xterm"}
    child = pexpect.spawn(cli[0], [*cli[1:], "chat", *args], env=env, encoding="utf-8", timeout=300)
    child.logfile_read = sys.stdout
    child.expect(PROMPT, timeout=180)
    return child


def test_turn_single_mode_save_cancel_quit(cli: list[str], embedded_server: ServerState, tmp_path: Path) -> None:
    child = spawn(cli, "--endpoint", embedded_server.base_url)
    child.sendline(STEMI)
    child.expect("retriever › sources")
    child.expect(r"│ 1 +│[^\n]*Acute coronary")  # the hybrid search puts acs.md first (dense alone: pneumonia)
    child.expect("final answer · council")
    child.expect(PROMPT)

    child.sendline("/single")
    child.expect("mode: single model")
    child.expect(PROMPT)
    child.sendline("And which antiplatelet should he get?")
    child.expect("final answer · single")
    child.expect(PROMPT)

    saved = tmp_path / "talk"
    child.sendline(f"/save {saved}")
    child.expect("saved")
    child.expect(PROMPT)
    episodes = [json.loads(line) for line in (tmp_path / "talk.jsonl").read_text().splitlines()]
    assert [e["answerer"] for e in episodes] == ["council", "single"]
    assert "## Turn 2" in (tmp_path / "talk.md").read_text()

    child.sendline("/lang ko")
    child.expect("language: ko")
    child.sendline("/lang auto")
    child.expect("language: auto")
    child.sendline("/reset")
    child.expect("conversation cleared")
    child.sendline("/single")
    child.expect("mode: council")
    child.sendline("Describe in detail the full management of acute severe asthma in the emergency department.")
    child.expect("diagnostician ›")
    child.expect(r"\w+ \w+ \w+")  # the diagnostician's model call is streaming
    cancelled = time.monotonic()
    child.sendintr()  # Ctrl-C cancels the turn, not the session, at once (the model call is closed)
    child.expect("turn cancelled", timeout=15)
    assert time.monotonic() - cancelled < 3.0
    assert "CancelledError" not in child.before and "Traceback" not in child.before  # one line, no AutoGen log
    child.expect(PROMPT)

    child.sendline("/quit")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


def test_unreachable_model_mid_session_fails_the_turn_only(cli: list[str]) -> None:
    server = EngineServer(EngineConfig())
    state = server.start()
    try:
        child = spawn(cli, "--endpoint", state.base_url, "--no-cache")
    finally:
        server.stop()
    child.sendline("What causes gout?")
    child.expect(r"error:.*unreachable: http://127\.0\.0\.1:\d+/v1", timeout=120)
    child.expect(PROMPT)
    child.sendline("/quit")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


def _engine_of_this_chat(home: Path, after: float) -> int:
    """The engine pid of the chat's automatically started server (its supervisor's status file, newer than
    ``after``)."""
    from medcouncil.serving.supervise import read_exit

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for status in (home / "state" / "logs").glob("*.exit.json"):
            ended = read_exit(status)
            if status.stat().st_mtime >= after and ended is not None and ended.running:
                return ended.engine_pid
        time.sleep(0.2)
    raise AssertionError("no running engine found for the chat")


def test_an_engine_that_dies_mid_turn_is_named_and_restarted_once(cli: list[str]) -> None:
    import signal

    from medcouncil.serving.state import clear_death, clear_state

    clear_state()
    clear_death()
    started = time.time() - 1
    child = spawn(cli, "--single", "--no-cache")  # nothing recorded: the chat starts the embedded engine itself
    engine = _engine_of_this_chat(Path(os.environ["MEDCOUNCIL_HOME"]), started)
    child.sendline("Describe in detail the full management of acute severe asthma in the emergency department.")
    child.expect(r"\w+ \w+ \w+")  # the answer is streaming
    os.kill(engine, signal.SIGSEGV)
    child.expect(rf"error:.*llama\.cpp engine \(pid {engine}\) killed by SIGSEGV", timeout=60)
    child.expect(PROMPT)
    child.sendline("Name one symptom of asthma.")
    child.expect("the engine died: restarting it")
    child.expect("final answer · single", timeout=120)
    child.expect(PROMPT)
    child.sendline("/quit")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0

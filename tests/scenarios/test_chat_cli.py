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
from medcouncil.serving.server import EngineServer, ServerState

pytestmark = pytest.mark.integration
PROMPT = "you ›"


def spawn(cli: list[str], *args: str) -> pexpect.spawn:
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "140", "TERM": "xterm"}
    child = pexpect.spawn(cli[0], [*cli[1:], "chat", *args], env=env, encoding="utf-8", timeout=300)
    child.logfile_read = sys.stdout
    child.expect(PROMPT, timeout=180)
    return child


def test_turn_single_mode_save_cancel_quit(cli: list[str], embedded_server: ServerState, tmp_path: Path) -> None:
    child = spawn(cli, "--endpoint", embedded_server.base_url)
    child.sendline("A 24-year-old has episodic wheeze and a nocturnal cough relieved by salbutamol. Diagnosis?")
    child.expect("retriever › sources")
    child.expect("final answer · council")
    child.expect(PROMPT)

    child.sendline("/single")
    child.expect("mode: single model")
    child.expect(PROMPT)
    child.sendline("And what inhaler should she use?")
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

"""The shared consoles print text as it is: no emoji codes (``:-1:`` → 👎) in messages that quote user input."""

from __future__ import annotations

import subprocess

from medcouncil.serving.common.console import console, err_console


def test_emoji_codes_stay_text() -> None:
    for shared in (console, err_console):
        with shared.capture() as captured:
            shared.print("case agentclinic:-1: and :abc: and :thumbs_up:")
        assert captured.get().strip() == "case agentclinic:-1: and :abc: and :thumbs_up:"


def test_cli_error_quotes_a_case_spec_unchanged(cli: list[str]) -> None:
    for spec in ("agentclinic:-1", "agentclinic:abc"):
        done = subprocess.run([*cli, "chat", "--case", spec], capture_output=True, text=True, timeout=120)
        assert done.returncode == 1
        assert done.stderr.startswith(f"error: {spec}:"), done.stderr
        assert "👎" not in done.stderr and "🔤" not in done.stderr

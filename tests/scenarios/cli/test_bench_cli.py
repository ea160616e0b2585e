"""``medcouncil bench`` / ``report`` errors: one line, non-zero exit, no traceback, nothing started in vain."""

from __future__ import annotations

import subprocess
from pathlib import Path

FIXTURE = Path(__file__).parents[1] / "fixtures" / "kormedmcqa_doctor.jsonl"
DEAD = "http://127.0.0.1:9/v1"


def run(cli: list[str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*cli, *args], capture_output=True, text=True, timeout=300)


def test_bad_options_are_one_line_errors(cli: list[str], tmp_path: Path) -> None:
    cases = [
        (["bench", "--dataset", str(FIXTURE), "--mode", "single,jury"], "error: --mode 'single,jury': choose from"),
        (["bench"], "error: --dataset is required"),
        (["bench", "--suite", "everything"], "error: --suite 'everything': choose from reference"),
        (["bench", "--dataset", str(tmp_path / "none.jsonl")], f"error: dataset not found: {tmp_path}/none.jsonl"),
        (["bench", "--resume", str(tmp_path)], f"error: {tmp_path}: not a benchmark run (no run.json)"),
        (["report", str(tmp_path / "nothing")], f"error: {tmp_path}/nothing: no such directory"),
    ]
    for args, message in cases:
        result = run(cli, *args)
        assert result.returncode == 1, (args, result.stderr)
        assert result.stderr.startswith(message), (args, result.stderr)
        assert "Traceback" not in result.stderr


def test_malformed_rows_are_named_then_skipped_or_fatal(cli: list[str], tmp_path: Path) -> None:
    strict = run(cli, "bench", "--dataset", str(FIXTURE), "--strict-rows", "--endpoint", DEAD, "--out", str(tmp_path))
    assert strict.returncode == 1
    assert strict.stderr.startswith(f"error: malformed row (--strict-rows): {FIXTURE}:4: ")
    assert not (tmp_path / "run.json").exists()
    lenient = run(cli, "bench", "--dataset", str(FIXTURE), "--endpoint", DEAD, "--out", str(tmp_path / "r"))
    lines = lenient.stderr.replace("\n ", " ").splitlines()
    assert [line.split(": ")[1] for line in lines if line.startswith("skipped malformed row")] == [
        f"{FIXTURE}:{n}" for n in (4, 5, 6)
    ]
    assert lenient.returncode == 1 and f"endpoint unreachable: {DEAD}/models" in lenient.stderr

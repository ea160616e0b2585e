"""``medcouncil bench`` as a user runs it, against the real embedded server: the report, the cache, a kill -9 and
resume, and a server that goes down mid-run."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from medcouncil.serving.state import ServerState
from tests.conftest import SHARED, QuietHandler

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not (SHARED / "data").is_dir(), reason="../shared/data is not beside the project"),
]
MEDQA = SHARED / "data" / "mcqa" / "medqa.test.jsonl"
ENV = {**os.environ, "COLUMNS": "200"}


def bench(cli: list[str], *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*cli, "bench", *args], capture_output=True, text=True, timeout=timeout, env=ENV)


def journal(directory: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (directory / "samples.jsonl").read_text().splitlines()]


def test_single_and_council_on_three_medqa_items_then_a_cached_identical_rerun(
    cli: list[str], embedded_server: ServerState, tmp_path: Path
) -> None:
    args = ["--dataset", str(MEDQA), "--limit", "3", "--mode", "single,council", "--endpoint", embedded_server.base_url]
    first = bench(cli, *args, "--out", str(tmp_path / "first"))
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    records = journal(tmp_path / "first")
    assert sorted((r["sample_id"], r["mode"]) for r in records) == sorted(
        (str(n), mode) for n in range(3) for mode in ("single", "council")
    )
    council = [r for r in records if r["mode"] == "council"]
    assert all(r["model_calls"] >= 2 and r["episode"]["turns"][0]["agent"] == "retriever" for r in council)
    assert all(r["letter"] in "ABCD" or r["letter"] is None for r in records)
    manifest = json.loads((tmp_path / "first" / "run.json").read_text())
    assert manifest["finished"] and manifest["config"]["model"] == embedded_server.served_model_name
    report = (tmp_path / "first" / "report.md").read_text()
    assert "| council | all | 3 |" in report and "| single | all | 3 |" in report and "council vs single" in report
    assert "<svg" in (tmp_path / "first" / "report.html").read_text()
    assert "council vs single:" in first.stdout and "McNemar p" in first.stdout

    second = bench(cli, *args, "--out", str(tmp_path / "second"))
    assert second.returncode == 0, second.stderr[-3000:]
    again = {(r["sample_id"], r["mode"]): r for r in journal(tmp_path / "second")}
    for record in records:
        twin = again[record["sample_id"], record["mode"]]
        assert (twin["letter"], twin["probabilities"]) == (record["letter"], record["probabilities"])
        assert [t["content"] for t in twin["episode"]["turns"]] == [t["content"] for t in record["episode"]["turns"]]
        choices = [t["choice"] for t in twin["episode"]["turns"] if t.get("choice")]
        assert choices and all(choice["cached"] for choice in choices)  # served from the LLM cache


def test_kill_9_then_resume_finishes_without_redoing_or_duplicating(
    cli: list[str], embedded_server: ServerState, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    args = ["--endpoint", embedded_server.base_url, "--no-cache"]
    process = subprocess.Popen(
        [
            *cli,
            "bench",
            "--dataset",
            str(MEDQA),
            "--limit",
            "8",
            "--mode",
            "single",
            "--shuffle-choices",
            "--seed",
            "11",
            "--out",
            str(out),
            *args,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=ENV,
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        path = out / "samples.jsonl"
        if path.exists() and len(path.read_text().splitlines()) >= 2:
            break
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    before = (out / "samples.jsonl").read_text().splitlines()
    done = len([line for line in before if line.endswith("}")])
    assert 2 <= done < 8, "the run should have been killed part-way"
    resumed = bench(cli, "--resume", str(out), *args)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming: {done} answers already journaled, {8 - done} to go" in resumed.stderr.replace("\n", " ")
    records = journal(out)
    assert len(records) == 8 and len({r["sample_id"] for r in records}) == 8
    assert [json.dumps(r) for r in records[:done]] == [json.dumps(json.loads(line)) for line in before[:done]]
    assert all(r["order"] and sorted(r["order"]) == ["A", "B", "C", "D"] for r in records)


class Proxy:
    """A forwarding HTTP proxy to the embedded server that goes away after ``budget`` answers.

    An answer is a request over every option letter; the requests that complete its letter probabilities (one
    letter each) ride along with it and are not counted."""

    def __init__(self, upstream: str, port: int, budget: int) -> None:
        self.upstream, self.budget, self.served = upstream.rstrip("/").removesuffix("/v1"), budget, 0
        proxy = self

        class Handler(QuietHandler):
            def _forward(self, method: str) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0) or 0))
                if method == "POST" and not proxy.completing(body):
                    proxy.served += 1
                    if proxy.served > proxy.budget:  # the server "dies": stop listening, drop this request
                        threading.Thread(target=proxy.stop, daemon=True).start()
                        self.close_connection = True
                        return
                reply = httpx.request(
                    method,
                    proxy.upstream + self.path,
                    content=body,
                    timeout=120,
                    headers={"Content-Type": "application/json"},
                )
                content_type = reply.headers.get("content-type", "application/json")
                self.reply(reply.status_code, reply.content, {"Content-Type": content_type})

            def do_GET(self) -> None:
                self._forward("GET")

            def do_POST(self) -> None:
                self._forward("POST")

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @staticmethod
    def completing(body: bytes) -> bool:
        """A request constrained to one letter: it completes the probabilities of the answer before it."""
        grammar = str(json.loads(body or b"{}").get("grammar", ""))
        return grammar.count('"') == 2

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_server_down_mid_run_marks_errors_not_wrong_answers_then_resume_finishes(
    cli: list[str], embedded_server: ServerState, tmp_path: Path
) -> None:
    port = free_port()
    config = tmp_path / "model.yaml"
    config.write_text(
        f"provider: autogen_ext.models.openai.OpenAIChatCompletionClient\nconfig:\n"
        f"  model: {embedded_server.served_model_name}\n  base_url: http://127.0.0.1:{port}/v1\n"
        f"  api_key: none\n  max_retries: 0\n  timeout: 60\n"
    )
    out = tmp_path / "run"
    args = ["--model-config", str(config), "--no-cache", "--retries", "1", "--backoff", "0.1", "--give-up-after", "2"]
    proxy = Proxy(embedded_server.base_url, port, budget=3)
    try:
        broken = bench(cli, "--dataset", str(MEDQA), "--limit", "6", "--mode", "single", "--out", str(out), *args)
    finally:
        proxy.stop()
    assert broken.returncode == 1, broken.stdout[-2000:] + broken.stderr[-2000:]
    assert "Traceback" not in broken.stderr
    stderr = " ".join(broken.stderr.split())
    assert "stopped early: 2 items failed in a row" in stderr and f"127.0.0.1:{port}" in stderr
    assert "2 errors and 1 pending item×mode pairs were not scored" in stderr
    assert len(journal(out)) == 3
    errors = [json.loads(line) for line in (out / "errors.jsonl").read_text().splitlines()]
    assert [(e["sample_id"], e["attempt"]) for e in errors] == [("3", 1), ("3", 2), ("4", 1), ("4", 2)]
    report = (out / "report.md").read_text()
    assert "| single | all | 3 |" in report and "2 item×mode errors, 1 pending" in report

    proxy = Proxy(embedded_server.base_url, port, budget=100)
    try:
        healed = bench(cli, "--resume", str(out), *args)
    finally:
        proxy.stop()
    assert healed.returncode == 0, healed.stderr[-3000:]
    assert sorted(r["sample_id"] for r in journal(out)) == [str(n) for n in range(6)]
    assert json.loads((out / "run.json").read_text())["finished"] is True


def test_reference_suite_writes_the_table_and_marks_missing_sets(
    cli: list[str], embedded_server: ServerState, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    (data / "kormedmcqa").mkdir(parents=True)
    (data / "kormedmcqa" / "doctor.jsonl").write_text(
        (Path(__file__).parents[1] / "fixtures" / "kormedmcqa_doctor.jsonl").read_text()
    )
    (data / "mcqa").symlink_to(SHARED / "data" / "mcqa")
    out = tmp_path / "suite"
    result = subprocess.run(
        [
            *cli,
            "bench",
            "--suite",
            "reference",
            "--mode",
            "single",
            "--limit",
            "2",
            "--data-dir",
            str(data),
            "--out",
            str(out),
            "--endpoint",
            embedded_server.base_url,
        ],
        capture_output=True,
        text=True,
        timeout=900,
        env={**ENV, "HF_HUB_OFFLINE": "1"},
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    table = (out / "report.md").read_text().splitlines()
    rows = {line.split(" | ")[0].lstrip("| "): line for line in table if line.startswith("| ") and "---" not in line}
    assert list(rows)[1:] == [
        "KorMedMCQA dentist",
        "KorMedMCQA doctor",
        "KorMedMCQA nurse",
        "KorMedMCQA pharm",
        "MedQA 5 options",
        "MedQA 4 options",
    ]
    # Neither the local file nor the Hugging Face dataset: the note names both.
    assert "not run: kormedmcqa: not found under " in rows["KorMedMCQA nurse"]
    assert "kormedmcqa/nurse.jsonl or kormedmcqa/nurse.csv; hf://sean0042/KorMedMCQA" in rows["KorMedMCQA nurse"]
    for label in ("KorMedMCQA doctor", "MedQA 5 options", "MedQA 4 options"):
        cells = rows[label].strip("| ").split(" | ")
        assert cells[3] == "2" and cells[1] != "–", rows[label]  # n = 2 items, an accuracy
    medqa5 = json.loads((out / "medqa-5-options" / "samples.jsonl").read_text().splitlines()[0])
    assert set(medqa5["episode"]["question"]["options"]) == set("ABCDE")

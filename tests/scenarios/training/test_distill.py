"""Distillation from a teacher: reading its final answer, rejection sampling, the journal (resume after a failure
and after ``kill -9``), the CLI against a scripted HTTP teacher (key from the environment only), the kept
rationales in ``data build``, and the real embedded server standing in as the teacher."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from http.server import HTTPServer, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar, cast

import pytest

from medcouncil.agents import prompts
from medcouncil.scenarios.datasets.samples import Sample
from medcouncil.scenarios.training.distill import (
    DistillSettings,
    distil,
    distil_one,
    read_final,
    read_rationales,
    read_rows,
    teacher_messages,
)
from medcouncil.scenarios.training.sft import rationale_key, role_pools, taught_for, taught_key
from medcouncil.serving.common.errors import EndpointUnreachableError, RequestRejectedError
from medcouncil.serving.pool import IDENTITY_PROMPT
from medcouncil.serving.state import ServerState
from tests.conftest import SHARED, QuietHandler, serving

OPTIONS = {"A": "Asthma", "B": "COPD", "C": "Pneumonia"}
SETTINGS = DistillSettings(teacher_model="teacher", tries=3, temperature=0.7)


def sample(n: int, answer: str = "A") -> Sample:
    return Sample(id=f"q{n}", question=f"Case {n}: episodic wheeze. Diagnosis?", options=OPTIONS, answer=answer)


def scripted(replies: dict[str, list[str]], asked: list[str] | None = None):  # type: ignore[no-untyped-def]
    """A teacher answering each case with its next scripted reply."""

    async def ask(messages: list[dict[str, str]], temperature: float, max_tokens: int) -> tuple[str, int, int]:
        case = messages[1]["content"].split("⟪")[1].split(":")[0]
        if asked is not None:
            asked.append(case)
        return replies[case].pop(0), 10, 5

    return ask


def test_the_final_answer_is_read_from_the_last_final_line() -> None:
    assert read_final("Wheeze reverses.\nFinal answer: A. Asthma", OPTIONS) == ("A", "Wheeze reverses.")
    assert read_final("x\nFinal answer: B\nthen\n**Final Answer:** (C) Pneumonia", OPTIONS)[0] == "C"
    assert read_final("Reasoning.\nFinal answer: copd", OPTIONS) == ("B", "Reasoning.")  # the option's text
    assert read_final("Final answer: Aspirin", OPTIONS)[0] is None  # a word starting with A is not the letter A
    assert read_final("Final answer: D. Other", OPTIONS)[0] is None  # not an option
    assert read_final("No final line at all", OPTIONS) == (None, "No final line at all")


def test_rejection_sampling_keeps_only_a_reasoned_gold_answer() -> None:
    replies = {
        "Case 1": ["Because.\nFinal answer: B. COPD", "Final answer: A. Asthma", "Reversible.\nFinal answer: A"],
        "Case 2": ["Hm.\nFinal answer: B", "Hm.\nFinal answer: C", "Hm.\nFinal answer: B"],
        "Case 3": ["Obvious.\nFinal answer: A. Asthma", "never asked"],
    }
    teacher = scripted(replies)
    first = asyncio.run(distil_one(sample(1), teacher, SETTINGS, "http://t/v1"))
    assert first.kept and first.rationale == "Reversible." and first.answers == ["B", "A", "A"]  # a bare answer: no
    assert first.reason == "matched the gold letter at try 3" and first.completion_tokens == 15
    second = asyncio.run(distil_one(sample(2), teacher, SETTINGS, "http://t/v1"))
    assert not second.kept and second.rationale == "" and second.answers == ["B", "C", "B"]
    assert second.reason == "no reply of 3 reasoned to the gold letter A"
    third = asyncio.run(distil_one(sample(3), teacher, SETTINGS, "http://t/v1"))
    assert third.kept and third.answers == ["A"] and replies["Case 3"] == ["never asked"]
    # Every row names its teacher and the prompt it was given: the diagnostician's own.
    assert third.teacher == "http://t/v1" and third.teacher_model == "teacher" and third.prompt_name == "diagnostician"
    assert third.prompt == teacher_messages(sample(3)) and third.prompt[0]["content"] == prompts.DIAGNOSTICIAN_SYSTEM


def test_a_refused_request_is_a_row_not_a_retry() -> None:
    calls: list[int] = []

    async def refusing(messages: list[dict[str, str]], temperature: float, max_tokens: int) -> tuple[str, int, int]:
        calls.append(1)
        raise RequestRejectedError("http://t/v1 refused the request (HTTP 400): too long")

    row = asyncio.run(distil_one(sample(1), refusing, SETTINGS, "http://t/v1"))
    assert not row.kept and row.reason.startswith("refused: ") and calls == [1]


def test_a_failure_stops_the_run_and_the_resume_asks_only_for_what_is_missing(tmp_path: Path) -> None:
    out = tmp_path / "rationales.jsonl"
    items = [sample(n) for n in range(1, 6)]
    answered = 0

    async def flaky(messages: list[dict[str, str]], temperature: float, max_tokens: int) -> tuple[str, int, int]:
        nonlocal answered
        if answered == 2:
            raise EndpointUnreachableError("endpoint unreachable: http://t/v1 (APIConnectionError)")
        answered += 1
        return "Why.\nFinal answer: A", 1, 1

    with pytest.raises(EndpointUnreachableError, match="unreachable: http://t/v1"):
        asyncio.run(distil(items, flaky, SETTINGS, "http://t/v1", out, concurrency=2))
    assert [row.id for row in read_rows(out)] == ["q1", "q2"]
    with out.open("a") as handle:  # a kill in the middle of a write
        handle.write('{"id": "q3", "kept": tr')
    asked: list[str] = []
    replies = {f"Case {n}": ["Why.\nFinal answer: A"] for n in range(1, 6)}
    written = asyncio.run(distil(items, scripted(replies, asked), SETTINGS, "http://t/v1", out, concurrency=2))
    assert sorted(asked) == ["Case 3", "Case 4", "Case 5"] and len(written) == 3
    rows = read_rows(out)
    assert sorted(row.id for row in rows) == ["q1", "q2", "q3", "q4", "q5"]
    assert len(out.read_text().splitlines()) == 5  # the cut line is gone, nothing twice
    assert read_rationales(out) == {rationale_key(s.id, s.question): "Why." for s in items}


def test_a_rationale_finds_its_item_by_id_and_question_not_by_id_alone() -> None:
    """Two --dataset files may share ids (positions): a teacher's rationale for one item is not another's."""
    ours, theirs = sample(1), sample(1).model_copy(update={"question": "Case 9: a rash. Diagnosis?"})
    taught = {rationale_key(ours.id, ours.question): "Reversible wheeze."}
    pools = role_pools([ours, theirs], [], seed=0, rationales=taught)
    reasoning = [example.messages[-1].content for example in pools["diagnostician"]]
    assert reasoning[0].startswith("Reversible wheeze.") and not reasoning[1].startswith("Reversible wheeze.")
    legacy = {"q1": "Older output, by id."}  # no question recorded: by id, for both items
    assert taught_for(theirs, legacy) == "Older output, by id."
    assert {taught_key(s, legacy) for s in (ours, theirs)} == {"q1"}  # one rationale used, counted once


class Teacher(QuietHandler):
    """A scripted OpenAI-compatible teacher: a wrong letter first, then the gold one (A), per case; slowly if
    asked."""

    delay = 0.0
    probes = 0
    ports: ClassVar[list[int]] = []
    requests: ClassVar[list[dict[str, Any]]] = []
    keys: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        self.reply(200, {"object": "list", "data": [{"id": "big-teacher", "owned_by": "vllm"}]})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if body["messages"][-1]["content"] == IDENTITY_PROMPT:  # a pool's identity probe: greedy, the same
            Teacher.probes += 1
            self.reply(200, {"choices": [{"index": 0, "message": {"role": "assistant", "content": "Heart"}}]})
            return
        Teacher.requests.append(body)
        Teacher.ports.append(cast(HTTPServer, self.server).server_port)
        Teacher.keys.append(self.headers.get("Authorization", ""))
        time.sleep(self.delay)
        case = str(body["messages"][-1]["content"])
        letter = "A" if sum(str(r["messages"][-1]["content"]) == case for r in Teacher.requests) % 2 == 0 else "C"
        text = f"The wheeze reverses with salbutamol.\nFinal answer: {letter}"
        self.reply(
            200,
            {
                "id": "x",
                "object": "chat.completion",
                "created": 0,
                "model": "big-teacher",
                "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}],
                "usage": {"prompt_tokens": 50, "completion_tokens": 12, "total_tokens": 62},
            },
        )


@pytest.fixture
def teacher_url() -> Iterator[str]:
    Teacher.requests, Teacher.keys, Teacher.delay, Teacher.probes, Teacher.ports = [], [], 0.0, 0, []
    with serving(ThreadingHTTPServer(("127.0.0.1", 0), Teacher)) as server:
        yield f"http://127.0.0.1:{server.server_port}/v1"


def dataset_file(tmp_path: Path, n: int) -> Path:
    path = tmp_path / "train.jsonl"
    rows = [
        {"id": f"t{i}", "question": f"Case {i}: wheeze after exercise.", "options": OPTIONS, "answer": "A"}
        for i in range(n)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def run_cli(cli: list[str], *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    # data build counts tokens with the embedded model's tokenizer: the first use in a test session converts the
    # GGUF into the session's fresh cache (80-100 s on 2 quiet cores, more beside other work)
    timeout = 600 if args[:2] == ("data", "build") else 120
    return subprocess.run([*cli, *args], capture_output=True, text=True, timeout=timeout, env=env)


def test_cli_distils_from_an_http_teacher_with_the_key_from_the_environment(
    cli: list[str], teacher_url: str, tmp_path: Path
) -> None:
    out = tmp_path / "r.jsonl"
    env = {**os.environ, "MEDCOUNCIL_TEACHER_API_KEY": "s3cret-teacher"}
    data = str(dataset_file(tmp_path, 4))
    done = run_cli(
        cli,
        "distill",
        "--teacher",
        teacher_url,
        "--teacher-model",
        "big-teacher",
        "--dataset",
        data,
        "--tries",
        "2",
        "--temperature",
        "0.9",
        "--out",
        str(out),
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert "4 rationales kept, 0 items rejected" in done.stdout and "4 preference pairs" in done.stdout
    assert f"finetune --method dpo --data {out}" in done.stdout  # each item's miss came before its gold reply
    rows = read_rows(out)
    assert {r.id for r in rows} == {"t0", "t1", "t2", "t3"} and all(r.answers == ["C", "A"] for r in rows)
    assert all(r.teacher_model == "big-teacher" and r.temperature == 0.9 for r in rows)
    assert {body["temperature"] for body in Teacher.requests} == {0.9} and len(Teacher.requests) == 8
    assert set(Teacher.keys) == {"Bearer s3cret-teacher"}
    manifest = json.loads(out.with_suffix(".run.json").read_text())
    assert manifest["summary"]["kept"] == 4 and manifest["settings"]["tries"] == 2
    again = run_cli(
        cli,
        "distill",
        "--teacher",
        teacher_url,
        "--teacher-model",
        "big-teacher",
        "--dataset",
        str(dataset_file(tmp_path, 4)),
        "--out",
        str(out),
    )
    assert again.returncode == 1 and "already has rows: --resume" in again.stderr
    other = run_cli(cli, "distill", "--resume", "--teacher-model", "other", "--out", str(out))
    assert other.returncode == 1 and "was distilled from 'big-teacher'" in other.stderr
    pairs = run_cli(cli, "distill", "--resume", "--pairs", "--out", str(out))
    assert pairs.returncode == 1 and "was distilled with --no-pairs: a resume keeps it" in pairs.stderr
    wrong = run_cli(
        cli,
        "distill",
        "--teacher",
        teacher_url,
        "--teacher-model",
        "missing",
        "--dataset",
        str(dataset_file(tmp_path, 4)),
        "--out",
        str(tmp_path / "w.jsonl"),
    )
    assert wrong.returncode == 1 and "does not serve 'missing'" in wrong.stderr


def test_kill_9_loses_no_finished_row_and_resume_completes(cli: list[str], teacher_url: str, tmp_path: Path) -> None:
    Teacher.delay = 0.3
    out = tmp_path / "r.jsonl"
    data = dataset_file(tmp_path, 12)
    process = subprocess.Popen(
        [
            *cli,
            "distill",
            "--teacher",
            teacher_url,
            "--teacher-model",
            "big-teacher",
            "--dataset",
            str(data),
            "--tries",
            "2",
            "--concurrency",
            "2",
            "--out",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not out.exists() or len(out.read_bytes().splitlines()) < 3):
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    before = read_rows(out)
    assert 3 <= len(before) < 12
    asked_before = len(Teacher.requests)
    Teacher.delay = 0.0
    done = run_cli(cli, "distill", "--resume", "--teacher", teacher_url, "--out", str(out))
    assert done.returncode == 0, done.stderr
    rows = read_rows(out)
    assert sorted(r.id for r in rows) == sorted(f"t{i}" for i in range(12))
    assert len(out.read_text().splitlines()) == 12  # every item once
    assert {r.id: r for r in rows}[before[0].id] == before[0]  # finished rows are never redone
    assert len(Teacher.requests) - asked_before <= 2 * (12 - len(before))


def test_data_build_uses_the_kept_rationales(cli: list[str], tmp_path: Path) -> None:
    data = dataset_file(tmp_path, 3)
    asked: list[str] = []
    replies = {f"Case {i}": ["Exercise-induced bronchospasm.\nFinal answer: A"] for i in range(3)}
    replies["Case 2"] = ["Hm.\nFinal answer: C"] * 3
    out = tmp_path / "r.jsonl"
    from medcouncil.scenarios.datasets.registry import load_dataset

    samples, _ = load_dataset(str(data))
    asyncio.run(distil(samples, scripted(replies, asked), SETTINGS, "http://t/v1", out))
    built = tmp_path / "sft.jsonl"
    done = run_cli(
        cli,
        "data",
        "build",
        "--dataset",
        str(data),
        "--rationales",
        str(out),
        "--mix",
        "diagnostician=1",
        "--no-decontaminate",
        "--out",
        str(built),
    )
    assert done.returncode == 0, done.stderr
    conversations = [json.loads(line)["messages"] for line in built.read_text().splitlines()]
    replies_by_case = {turns[1]["content"].split("⟪")[1][:6]: turns[2]["content"] for turns in conversations}
    assert replies_by_case["Case 0"].startswith("Exercise-induced bronchospasm.\n\nFinal answer: A. Asthma")
    assert replies_by_case["Case 2"] == "Final answer: A. Asthma"  # rejected: no rationale, the answer line only
    card = json.loads(built.with_suffix(".card.json").read_text())
    assert card["rationales"] == {"files": [str(out)], "kept": 2, "used": 2}
    fewer = run_cli(
        cli,
        *(
            "data",
            "build",
            "--dataset",
            str(data),
            "--limit",
            "1",
            "--rationales",
            str(out),
            "--mix",
            "diagnostician=1",
        ),
        *("--no-decontaminate", "--base", str(tmp_path / "none.gguf"), "--out", str(tmp_path / "one.jsonl")),
    )  # a rationale whose item is not built is told, not only counted on the card
    assert fewer.returncode == 0 and "1 of 2 kept rationales match no item built" in fewer.stderr, fewer.stderr
    missing = run_cli(
        cli,
        "data",
        "build",
        "--dataset",
        str(data),
        "--rationales",
        str(tmp_path / "none.jsonl"),
        "--no-decontaminate",
        "--out",
        str(built),
    )
    assert missing.returncode == 1 and "no such distillation output" in missing.stderr


@pytest.mark.integration
def test_the_embedded_server_stands_in_as_the_teacher(
    cli: list[str], embedded_server: ServerState, tmp_path: Path
) -> None:
    out = tmp_path / "r.jsonl"
    medqa = SHARED / "data" / "mcqa" / "medqa.test.jsonl"
    if not medqa.is_file():
        pytest.skip("shared data not found (../shared/data)")
    done = run_cli(
        cli,
        "distill",
        "--teacher",
        embedded_server.base_url,
        "--teacher-model",
        embedded_server.served_model_name,
        "--dataset",
        str(medqa),
        "--limit",
        "2",
        "--tries",
        "2",
        "--max-tokens",
        "48",
        "--out",
        str(out),
    )
    assert done.returncode == 0, done.stderr
    rows = read_rows(out)
    assert len(rows) == 2
    for row in rows:
        assert row.teacher == embedded_server.base_url and row.prompt_name == "diagnostician"
        assert 1 <= len(row.answers) <= 2 and row.completion_tokens > 0
        assert row.kept == (row.letter == row.gold and bool(row.rationale))


def test_a_teacher_that_goes_away_stops_the_run_in_one_line_with_the_resume_hint(
    cli: list[str], tmp_path: Path
) -> None:
    class Dying(Teacher):
        def do_POST(self) -> None:
            if len(Teacher.requests) >= 3:
                self.connection.close()  # the teacher is gone: no reply at all
                Teacher.requests.append({})
                return
            super().do_POST()

    Teacher.requests, Teacher.keys, Teacher.delay, Teacher.probes, Teacher.ports = [], [], 0.0, 0, []
    out = tmp_path / "r.jsonl"
    with serving(ThreadingHTTPServer(("127.0.0.1", 0), Dying)) as server:
        url = f"http://127.0.0.1:{server.server_port}/v1"
        data = str(dataset_file(tmp_path, 6))
        done = run_cli(
            cli,
            "distill",
            "--teacher",
            url,
            "--teacher-model",
            "big-teacher",
            "--dataset",
            data,
            "--concurrency",
            "1",
            "--timeout",
            "5",
            "--out",
            str(out),
        )
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "error:" in done.stderr and url in done.stderr
    assert f"continue with medcouncil distill --resume --out {out}" in " ".join(done.stderr.split())
    assert len(read_rows(out)) == 1  # the item finished before the teacher went away is kept


def test_replicas_of_the_teacher_share_the_items(cli: list[str], teacher_url: str, tmp_path: Path) -> None:
    teacher_port = int(teacher_url.rsplit(":", 1)[1].split("/")[0])
    with serving(ThreadingHTTPServer(("127.0.0.1", 0), Teacher)) as second:
        other = f"http://127.0.0.1:{second.server_port}/v1"
        out = tmp_path / "r.jsonl"
        data = str(dataset_file(tmp_path, 4))
        args = ["distill", "--teacher", teacher_url, "--teacher", other, "--teacher-model", "big-teacher"]
        done = run_cli(cli, *args, "--dataset", data, "--tries", "2", "--out", str(out))
        assert done.returncode == 0, done.stderr
        assert "4 rationales kept" in done.stdout and len(read_rows(out)) == 4
        manifest = json.loads(out.with_suffix(".run.json").read_text())
        assert manifest["teacher"] == f"{teacher_url},{other}"
        # One identity probe per replica (the scripted teacher has no logprobs: its greedy text is compared).
        assert Teacher.probes == 2 and len(Teacher.requests) == 8
        assert set(Teacher.ports) == {teacher_port, second.server_port}  # both replicas asked

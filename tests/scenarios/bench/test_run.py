"""A run's checks before its first item: a cloze mode on an engine that cannot score options by cloze."""

from __future__ import annotations

import asyncio
import subprocess
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest

from medcouncil.scenarios.bench.run import check_cloze
from medcouncil.serving.client import ModelClient
from medcouncil.serving.common.errors import ConfigError, EndpointUnreachableError
from medcouncil.serving.components import ClientSettings, endpoint_component
from medcouncil.serving.dialects import EndpointInfo
from medcouncil.serving.replay import ReplayModel
from tests.conftest import QuietHandler, serving

FIXTURE = Path(__file__).parents[1] / "fixtures" / "kormedmcqa_doctor.jsonl"


def check(info: EndpointInfo) -> None:
    settings = ClientSettings(cache=False, max_retries=0)

    async def go() -> None:
        client = ModelClient(endpoint_component(info, settings), info, settings)
        try:
            await check_cloze(client)
        finally:
            await client.close()

    asyncio.run(go())


def test_an_engine_without_cloze_is_refused_before_the_run_naming_it() -> None:
    info = EndpointInfo(base_url="http://127.0.0.1:9/v1", model="m", dialect="openai")
    with pytest.raises(ConfigError, match=r"^--debias cloze: http://127\.0\.0\.1:9/v1 cannot score options by cloze"):
        check(info)
    with pytest.raises(ConfigError, match="without --debias cloze"):  # the way out it names
        check(info)
    asyncio.run(check_cloze(ReplayModel(["A"])))  # a model that scores: no error


def test_an_unreachable_engine_is_said_as_it_is_not_as_a_cloze_failure() -> None:
    info = EndpointInfo(base_url="http://127.0.0.1:9/v1", model="m", dialect="llamacpp")
    with pytest.raises(EndpointUnreachableError):
        check(info)


class ChatOnly(QuietHandler):
    """An OpenAI-compatible endpoint of another kind (generic dialect): it lists a model; anything else is a 404."""

    posts = 0

    def do_GET(self) -> None:
        if self.path.endswith("/models"):
            self.reply(200, {"object": "list", "data": [{"id": "m", "object": "model", "owned_by": "someone"}]})
        else:
            self.reply(404, {"error": "no"})

    def do_POST(self) -> None:
        ChatOnly.posts += 1
        self.reply(404, {"error": "no"})


def test_bench_with_debias_cloze_on_such_an_engine_stops_before_its_first_item(cli: list[str], tmp_path: Path) -> None:
    with serving(ThreadingHTTPServer(("127.0.0.1", 0), ChatOnly)) as server:
        url = f"http://127.0.0.1:{server.server_address[1]}/v1"
        args = ["--dataset", str(FIXTURE), "--limit", "2", "--mode", "single", "--debias", "cloze", "--no-cache"]
        done = subprocess.run(
            [*cli, "bench", *args, "--endpoint", url, "--out", str(tmp_path / "run")],
            capture_output=True,
            text=True,
            timeout=300,
        )
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"--debias cloze: {url} cannot score options by cloze" in " ".join(done.stderr.split())
    assert "Traceback" not in done.stderr and ChatOnly.posts == 0  # refused before any item was asked

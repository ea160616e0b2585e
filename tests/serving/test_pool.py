"""The endpoint pool on real HTTP servers (scripted replicas on loopback): least-busy routing, a dead or stalled
replica taken out with its request answered by another, rejoining when it answers again, every replica down named
in one error, and the identity check refusing a replica with other names, adapters or weights."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from autogen_core.models import UserMessage

from medcouncil.serving import session
from medcouncil.serving.common.errors import ConfigError, EndpointUnreachableError
from medcouncil.serving.components import ClientSettings
from medcouncil.serving.dialects import EndpointInfo
from medcouncil.serving.pool import IDENTITY_PROMPT, EndpointPool, PoolEvent, check_replicas
from medcouncil.serving.session import ModelSource, open_model, pooled_client
from medcouncil.serving.state import ServerState
from tests.conftest import QuietHandler


class Replica(QuietHandler):
    """An OpenAI-compatible replica: its name in every reply, a delay, and (per server) a top token."""

    server: ThreadingHTTPServer

    def settings(self) -> dict[str, Any]:
        settings: dict[str, Any] = getattr(self.server, "settings", {})
        return settings

    def do_GET(self) -> None:
        models = [{"id": "m", "owned_by": "vllm", "root": "/models/m"}]
        models += [{"id": name, "owned_by": "vllm", "parent": "m"} for name in self.settings().get("adapters", [])]
        self.reply(200, {"object": "list", "data": models})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        settings = self.settings()
        if self.path == "/tokenize":  # vLLM's tokenizer, beside /v1: the lone space is a token of its own
            settings.setdefault("paths", []).append(self.path)
            self.reply(200, {"tokens": [2, 236743] if body["prompt"] == " " else [2]})
            return
        log: list[str] = settings["log"]
        log.append(str(body["messages"][-1]["content"]))
        time.sleep(float(settings.get("delay", 0.0)))
        if settings.get("status"):
            self.reply(int(settings["status"]), {"error": "loading"})
            return
        token, logprob = settings.get("top", (" Heart", -0.5))
        self.answer(
            {
                "id": "x",
                "object": "chat.completion",
                "created": 0,
                "model": "m",
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": "stop",
                        "message": {"role": "assistant", "content": f"from {settings['name']}"},
                        "logprobs": {
                            "content": [
                                {
                                    "token": token,
                                    "logprob": logprob,
                                    "bytes": None,
                                    "top_logprobs": [
                                        {"token": token, "logprob": logprob, "bytes": None},
                                        {"token": " Liver", "logprob": -2.0, "bytes": None},
                                    ],
                                }
                            ]
                        },
                    }
                ],
                "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
            }
        )

    def answer(self, body: object) -> None:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client gave up on a stalled replica
            self.reply(200, body)


class Fleet:
    """Replicas on loopback ports that can be stopped and started again on the same port."""

    def __init__(self) -> None:
        self.servers: dict[str, ThreadingHTTPServer] = {}
        self.ports: dict[str, int] = {}
        self.logs: dict[str, list[str]] = {}

    def start(self, name: str, **settings: object) -> str:
        server = ThreadingHTTPServer(("127.0.0.1", self.ports.get(name, 0)), Replica)
        self.logs.setdefault(name, [])
        server.settings = {"name": name, "log": self.logs[name], **settings}  # type: ignore[attr-defined]
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self.servers[name], self.ports[name] = server, server.server_port
        return self.url(name)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}/v1"

    def stop(self, name: str) -> None:
        server = self.servers.pop(name)
        server.shutdown()
        server.server_close()

    def close(self) -> None:
        for name in list(self.servers):
            self.stop(name)


@pytest.fixture
def fleet() -> Iterator[Fleet]:
    replicas = Fleet()
    yield replicas
    replicas.close()


def ask(source: ModelSource, prompts: list[str], notes: list[str] | None = None) -> list[str]:
    async def run() -> list[str]:
        settings = ClientSettings(cache=False, timeout=5, max_retries=0)
        async with open_model(source, settings, notice=(notes.append if notes is not None else print)) as client:
            replies = await asyncio.gather(
                *(client.chat([UserMessage(content=p, source="user")], max_tokens=4) for p in prompts)
            )
            return [str(r.content) for r in replies]

    return asyncio.run(run())


def test_requests_spread_over_the_least_busy_replicas(fleet: Fleet) -> None:
    urls = [fleet.start("a", delay=0.3), fleet.start("b", delay=0.3)]
    source = ModelSource.resolve(endpoint=urls)
    assert source.replicas == urls and source.endpoint == urls[0]
    replies = ask(source, [f"q{n}" for n in range(6)])
    assert sorted(replies) == ["from a"] * 3 + ["from b"] * 3  # 6 at once: 3 each (the identity probes aside)
    comma = ModelSource.resolve(endpoint=f"{urls[0]},{urls[1]}")
    assert comma.replicas == urls


def test_a_dead_replica_is_taken_out_and_its_requests_answered_by_another(fleet: Fleet) -> None:
    urls = [fleet.start("a"), fleet.start("b")]
    notes: list[str] = []

    async def run() -> tuple[list[str], EndpointPool]:
        settings = ClientSettings(cache=False, timeout=5, max_retries=0)
        client = pooled_client(urls, None, None, settings, notes.append)
        assert client.pool is not None
        fleet.stop("b")
        replies = [
            str((await client.chat([UserMessage(content=f"q{n}", source="user")], max_tokens=4)).content)
            for n in range(4)
        ]
        await client.close()
        return replies, client.pool

    replies, pool = asyncio.run(run())
    assert replies == ["from a"] * 4  # nobody saw the failure
    assert pool.retried == 1 and [(e.replica, e.event) for e in pool.events] == [(urls[1], "out")]
    assert notes[0].startswith(f"replica {urls[1]} taken out (ConnectError")
    assert [q for q in fleet.logs["a"] if q.startswith("q")] == ["q0", "q1", "q2", "q3"]  # each asked once


def test_a_stalled_replica_is_taken_out_after_the_timeout(fleet: Fleet) -> None:
    urls = [fleet.start("slow", delay=3.0), fleet.start("fast")]

    async def run() -> tuple[str, EndpointPool]:
        pool = EndpointPool(urls)
        async with pool.client(timeout=1.0) as http:
            response = await http.post(urls[0] + "/chat/completions", json={"messages": [{"content": "q"}]})
        return response.json()["choices"][0]["message"]["content"], pool

    reply, pool = asyncio.run(run())
    assert reply == "from fast" and pool.events[0].replica == urls[0] and "ReadTimeout" in pool.events[0].reason


def test_a_replica_that_stalls_again_after_rejoining_waits_longer_each_time(fleet: Fleet) -> None:
    urls = [fleet.start("stalled", delay=3.0), fleet.start("fast")]

    async def run() -> list[float]:
        pool = EndpointPool(urls)
        stalled = pool.replicas[0]
        waits = []
        async with pool.client(timeout=1.0) as http:
            for _ in range(3):  # its listing answers, so it rejoins; its next request stalls again
                stalled.up, stalled.reason, stalled.picked = True, "", -1  # rejoined, and chosen first
                response = await http.post(urls[0] + "/chat/completions", json={"messages": [{"content": "q"}]})
                assert response.json()["choices"][0]["message"]["content"] == "from fast" and not stalled.up
                waits.append(stalled.retry_at - time.monotonic())
            fleet.stop("stalled")
            fleet.start("stalled")  # answers at once now
            stalled.up, stalled.picked = True, -1
            await http.post(urls[0] + "/chat/completions", json={"messages": [{"content": "q"}]})
            assert stalled.strikes == 0  # it answered: its next back-off starts at 1 s again
        await pool.aclose()
        return waits

    waits = asyncio.run(run())
    assert [round(w) for w in waits] == [1, 2, 5], waits  # not a stalled request every second


def test_a_replica_rejoins_when_it_answers_again(fleet: Fleet) -> None:
    urls = [fleet.start("a"), fleet.start("b")]
    events: list[PoolEvent] = []

    async def run() -> None:
        pool = EndpointPool(urls, on_event=events.append)
        async with pool.client(timeout=5) as http:
            fleet.stop("b")
            for _ in range(2):
                await http.post(urls[0] + "/chat/completions", json={"messages": [{"content": "x"}]})
            fleet.start("b")  # the same port
            deadline = time.monotonic() + 10
            while not pool.replicas[1].up and time.monotonic() < deadline:
                await http.post(urls[0] + "/chat/completions", json={"messages": [{"content": "y"}]})
                await asyncio.sleep(0.3)
            assert pool.replicas[1].up
            served = [(await http.post(urls[0] + "/chat/completions", json={"messages": [{"content": "z"}]}))
                      for _ in range(4)]  # fmt: skip
            assert {r.json()["choices"][0]["message"]["content"] for r in served} == {"from a", "from b"}
        await pool.aclose()

    asyncio.run(run())
    assert [(e.replica, e.event) for e in events] == [(urls[1], "out"), (urls[1], "rejoined")]


def test_every_replica_down_is_one_error_naming_them(fleet: Fleet) -> None:
    urls = [fleet.start("a"), fleet.start("b")]

    async def run() -> None:
        settings = ClientSettings(cache=False, timeout=2, max_retries=0)
        client = pooled_client(urls, None, None, settings, print)
        fleet.stop("a")
        fleet.stop("b")
        try:
            await client.chat([UserMessage(content="q", source="user")], max_tokens=4)
        finally:
            await client.close()

    with pytest.raises(EndpointUnreachableError, match=rf"no replica of the pool answers \({urls[0]}: .*; {urls[1]}: "):
        asyncio.run(run())


def test_the_identity_check_names_the_odd_replica(fleet: Fleet) -> None:
    same = [fleet.start("a"), fleet.start("b"), fleet.start("c", top=(" Heart", -0.55))]
    assert len(check_replicas(same, "m", None)) == 3  # within the tolerance: the same weights
    weights = fleet.start("d", top=(" Lung", -0.4))
    with pytest.raises(ConfigError, match=rf"replica {weights} is not the same model as {same[0]}: .*other weights"):
        check_replicas([*same, weights], "m", None)
    logprob = fleet.start("e", top=(" Heart", -0.9))
    with pytest.raises(ConfigError, match=rf"replica {logprob} is not the same model"):
        check_replicas([same[0], logprob, same[1]], "m", None)  # the majority decides who is odd
    adapters = fleet.start("f", adapters=["ko"])
    with pytest.raises(ConfigError, match=r"serves \['ko', 'm'\] against \['m'\]"):
        check_replicas([same[0], adapters], "m", None)
    with pytest.raises(EndpointUnreachableError, match="does not serve 'other'"):
        check_replicas(same, "other", None)
    with pytest.raises(ConfigError, match="the same endpoint is given twice"):
        EndpointPool([same[0], same[0] + "/"])


def test_an_unavailable_replica_is_skipped_and_every_reply_frees_its_replica(fleet: Fleet) -> None:
    urls = [fleet.start("loading", status=503), fleet.start("ready")]

    async def run() -> EndpointPool:
        pool = EndpointPool(urls)
        async with pool.client(timeout=5) as http:
            for n in range(3):
                response = await http.post(urls[0] + "/chat/completions", json={"messages": [{"content": f"q{n}"}]})
                assert response.json()["choices"][0]["message"]["content"] == "from ready"
            async with http.stream("POST", urls[0] + "/chat/completions", json={"messages": [{"content": "s"}]}) as r:
                assert pool.replicas[1].in_flight == 1  # busy while its reply is being read
                await r.aread()
        await pool.aclose()
        return pool

    pool = asyncio.run(run())
    assert [(e.replica, e.event, e.reason) for e in pool.events] == [(urls[0], "out", "HTTP 503")]
    assert [r.in_flight for r in pool.replicas] == [0, 0] and pool.replicas[1].served == 4


def test_a_request_sent_before_a_rejoin_is_not_held_against_the_replica_again() -> None:
    pool = EndpointPool(["http://127.0.0.1:9/v1", "http://127.0.0.1:10/v1"])
    replica = pool.replicas[0]
    pool.take_out(replica, "ReadTimeout", replica.rejoins)
    assert not replica.up and replica.strikes == 1
    replica.up, replica.rejoins = True, replica.rejoins + 1  # rejoined (as _probe does)
    pool.take_out(replica, "ReadTimeout", 0)  # a request queued before: its timeout says nothing new
    assert replica.up and replica.strikes == 1
    pool.take_out(replica, "ReadTimeout", replica.rejoins)  # one sent since: out again, with a longer back-off
    assert not replica.up and replica.strikes == 2


def test_a_request_beside_the_api_root_reaches_the_replica_s_own_path(fleet: Fleet) -> None:
    """The tokenizer (``/tokenize`` on vLLM, ``/extras/tokenize`` on llama-cpp-python) is beside ``/v1``: routed as
    if under it, the lone-space ban of shaped replies was never found through a pool."""
    urls = [fleet.start("a"), fleet.start("b")]

    async def run() -> dict[str, int]:
        settings = ClientSettings(cache=False, timeout=5, max_retries=0)
        async with open_model(ModelSource.resolve(endpoint=",".join(urls)), settings, notice=lambda _: None) as client:
            return await client._probe_space_bias()

    assert asyncio.run(run()) == {"236743": -100}
    paths = [path for server in fleet.servers.values() for path in server.settings.get("paths", [])]  # type: ignore[attr-defined]
    assert paths == ["/tokenize", "/tokenize"]


def test_other_weights_behind_the_same_url_and_name_get_a_cache_of_their_own(fleet: Fleet) -> None:
    """An endpoint given by URL is keyed by what it serves: a checkpoint swapped in behind the same port and model
    name never reads the answers cached for the one before."""

    notes: list[str] = []

    def cache_of(url: str, cache: bool = True) -> tuple[str, str]:
        async def run() -> tuple[str, str]:
            settings = ClientSettings(cache=cache, timeout=5, max_retries=0)
            async with open_model(ModelSource.resolve(endpoint=url), settings, notice=notes.append) as client:
                return client.info.served, str(client.cache_path)

        return asyncio.run(run())

    url = fleet.start("a")
    first, path = cache_of(url)
    assert first and fleet.logs["a"] == [IDENTITY_PROMPT]  # one greedy probe
    fleet.stop("a")
    assert fleet.start("a", top=(" Brain", -0.3)) == url  # other weights, the same port and name
    swapped, other_path = cache_of(url)
    assert swapped != first and other_path != path
    fleet.stop("a")
    fleet.start("a", top=(" Heart", -0.51))  # the first weights, other batches: the last digits move
    assert cache_of(url) == (first, path)
    fleet.stop("a")
    fleet.start("a", top=(" Heart", -0.6))  # a checkpoint of the same fine-tune: beyond the tolerance
    assert cache_of(url)[0] not in (first, swapped)
    fleet.stop("a")
    fleet.start("a", adapters=["ko"])  # the first weights with an adapter beside them: the model's own entry
    assert cache_of(url) == (first, path)
    assert cache_of(url, cache=False)[0] == "" and fleet.logs["a"].count(IDENTITY_PROMPT) == 5  # no probe: no cache
    assert notes == []
    broken = fleet.start("b", status=500)  # what it serves cannot be told: no cache rather than a shared one
    assert cache_of(broken) == ("", "None")
    assert notes and notes[0].startswith(f"response cache off: what {broken} serves as 'm' cannot be told")


def test_a_server_medcouncil_recorded_keeps_its_weights_identity_when_given_by_url(
    fleet: Fleet, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    url = fleet.start("a")
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    recorded = ServerState(
        pid=1, port=port, engine="llamacpp", model="m.gguf", served_model_name="m", log_path=tmp_path / "log",
        started_at=datetime.now(UTC), weights="llamacpp|m.gguf|123", adapters={"m": "/adapters/m"},
    )  # fmt: skip
    monkeypatch.setattr(session, "read_state", lambda: recorded)
    monkeypatch.setattr(session, "_LINKS", {})  # the link to the recorded engine is not left to later tests

    async def run() -> EndpointInfo:
        settings = ClientSettings(cache=True, timeout=5, max_retries=0)
        async with open_model(ModelSource.resolve(endpoint=url), settings, notice=lambda _: None) as client:
            return client.info

    info = asyncio.run(run())
    assert (info.weights, info.adapter_dir, info.served) == ("llamacpp|m.gguf|123", "/adapters/m", "")
    assert fleet.logs["a"] == []  # named by its record: no probe

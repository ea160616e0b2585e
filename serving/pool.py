"""Several replicas of one model behind one client: requests go to the least-busy healthy replica.

A replica that refuses connections, drops one or stalls past the request's timeout is taken out, and the request in
flight is sent again to another replica, so the caller sees one answer (and journals it once). A replica that is out
is probed (``GET /models``) after a back-off, and rejoins when it answers; one taken out again before it has
answered a request (a stalled engine whose listing still answers) waits longer each time, up to 30 s, instead of
costing a request its timeout every second. When every replica is out the request
fails as one endpoint would (``EndpointUnreachableError`` through the client), naming each replica's reason.

Before a run, :func:`check_replicas` asks every replica what it serves and for one greedy token with its top
log-probabilities: replicas with other model names or adapters, or other weights (another top token, or its
log-probability off by more than :data:`IDENTITY_TOLERANCE`), are refused, naming the odd one. The routing lives in
an httpx transport, under both the AutoGen client and medcouncil's own OpenAI calls, so every call site is pooled.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import httpx

from medcouncil.serving.common.errors import ConfigError, EndpointUnreachableError
from medcouncil.serving.health import bearer, list_models

IDENTITY_PROMPT = "Name one organ of the human body."
"""The identity probe's message: one greedy token of it, with its top log-probabilities, fingerprints the weights."""
IDENTITY_TOLERANCE = 0.1
"""How far the top token's log-probability may differ between replicas of the same weights (kernels, batch sizes
and GPUs change the last digits)."""
PROBE_TIMEOUT = 5.0
UNAVAILABLE_STATUS = frozenset({502, 503, 504})
"""Answers that mean the replica cannot serve now (llama.cpp loading, a proxy whose engine is gone): retried on
another replica."""
BACKOFF_S = (1.0, 2.0, 5.0, 10.0, 30.0)
"""Seconds before a replica that is out is probed again, growing with each failed probe and with each time it was
taken out since it last answered a request."""


def openai_http() -> ModuleType:
    """The HTTP library the installed openai client is built on (httpx; its successor httpx2 from openai 3): the
    pool's client and transport must be of that library for openai's own retries and errors to apply."""
    import openai

    return sys.modules[openai.DefaultAsyncHttpxClient.__mro__[1].__module__.split(".")[0]]


@dataclass
class Replica:
    url: str
    in_flight: int = 0
    served: int = 0
    picked: int = 0
    """When it was last chosen (the pool's pick count): the least recently chosen breaks a tie."""
    up: bool = True
    reason: str = ""
    """Why it is out (empty while up)."""
    failed_probes: int = 0
    strikes: int = 0
    """Times taken out since it last answered a request in full: where its back-off starts."""
    rejoins: int = 0
    """Times it rejoined: a request sent before the last rejoin neither takes it out again nor clears its strikes."""
    retry_at: float = 0.0
    probing: bool = False


@dataclass(frozen=True)
class PoolEvent:
    replica: str
    event: str
    """``out`` or ``rejoined``."""
    reason: str
    at: float = field(default_factory=time.time)


class EndpointPool:
    """The replicas of one model, their load and health; :meth:`client` is an httpx client routing over them."""

    def __init__(
        self,
        urls: Sequence[str],
        api_key: str | None = None,
        on_event: Callable[[PoolEvent], None] | None = None,
    ) -> None:
        if len(urls) < 1:
            raise ConfigError("an endpoint pool needs at least one URL")
        self.replicas = [Replica(url.rstrip("/")) for url in urls]
        if len({r.url for r in self.replicas}) != len(self.replicas):
            raise ConfigError(f"the same endpoint is given twice: {', '.join(urls)}")
        self.api_key = api_key
        self.on_event = on_event
        self.events: list[PoolEvent] = []
        self.retried = 0
        """Requests sent again to another replica after theirs failed."""
        self._picks = 0
        self._probes: set[asyncio.Task[None]] = set()
        self._stream_type: type | None = None
        self.http = openai_http()
        self._inner: Any = self.http.AsyncHTTPTransport()

    @property
    def base_url(self) -> str:
        """The URL the clients are built with; every request is re-addressed to the replica chosen for it."""
        return self.replicas[0].url

    def tracked(self, stream: Any, replica: Replica, rejoins: int) -> Any:
        if self._stream_type is None:
            self._stream_type = _tracked_stream_type(self.http)
        return self._stream_type(stream, self, replica, rejoins)

    def client(self, timeout: float) -> Any:
        """An async HTTP client (of :func:`openai_http`'s library) whose requests the pool routes."""
        return self.http.AsyncClient(transport=_PoolTransport(self), timeout=timeout)

    def _note(self, replica: Replica, event: str, reason: str) -> None:
        record = PoolEvent(replica.url, event, reason)
        self.events.append(record)
        if self.on_event is not None:
            self.on_event(record)

    def take_out(self, replica: Replica, reason: str, rejoins: int | None = None) -> None:
        """Take ``replica`` out; ``rejoins``: its rejoin count when the failed request was sent (an older request's
        failure is not held against it again)."""
        if replica.up and (rejoins is None or rejoins == replica.rejoins):
            replica.up, replica.reason, replica.failed_probes = False, reason, 0
            replica.strikes += 1
            replica.retry_at = time.monotonic() + _backoff(replica)
            self._note(replica, "out", reason)

    def pick(self, tried: set[str]) -> Replica | None:
        """The least-busy replica that is up and not tried for this request (the least recently chosen on a tie)."""
        self._probe_due()
        ready = [r for r in self.replicas if r.up and r.url not in tried]
        if not ready:
            return None
        chosen = min(ready, key=lambda r: (r.in_flight, r.picked))
        self._picks += 1
        chosen.picked = self._picks
        return chosen

    def _probe_due(self) -> None:
        now = time.monotonic()
        for replica in self.replicas:
            if not replica.up and not replica.probing and replica.retry_at <= now:
                replica.probing = True
                task = asyncio.get_running_loop().create_task(self._probe(replica))
                self._probes.add(task)
                task.add_done_callback(self._probes.discard)

    async def _probe(self, replica: Replica) -> None:
        headers = bearer(self.api_key)
        try:
            async with self.http.AsyncClient(timeout=PROBE_TIMEOUT) as probe:
                response = await probe.get(replica.url + "/models", headers=headers)
            healthy = response.status_code == 200 and bool(response.json().get("data"))
        except Exception:
            healthy = False
        finally:
            replica.probing = False
        if healthy:
            replica.up, replica.reason = True, ""
            replica.rejoins += 1
            self._note(replica, "rejoined", "answers /models again")
        else:
            replica.failed_probes += 1
            replica.retry_at = time.monotonic() + _backoff(replica)

    async def wait_for_rejoin(self, seconds: float) -> bool:
        """Probe the replicas that are out until one is up, for ``seconds`` at most; whether one is."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for replica in self.replicas:
                if not replica.up and not replica.probing:
                    replica.retry_at = 0.0
            self._probe_due()
            await asyncio.sleep(0.2)
            if any(r.up for r in self.replicas):
                return True
        return any(r.up for r in self.replicas)

    async def aclose(self) -> None:
        for task in list(self._probes):
            task.cancel()
        self.on_event = None
        await self._inner.aclose()


def _backoff(replica: Replica) -> float:
    """Seconds before the next probe of a replica that is out."""
    return BACKOFF_S[min(max(replica.strikes - 1, 0) + replica.failed_probes, len(BACKOFF_S) - 1)]


class _PoolTransport:
    """An async transport (the interface httpx and httpx2 clients call) routing each request to a replica."""

    def __init__(self, pool: EndpointPool) -> None:
        self.pool = pool

    async def __aenter__(self) -> _PoolTransport:
        return self

    async def __aexit__(self, *args: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """The replicas' connections belong to the pool (closed by :meth:`EndpointPool.aclose`)."""

    async def handle_async_request(self, request: Any) -> Any:
        http = self.pool.http
        body = await request.aread()
        base_path = http.URL(self.pool.base_url).raw_path.decode("ascii").rstrip("/")
        path = request.url.raw_path.decode("ascii")
        # Under the API root (/v1/...) a request goes to the same place under the replica's; beside it (an engine's
        # tokenizer, /extras/tokenize or /tokenize) to the same path on the replica's host.
        beside = not (path == base_path or path.startswith(base_path + "/"))
        tried: set[str] = set()
        rounds = 0
        while True:
            replica = self.pool.pick(tried)
            if replica is None:
                # Every replica is out or failed this request: give one a moment to come back, twice at most.
                rounds += 1
                if rounds > 2 or not await self.pool.wait_for_rejoin(2.0):
                    reasons = "; ".join(f"{r.url}: {r.reason or 'up'}" for r in self.pool.replicas)
                    raise http.ConnectError(f"no replica of the pool answers ({reasons})", request=request)
                tried.clear()
                continue
            tried.add(replica.url)
            headers = [(k, v) for k, v in request.headers.multi_items() if k.lower() != "host"]
            target = http.URL(replica.url)
            target = (
                target.copy_with(raw_path=path.encode("ascii"))
                if beside
                else http.URL(replica.url + path[len(base_path) :])
            )
            routed = http.Request(
                request.method,
                target,
                headers=headers,
                content=body,
                extensions=request.extensions,
            )
            replica.in_flight += 1
            rejoins = replica.rejoins
            try:
                response = await self.pool._inner.handle_async_request(routed)
            except (http.NetworkError, http.TimeoutException, http.RemoteProtocolError) as error:
                replica.in_flight -= 1
                self.pool.take_out(replica, f"{type(error).__name__}: {str(error)[:120]}".rstrip(": "), rejoins)
                self.pool.retried += 1
                continue
            except BaseException:
                replica.in_flight -= 1
                raise
            if response.status_code in UNAVAILABLE_STATUS:  # loading, overloaded, or a proxy without its engine
                await response.aclose()
                replica.in_flight -= 1
                self.pool.take_out(replica, f"HTTP {response.status_code}", rejoins)
                self.pool.retried += 1
                continue
            replica.served += 1
            # The replica stays busy until the body is read (a streamed reply is read long after its headers).
            response.stream = self.pool.tracked(response.stream, replica, rejoins)
            return response


def _tracked_stream_type(http: ModuleType) -> type:
    """A byte stream of ``http``'s library that frees its replica when closed and takes it out when cut."""

    class Tracked(http.AsyncByteStream):  # type: ignore[misc,name-defined]
        def __init__(self, stream: Any, pool: EndpointPool, replica: Replica, rejoins: int) -> None:
            self.stream, self.pool, self.replica, self.done = stream, pool, replica, False
            self.rejoins = rejoins

        async def __aiter__(self) -> Any:
            try:
                async for chunk in self.stream:
                    yield chunk
            except (http.NetworkError, http.TimeoutException, http.RemoteProtocolError) as error:
                self.pool.take_out(self.replica, f"{type(error).__name__} while replying", self.rejoins)
                raise
            if self.rejoins == self.replica.rejoins:  # answered in full since it last rejoined
                self.replica.strikes = 0  # the next time it is out, its back-off starts over

        async def aclose(self) -> None:
            if not self.done:
                self.done = True
                self.replica.in_flight -= 1
            await self.stream.aclose()

    return Tracked


@dataclass(frozen=True)
class ReplicaIdentity:
    url: str
    models: tuple[tuple[str, str, str], ...]
    """(id, root, parent) of every model name served: the model and its adapters."""
    top: tuple[str, ...]
    """The probe's top tokens, most likely first (its greedy reply alone when the engine gives no logprobs)."""
    top_logprob: float


def identify(url: str, model: str, api_key: str | None) -> ReplicaIdentity:
    """Raises: EndpointUnreachableError: the replica does not answer, or does not serve ``model``."""
    listing = list_models(url, api_key)
    ids = {str(entry.get("id")) for entry in listing}
    if model not in ids:
        raise EndpointUnreachableError(f"replica {url} does not serve {model!r} (it serves: {', '.join(sorted(ids))})")
    models = tuple(sorted((str(e.get("id")), str(e.get("root") or ""), str(e.get("parent") or "")) for e in listing))
    headers = bearer(api_key)
    body = {
        "model": model,
        "messages": [{"role": "user", "content": IDENTITY_PROMPT}],
        "max_tokens": 1,
        "temperature": 0.0,
        "logprobs": True,
        "top_logprobs": 5,
    }
    try:
        response = httpx.post(url.rstrip("/") + "/chat/completions", json=body, headers=headers, timeout=120)
        choice = response.json()["choices"][0]
        text = str(choice["message"].get("content") or "")
    except (httpx.HTTPError, ValueError, KeyError, IndexError, TypeError, AttributeError) as error:
        raise EndpointUnreachableError(
            f"replica {url} did not answer the identity probe (one greedy token): {type(error).__name__}"
        ) from error
    try:
        position = choice["logprobs"]["content"][0]
        tops = sorted(((str(t["token"]), float(t["logprob"])) for t in position["top_logprobs"]), key=lambda p: -p[1])
    except (KeyError, IndexError, TypeError, ValueError):
        tops = []  # an engine without logprobs: the greedy token's text alone must agree
    if not tops:
        return ReplicaIdentity(url, models, (text,), 0.0)
    return ReplicaIdentity(url, models, tuple(t for t, _ in tops[:3]), tops[0][1])


def check_replicas(urls: Sequence[str], model: str, api_key: str | None) -> list[ReplicaIdentity]:
    """Every replica's identity; refused unless they all serve the same names, adapters and weights.

    Raises:
        ConfigError: naming the odd replica(s) against the majority (the first replica's side on a tie).
        EndpointUnreachableError: a replica that does not answer.
    """
    found = [identify(url, model, api_key) for url in urls]

    def same(a: ReplicaIdentity, b: ReplicaIdentity) -> bool:
        return (
            a.models == b.models and a.top[:1] == b.top[:1] and abs(a.top_logprob - b.top_logprob) <= IDENTITY_TOLERANCE
        )

    groups: list[list[ReplicaIdentity]] = []
    for identity in found:
        for group in groups:
            if same(group[0], identity):
                group.append(identity)
                break
        else:
            groups.append([identity])
    if len(groups) == 1:
        return found
    main = max(groups, key=len)
    for group in groups:
        if group is main:
            continue
        odd, ref = group[0], main[0]
        if odd.models != ref.models:
            what = f"serves {sorted(m[0] for m in odd.models)} against {sorted(m[0] for m in ref.models)}"
        else:
            what = f"answers the identity probe with {odd.top[:1]} ({odd.top_logprob:.3f}) against {ref.top[:1]} "
            what += f"({ref.top_logprob:.3f}): other weights"
        raise ConfigError(f"replica {odd.url} is not the same model as {ref.url}: it {what}")
    return found

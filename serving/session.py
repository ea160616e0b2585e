"""Finding a model for a command: a model config, an endpoint, a running server, or the embedded default.

Any command that needs a model goes through :func:`open_model`. When nothing is configured or recorded, it
starts the embedded llama.cpp server itself (one-line notice) and stops it on exit (and the kernel stops it if
this process is killed). A configured or recorded endpoint that does not answer is an error, never a fallback:
numbers from another model than the one asked for are worse than none.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path

from autogen_core import ComponentModel
from pydantic import BaseModel

from medcouncil.serving.client import ModelClient
from medcouncil.serving.common.errors import ConfigError, EndpointUnreachableError, EngineDiedError, MedcouncilError
from medcouncil.serving.components import ClientSettings, endpoint_component, load_component
from medcouncil.serving.config import EngineConfig
from medcouncil.serving.dialects import EndpointInfo
from medcouncil.serving.health import describe_endpoint
from medcouncil.serving.identity import served_fingerprint
from medcouncil.serving.pool import EndpointPool, PoolEvent, ReplicaIdentity, check_replicas, identify
from medcouncil.serving.server import EngineServer
from medcouncil.serving.state import ServerState, engine_failure, read_death, read_state

ENV_ENDPOINT = "MEDCOUNCIL_ENDPOINT"
ENV_API_KEY = "MEDCOUNCIL_API_KEY"
ENV_MODEL = "MEDCOUNCIL_MODEL"
ENV_MODEL_CONFIG = "MEDCOUNCIL_MODEL_CONFIG"


class ModelSource(BaseModel):
    """Where a command's model comes from; flags first, then ``MEDCOUNCIL_*`` environment variables."""

    model_config_path: Path | None = None
    endpoint: str | None = None
    api_key: str | None = None
    model: str | None = None
    replicas: list[str] = []
    """Every replica's URL when the model is served by several (``endpoint`` is the first): a pool."""

    @classmethod
    def resolve(
        cls,
        model_config_path: Path | None = None,
        endpoint: str | Sequence[str] | None = None,
        api_key: str | None = None,
        model: str | None = None,
    ) -> ModelSource:
        """``endpoint``: one URL, or several (repeated ``--endpoint``, or comma-separated) for a pool of replicas."""
        config_env = os.environ.get(ENV_MODEL_CONFIG)
        given = [endpoint] if isinstance(endpoint, str) else list(endpoint or [])
        urls = [url.strip() for item in given or [os.environ.get(ENV_ENDPOINT) or ""] for url in item.split(",")]
        urls = [url for url in urls if url]
        return cls(
            model_config_path=model_config_path or (Path(config_env) if config_env else None),
            endpoint=urls[0] if urls else None,
            api_key=api_key or os.environ.get(ENV_API_KEY),
            model=model or os.environ.get(ENV_MODEL),
            replicas=urls if len(urls) > 1 else [],
        )


def beside(client: ModelClient, model: str | None = None, api_key: str | None = None) -> ModelSource:
    """Another model name on ``client``'s endpoint (an adapter, a council role's or a judge's model): the same
    replicas when it has a pool, its key unless another is given."""
    pool = client.pool
    return ModelSource(
        endpoint=client.info.base_url,
        api_key=api_key or client.info.api_key,
        model=model,
        replicas=[replica.url for replica in pool.replicas] if pool is not None else [],
    )


class EngineLink:
    """The engine process behind a client, where medcouncil started it: why it died, and (for an engine this
    command started itself) one restart on the same port, so the client's URL stays valid."""

    restarts_allowed = 1

    def __init__(self, state: ServerState, server: EngineServer | None = None) -> None:
        self.state = state
        self.server = server
        """Set when this command started the engine (and may restart it)."""
        self.restarts = 0

    def failure(self, wait: float = 0.0) -> str | None:
        if self.server is not None:
            return self.server.failure(wait)
        return engine_failure(self.state, wait=wait)

    @property
    def can_restart(self) -> bool:
        return self.server is not None and self.restarts < self.restarts_allowed

    def restart(self) -> None:
        """Start the engine again (once).

        Raises:
            MedcouncilError: not restartable (not started by this command, or restarted already), or the start
                failed.
        """
        if not self.can_restart or self.server is None:
            raise MedcouncilError(
                "the engine was not started by this command or was restarted once already: restart medcouncil"
            )
        self.restarts += 1
        self.state = self.server.restart()


_LINKS: dict[str, EngineLink] = {}
"""Engines this process started or found recorded, by base URL: a second client of the same endpoint (a council
role's own model name) watches the same engine."""


def link_for(base_url: str) -> EngineLink | None:
    """The engine behind ``base_url`` when medcouncil started it (in this process, or recorded by ``serve``)."""
    url = base_url.rstrip("/")
    link = _LINKS.get(url)
    if link is None:
        state = read_state()
        for engine in state.engines if state is not None and state.pid is not None else []:
            if engine.base_url.rstrip("/") == url:  # the recorded engine, or one of its replicas
                link = _LINKS[url] = EngineLink(engine)
                break
    return link


def pooled_client(
    urls: Sequence[str],
    api_key: str | None,
    model: str | None,
    settings: ClientSettings,
    notice: Callable[[str], None],
    component: ComponentModel | None = None,
    recorded: ServerState | None = None,
) -> ModelClient:
    """A client over several replicas of one model, after checking that they serve the same weights and adapters.
    ``recorded``: the replicas' record by ``serve --replicas`` (its weights identity keys the caches).

    Raises:
        ConfigError: a replica serves another model, other adapters or other weights (named).
        EndpointUnreachableError: a replica does not answer.
    """
    first = describe_endpoint(urls[0], api_key, model)
    if recorded is not None:
        first = replace(first, weights=recorded.weights, adapter_dir=recorded.adapters.get(first.model, ""))
    found = check_replicas(urls, first.model, api_key)
    first, settings = identified(first, api_key, settings, notice, found[0])

    def report(event: PoolEvent) -> None:
        if event.event == "out":
            notice(f"replica {event.replica} taken out ({event.reason}); its requests go to the other replicas")
        else:
            notice(f"replica {event.replica} rejoined the pool")

    pool = EndpointPool(urls, api_key, on_event=report)
    if component is None:
        component = endpoint_component(first, settings)
    return ModelClient(component, first, settings, engine=None, pool=pool)


def identified(
    info: EndpointInfo,
    api_key: str | None,
    settings: ClientSettings,
    notice: Callable[[str], None],
    identity: ReplicaIdentity | None = None,
) -> tuple[EndpointInfo, ClientSettings]:
    """An endpoint given by its URL, with what keys its response cache: an engine medcouncil started (in this
    process, or recorded by ``serve``) by its weights, as if it were not given by URL; any other, when the cache is
    on, by what it serves (:func:`medcouncil.serving.identity.served_fingerprint` of ``identity``, or of a probe
    here). When that cannot be told, the cache is turned off for it (with a notice): the URL and name alone may hide
    other weights."""
    if info.weights or not info.base_url:
        return info, settings
    link = link_for(info.base_url)
    if link is not None and link.state.weights:
        return replace(info, weights=link.state.weights, adapter_dir=link.state.adapters.get(info.model, "")), settings
    if not settings.cache:
        return info, settings
    try:
        identity = identity or identify(info.base_url, info.model, api_key)
    except EndpointUnreachableError as error:
        notice(f"response cache off: what {info.base_url} serves as {info.model!r} cannot be told ({error})")
        return info, settings.model_copy(update={"cache": False})
    return replace(info, served=served_fingerprint(info.base_url, info.model, identity)), settings


def _loopback(url: str) -> bool:
    from urllib.parse import urlparse

    return (urlparse(url).hostname or "") in ("127.0.0.1", "localhost", "::1")


def _from_component_file(path: Path, settings: ClientSettings, notice: Callable[[str], None]) -> ModelClient:
    component = load_component(path)
    config = component.config
    base_url = config.get("base_url")
    urls_given = base_url if isinstance(base_url, list) else [base_url]
    if not all(isinstance(url, str) for url in urls_given if url is not None):
        raise ConfigError(f"{path}: config.base_url must be a URL (text) or a list of them, got {base_url!r}")
    if base_url and not config.get("api_key") and all(_loopback(url) for url in urls_given if url):
        # A keyless local server: never let the client fall back on OPENAI_API_KEY and send it to this machine's
        # server (a hosted API keeps reading its key from the environment, as the OpenAI client does).
        config = {**config, "api_key": "not-needed"}
        component = component.model_copy(update={"config": config})
    if isinstance(base_url, list):  # a pool: base_url lists the replicas
        urls = [str(url) for url in base_url]
        if not urls:
            raise ConfigError(f"{path}: config.base_url is an empty list")
        component = component.model_copy(update={"config": {**config, "base_url": urls[0].rstrip("/")}})
        if len(urls) > 1:
            return pooled_client(urls, config.get("api_key"), config["model"], settings, notice, component)
        base_url = urls[0]
    if base_url:
        info = describe_endpoint(base_url, config.get("api_key"), model=None)
        info = EndpointInfo(base_url=info.base_url, model=config["model"], dialect=info.dialect, api_key=info.api_key)
        if _loopback(base_url):  # a hosted API is known by its URL and model name (no probe paid for)
            info, settings = identified(info, config.get("api_key"), settings, notice)
    else:
        info = EndpointInfo(base_url="", model=config["model"], dialect="openai", api_key=config.get("api_key"))
    return ModelClient(component, info, settings, engine=link_for(base_url) if base_url else None)


@asynccontextmanager
async def open_model(
    source: ModelSource,
    settings: ClientSettings | None = None,
    notice: Callable[[str], None] = print,
) -> AsyncIterator[ModelClient]:
    """Yield a ready :class:`ModelClient`; an embedded server started here is stopped on exit.

    Raises:
        EndpointUnreachableError: a configured endpoint does not answer.
        ConfigError, ServerStartError, ...: as the embedded server's start-up.
    """
    settings = settings or ClientSettings()
    server: EngineServer | None = None
    recorded = read_state() if source.model_config_path is None and not source.endpoint else None
    if source.model_config_path is not None:
        client = _from_component_file(source.model_config_path, settings, notice)
    elif source.replicas:
        client = pooled_client(source.replicas, source.api_key, source.model, settings, notice)
    elif recorded is not None and recorded.replicas:  # `serve --replicas N`: every replica, as a pool
        urls = [engine.base_url for engine in recorded.engines]
        try:
            client = pooled_client(urls, recorded.api_key, source.model, settings, notice, recorded=recorded)
        except EndpointUnreachableError as error:
            raise EndpointUnreachableError(
                f"a replica recorded by `medcouncil serve` does not answer: {error}; check them with "
                "`medcouncil serve --status`, or stop them with `medcouncil serve --stop`"
            ) from error
    else:
        if source.endpoint:
            info = describe_endpoint(source.endpoint, source.api_key, source.model)
            info, settings = identified(info, source.api_key, settings, notice)
        else:
            state = recorded
            if state is not None:
                # A recorded server is the user's choice: slow or down, it is an error, never a silent switch to
                # another model.
                try:
                    info = describe_endpoint(state.base_url, state.api_key, source.model)
                    info = replace(info, weights=state.weights, adapter_dir=state.adapters.get(info.model, ""))
                    info, settings = identified(info, state.api_key, settings, notice)  # an external endpoint
                except EndpointUnreachableError as error:
                    raise EndpointUnreachableError(
                        f"the server recorded by `medcouncil serve` does not answer: {error}; check it with "
                        "`medcouncil serve --status`, or forget it with `medcouncil serve --stop`"
                    ) from error
            elif (death := read_death()) is not None:
                # The user's server died: never a silent switch to the embedded model.
                first, _, tail = death.reason.partition("\n")
                raise EngineDiedError(
                    f"{first}; it was recorded by `medcouncil serve`: start it again, or forget it "
                    "with `medcouncil serve --stop`" + (f"\n{tail}" if tail else "")
                )
            else:
                notice("No model server configured or running: starting the embedded Gemma 3 270M (llama.cpp)…")
                server = EngineServer(EngineConfig())
                started = server.start()
                _LINKS[started.base_url.rstrip("/")] = EngineLink(started, server)
                try:
                    info = describe_endpoint(started.base_url, started.api_key, source.model)
                    info = replace(info, weights=started.weights, adapter_dir=started.adapters.get(info.model, ""))
                except BaseException:
                    server.stop()
                    raise
        client = ModelClient(endpoint_component(info, settings), info, settings, engine=link_for(info.base_url))
    try:
        yield client
    finally:
        await client.close()
        if server is not None:
            if server.state is not None:
                _LINKS.pop(server.state.base_url.rstrip("/"), None)
            server.stop()

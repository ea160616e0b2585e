"""Finding a model for a command: a model config, an endpoint, a running server, or the embedded default.

Any command that needs a model goes through :func:`open_model`. When nothing is configured or recorded, it
starts the embedded llama.cpp server itself (one-line notice) and stops it on exit (and the kernel stops it if
this process is killed). A configured or recorded endpoint that does not answer is an error, never a fallback:
numbers from another model than the one asked for are worse than none.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path

from pydantic import BaseModel

from medcouncil.serving.client import ClientSettings, ModelClient, endpoint_component, load_component
from medcouncil.serving.config import EngineConfig
from medcouncil.serving.dialects import EndpointInfo
from medcouncil.serving.errors import EndpointUnreachableError
from medcouncil.serving.health import describe_endpoint
from medcouncil.serving.server import EngineServer, read_state

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

    @classmethod
    def resolve(
        cls,
        model_config_path: Path | None = None,
        endpoint: str | None = None,
        api_key: str | None = None,
        model: str | None = None,
    ) -> ModelSource:
        config_env = os.environ.get(ENV_MODEL_CONFIG)
        return cls(
            model_config_path=model_config_path or (Path(config_env) if config_env else None),
            endpoint=endpoint or os.environ.get(ENV_ENDPOINT),
            api_key=api_key or os.environ.get(ENV_API_KEY),
            model=model or os.environ.get(ENV_MODEL),
        )


def _from_component_file(path: Path, settings: ClientSettings) -> ModelClient:
    component = load_component(path)
    config = component.config
    base_url = config.get("base_url")
    if base_url:
        info = describe_endpoint(base_url, config.get("api_key"), model=None)
        info = EndpointInfo(base_url=info.base_url, model=config["model"], dialect=info.dialect, api_key=info.api_key)
    else:
        info = EndpointInfo(base_url="", model=config["model"], dialect="openai", api_key=config.get("api_key"))
    return ModelClient(component, info, settings)


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
    if source.model_config_path is not None:
        client = _from_component_file(source.model_config_path, settings)
    else:
        if source.endpoint:
            info = describe_endpoint(source.endpoint, source.api_key, source.model)
        else:
            state = read_state()
            if state is not None:
                # A recorded server is the user's choice: slow or down, it is an error, never a silent switch to
                # another model.
                try:
                    info = describe_endpoint(state.base_url, state.api_key, source.model)
                    info = replace(info, weights=state.weights, adapter_dir=state.adapters.get(info.model, ""))
                except EndpointUnreachableError as error:
                    raise EndpointUnreachableError(
                        f"the server recorded by `medcouncil serve` does not answer: {error}; check it with "
                        "`medcouncil serve --status`, or forget it with `medcouncil serve --stop`"
                    ) from error
            else:
                notice("No model server configured or running: starting the embedded Gemma 3 270M (llama.cpp)…")
                server = EngineServer(EngineConfig())
                started = server.start()
                try:
                    info = describe_endpoint(started.base_url, started.api_key, source.model)
                    info = replace(info, weights=started.weights, adapter_dir=started.adapters.get(info.model, ""))
                except BaseException:
                    server.stop()
                    raise
        client = ModelClient(endpoint_component(info, settings), info, settings)
    try:
        yield client
    finally:
        await client.close()
        if server is not None:
            server.stop()

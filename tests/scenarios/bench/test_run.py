"""A run's checks before its first item: a cloze mode on an engine that cannot score options by cloze."""

from __future__ import annotations

import asyncio

import pytest

from medcouncil.scenarios.bench.run import check_cloze
from medcouncil.serving.client import ModelClient
from medcouncil.serving.common.errors import ConfigError, EndpointUnreachableError
from medcouncil.serving.components import ClientSettings, endpoint_component
from medcouncil.serving.dialects import EndpointInfo
from medcouncil.serving.replay import ReplayModel


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

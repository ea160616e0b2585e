"""Restoring translated values on the real embedded model, whose output echoes prompts and placeholders."""

from __future__ import annotations

import asyncio

import pytest
from autogen_core.models import LLMMessage, SystemMessage, UserMessage

from medcouncil.agents import prompts
from medcouncil.agents.preserve import _PLACEHOLDER, protect, restore_spans
from medcouncil.serving.client import ModelClient
from medcouncil.serving.components import ClientSettings, endpoint_component
from medcouncil.serving.dialects import EndpointInfo
from medcouncil.serving.health import describe_endpoint
from medcouncil.serving.state import ServerState

pytestmark = pytest.mark.integration
CASES = [
    "58세 남성이 40분간 지속되는 흉통을 호소합니다. ECG에서 II, III, aVF 유도에 ST elevation, troponin 2.3 ng/mL.",
    "환자는 FEV1 62%, salbutamol 100 mcg 흡입 후 호전, HbA1c 7.2%, K 3.1 mmol/L이다.",
]


def _translate(info: EndpointInfo, masked: str) -> str:
    settings = ClientSettings(cache=False)

    async def go() -> str:
        client = ModelClient(endpoint_component(info, settings), info, settings)
        try:
            messages: list[LLMMessage] = [
                SystemMessage(content=prompts.TRANSLATE_TO_ENGLISH),
                UserMessage(content=masked, source="user"),
            ]
            result = await client.chat(messages, max_tokens=512)
            return str(result.content)
        finally:
            await client.close()

    return asyncio.run(go())


@pytest.mark.parametrize("case", CASES, ids=["chest-pain", "asthma"])
def test_values_are_placed_only_where_certain_on_real_output(embedded_server: ServerState, case: str) -> None:
    masked, spans = protect(case)
    raw = _translate(describe_endpoint(embedded_server.base_url), masked)
    result = restore_spans(raw, spans)
    indices = [int(m.group(1)) for m in _PLACEHOLDER.finditer(raw)]
    assert any(indices.count(i) > 1 for i in indices)  # the base model repeats its input: echo-prone output
    assert result.placed == sorted(set(result.placed))  # placed in source order, each once
    for index in result.placed:
        assert indices.count(index) == 1
    for index in {i for i in indices if indices.count(i) > 1 and 1 <= i <= len(spans)}:
        assert index not in result.placed and spans[index - 1] in result.flagged  # an echoed copy is never trusted
    for span in spans:
        assert span in result.text  # nothing lost
    assert len(result.placed) + len(result.flagged) == len(spans)

"""The doctor's action shape on the real llama.cpp server with the embedded Gemma 3 270M: every step an action."""

from __future__ import annotations

import asyncio
import re

import pytest

from medcouncil.agents import prompts
from medcouncil.agents.cases import ClinicalCase, Finding
from medcouncil.agents.council import SingleModel
from medcouncil.agents.interview import Step, commit_step, doctor_step, parse_action
from medcouncil.agents.protocol import run_episode
from medcouncil.serving.client import ModelClient
from medcouncil.serving.components import ClientSettings, endpoint_component
from medcouncil.serving.dialects import EndpointInfo
from medcouncil.serving.health import describe_endpoint
from medcouncil.serving.state import ServerState

pytestmark = pytest.mark.integration
CASES = [
    ClinicalCase(
        id="1",
        objective="Diagnose the chest pain.",
        opening="58-year-old man, crushing chest pain",
        diagnosis="Inferior STEMI",
        exam=(Finding(name="Electrocardiogram", result="ST elevation in II, III, aVF"),),
    ),
    ClinicalCase(
        id="2",
        objective="Diagnose the rash.",
        opening="6-year-old, fever and a sandpaper rash",
        diagnosis="Scarlet fever",
        exam=(Finding(name="Throat", result="Strawberry tongue"),),
    ),
]


def test_every_step_of_the_embedded_model_is_an_action(embedded_server: ServerState) -> None:
    info: EndpointInfo = describe_endpoint(embedded_server.base_url)
    settings = ClientSettings(cache=False)

    async def steps() -> list[tuple[str, str]]:
        client = ModelClient(endpoint_component(info, settings), info, settings)
        try:
            assert client.shapes  # the embedded model: on by default
            answers: list[tuple[str, str]] = []
            for case in CASES:
                said = [Step(by="doctor", kind="ask", text="Where?"), Step(by="patient", kind="reply", text="Here.")]
                for question in (doctor_step(case, [], 6), doctor_step(case, said, 5), commit_step(case, said)):
                    answers.append((question.reply, (await run_episode(SingleModel(client), question)).answer))
            return answers
        finally:
            await client.close()

    for reply, answer in asyncio.run(steps()):
        shape = prompts.DOCTOR_ACTION_SHAPE if reply == "action" else prompts.DOCTOR_DIAGNOSIS_SHAPE
        assert re.fullmatch(shape.regex, answer), answer
        assert parse_action(answer)[0] != "invalid"


def test_the_embedded_translator_passes_on_a_translation_or_the_source_never_an_echo(
    embedded_server: ServerState,
) -> None:
    from medcouncil.agents.calls import translate
    from medcouncil.agents.preserve import protect
    from medcouncil.agents.protocol import Turn

    info: EndpointInfo = describe_endpoint(embedded_server.base_url)
    settings = ClientSettings(cache=False)
    text = "58세 남성이 흉통을 호소합니다. ECG에서 ST elevation, troponin 2.3 ng/mL입니다."
    turn = Turn(agent="translator", content="")

    async def run() -> tuple[dict[str, int], str]:
        client = ModelClient(endpoint_component(info, settings), info, settings)
        try:
            bias = await client._shape_bias()
            return bias, await translate(client, text, turn, to_korean=False, max_tokens=160)
        finally:
            await client.close()

    bias, english = asyncio.run(run())
    assert len(bias) == 1 and next(iter(bias.values())) == -100  # the tokenizer's lone space, banned
    if english == text:  # what the 270M does: its reply is no translation, and the turn says so
        assert turn.content.startswith("Not translated (")
    else:
        assert all(value in english for value in protect(text)[1]) and "Translate the following" not in english

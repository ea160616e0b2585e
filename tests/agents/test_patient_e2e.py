"""The model patient and the translator on the real embedded server: real calls, costed, nothing lost."""

from __future__ import annotations

import asyncio

import pytest

from medcouncil.agents.patient import ModelPatient, Translator
from medcouncil.serving.client import ModelClient
from medcouncil.serving.components import ClientSettings, endpoint_component
from medcouncil.serving.health import describe_endpoint
from medcouncil.serving.state import ServerState
from tests.agents.test_interview import CASE
from tests.agents.test_patient import KOREAN

pytestmark = pytest.mark.integration


def test_the_model_patient_and_the_translator_answer_on_the_real_model(embedded_server: ServerState) -> None:
    info = describe_endpoint(embedded_server.base_url)
    settings = ClientSettings(cache=False)

    async def go() -> tuple[str, list[str], str, int, int]:
        client = ModelClient(endpoint_component(info, settings), info, settings)
        try:
            patient = ModelPatient(client)
            reveal = await patient(CASE, "Do you smoke?")
            translator = Translator(client)
            english = await translator(KOREAN.tests[0].result, "en")
            return reveal.reply, [f.name for f in reveal.revealed], english, len(patient.turns), len(translator.turns)
        finally:
            await client.close()

    reply, revealed, english, patient_calls, translations = asyncio.run(go())
    assert reply.strip() and revealed == ["Social history"]  # accounted as the question names it
    assert patient_calls == 1 and translations == 1
    # Values cross the translation unchanged, or are listed, never lost.
    assert "0.65" in english and "400 mcg" in english and "15%" in english

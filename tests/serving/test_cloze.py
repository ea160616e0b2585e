"""Cloze scoring: each option's text scored as the continuation of a prompt (echo with logprobs), its dialect, and
the real llama.cpp server on the real GGUF over HTTP."""

from __future__ import annotations

import asyncio
import json
import math
from typing import Any

import openai
import pytest

from medcouncil.serving.client import ModelClient
from medcouncil.serving.common.errors import MedcouncilError
from medcouncil.serving.components import ClientSettings, endpoint_component
from medcouncil.serving.dialects import EndpointInfo, cloze_args, cloze_probabilities, continuation_logprobs

PROMPT = "Question: Which organ pumps blood through the body?\nAnswer:"
OPTIONS = {"A": "Liver", "B": "Heart", "C": "Kidney", "D": "The lungs and the skin"}


def test_each_engine_is_asked_for_the_prompts_log_probabilities_in_its_own_dialect() -> None:
    own = cloze_args("llamacpp", 57, own_engine=True)
    assert own is not None and own["echo"] and own["logprobs"] >= 0 and own["max_tokens"] == 0
    assert own["extra_body"] == {"logprobs_from": 57}  # medcouncil's engine scores from there only
    other = cloze_args("llamacpp", 57)  # another llama-cpp-python server reads max_tokens 0 as "to the context"
    assert other is not None and other["max_tokens"] == 1
    vllm = cloze_args("vllm", 57)
    assert vllm is not None and vllm["echo"] and vllm["max_tokens"] >= 1 and "extra_body" not in vllm
    assert cloze_args("openai", 57) is None  # no prompt log-probabilities there: no cloze


def test_a_continuation_is_the_tokens_that_start_inside_it_counted_from_the_prompt_s_end() -> None:
    tokens = ["Q", ":", " He", "art", "?"]
    logprobs = [None, -1.0, -0.5, -2.0, -0.25]
    offsets = [0, 1, 2, 5, 8]
    assert continuation_logprobs(tokens, logprobs, offsets, 0, 2, 9) == [-0.5, -2.0, -0.25]
    assert continuation_logprobs(tokens, logprobs, offsets, 1, 2, 8) == [-0.5, -2.0]  # the last is generated
    assert continuation_logprobs(tokens, logprobs, offsets, 0, 0, 9) is None  # the first token has none
    assert continuation_logprobs(tokens, logprobs, offsets, 5, 2, 8) is None  # nothing left of the prompt
    assert continuation_logprobs(["A", "B"], [-1.0, -math.inf], [0, 1], 0, 1, 2) is None
    # vLLM renders a leading BOS as "<bos>": every offset is five characters on; the prompt's end still anchors them
    vllm = ["<bos>", "Q", ":", " Heart", "!"]
    assert continuation_logprobs(vllm, [None, -3.0, -1.0, -0.5, -0.1], [0, 5, 6, 7, 13], 1, 2, 8) == [-0.5]


def test_an_engine_without_prompt_log_probabilities_is_an_error_naming_it_not_an_answer() -> None:
    info = EndpointInfo(base_url="http://127.0.0.1:9/v1", model="m", dialect="openai")
    with pytest.raises(MedcouncilError, match=r"http://127.0.0.1:9/v1 cannot score options by cloze"):
        run_client(info, PROMPT, OPTIONS)


def test_options_are_ranked_by_log_probability_per_token_not_by_sum() -> None:
    scores = {"A": [-1.0, -1.0, -1.0, -1.0, -1.0, -1.0], "B": [-3.0, -2.0]}  # A: -1 per token, B: -2.5
    probabilities = cloze_probabilities(scores)
    assert max(probabilities, key=lambda x: probabilities[x]) == "A"  # though its sum (-6) is below B's (-5)
    assert sum(probabilities.values()) == pytest.approx(1.0)
    assert probabilities["A"] / probabilities["B"] == pytest.approx(math.exp(1.5 * 4))  # scaled to 4 tokens
    assert cloze_probabilities({}) == {} and cloze_probabilities({"A": []}) == {}


def run_client(info: EndpointInfo, prompt: str, options: dict[str, str], cache: bool = False) -> object:
    settings = ClientSettings(cache=cache)

    async def go() -> object:
        client = ModelClient(endpoint_component(info, settings), info, settings)
        try:
            return await client.cloze(prompt, options)
        finally:
            await client.close()

    return asyncio.run(go())


def echo(info: EndpointInfo, text: str, **extra_body: object) -> dict[str, list[Any]]:
    client = openai.OpenAI(base_url=info.base_url, api_key="not-needed")
    try:
        response = client.completions.create(
            model=info.model, prompt=text, echo=True, logprobs=1, max_tokens=0, extra_body=extra_body or None
        )
    finally:
        client.close()
    assert response.choices[0].logprobs is not None
    logprobs: dict[str, list[Any]] = json.loads(response.choices[0].logprobs.model_dump_json())
    return logprobs


@pytest.mark.integration
def test_the_server_scores_from_the_asked_character_the_same_as_the_whole_prompt(embedded_info: EndpointInfo) -> None:
    text = f"{PROMPT} {OPTIONS['B']}"
    whole = echo(embedded_info, text)
    scored = echo(embedded_info, text, logprobs_from=len(PROMPT))
    assert whole["tokens"] == scored["tokens"] and whole["text_offset"] == scored["text_offset"]
    pairs = list(zip(whole["token_logprobs"], scored["token_logprobs"], scored["text_offset"], strict=True))
    assert all(part is None for _, part, offset in pairs if offset < len(PROMPT))  # not computed, not made up
    after = [(full, part) for full, part, offset in pairs if offset >= len(PROMPT)]
    assert after and all(part == pytest.approx(full, abs=1e-4) for full, part in after)
    assert all(value is not None for value in whole["token_logprobs"][1:])
    client = openai.OpenAI(base_url=embedded_info.base_url, api_key="not-needed", max_retries=0)
    try:  # nothing generated only for a scored prompt (llama-cpp-python reads 0 as "up to the context")
        with pytest.raises(openai.APIStatusError, match="max_tokens 0 is for echo with logprobs"):
            client.completions.create(model=embedded_info.model, prompt=text, max_tokens=0)
        with pytest.raises(openai.APIStatusError, match="stream off"):
            client.completions.create(model=embedded_info.model, prompt=text, echo=True, logprobs=1, stream=True)
    finally:
        client.close()


@pytest.mark.integration
def test_cloze_picks_the_likeliest_text_per_token_with_no_letters_shown(embedded_info: EndpointInfo) -> None:
    choice = run_client(embedded_info, PROMPT, OPTIONS)
    totals = json.loads(choice.raw)  # type: ignore[attr-defined]
    assert set(totals) == set(OPTIONS) and all(total < 0 < count for total, count in totals.values())
    for letter, text in OPTIONS.items():  # each score is the option's own tokens after the prompt
        logprobs = echo(embedded_info, f"{PROMPT} {text}")
        values = continuation_logprobs(
            logprobs["tokens"],
            logprobs["token_logprobs"],
            logprobs["text_offset"],
            0,
            len(PROMPT),
            len(f"{PROMPT} {text}"),
        )
        assert values is not None and totals[letter] == [pytest.approx(sum(values), abs=1e-3), len(values)]
    per_token = {letter: total / count for letter, (total, count) in totals.items()}
    assert choice.letter == max(per_token, key=lambda x: per_token[x]) == "B"  # type: ignore[attr-defined]
    assert choice.calls == len(OPTIONS) and choice.usage.prompt_tokens > 0  # type: ignore[attr-defined]
    again = run_client(embedded_info, PROMPT, {"A": OPTIONS["D"], "B": OPTIONS["B"]})  # another order, same scores
    assert json.loads(again.raw)["B"][0] == pytest.approx(totals["B"][0], abs=1e-4)  # type: ignore[attr-defined]

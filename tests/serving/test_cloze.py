"""Cloze scoring: each option's text scored as the continuation of a prompt (echo with logprobs), its dialect, and
the real llama.cpp server on the real GGUF over HTTP."""

from __future__ import annotations

import asyncio
import json
import math

import openai
import pytest

from medcouncil.serving.client import ModelClient
from medcouncil.serving.components import ClientSettings, endpoint_component
from medcouncil.serving.dialects import EndpointInfo, cloze_args, cloze_probabilities, continuation_logprobs

PROMPT = "Question: Which organ pumps blood through the body?\nAnswer:"
OPTIONS = {"A": "Liver", "B": "Heart", "C": "Kidney", "D": "The lungs and the skin"}


def test_each_engine_is_asked_for_the_prompts_log_probabilities_in_its_own_dialect() -> None:
    llama = cloze_args("llamacpp", 57)
    assert llama is not None and llama["echo"] and llama["logprobs"] >= 0 and llama["max_tokens"] == 0
    assert llama["extra_body"] == {"logprobs_from": 57}  # medcouncil's engine scores from there only
    vllm = cloze_args("vllm", 57)
    assert vllm is not None and vllm["echo"] and vllm["max_tokens"] >= 1 and "extra_body" not in vllm
    assert cloze_args("openai", 57) is None  # no prompt log-probabilities there: no cloze


def test_a_continuation_is_the_tokens_that_start_inside_it_and_a_gap_refuses_it() -> None:
    logprobs = [None, -1.0, -0.5, -2.0, -0.25]
    offsets = [0, 5, 10, 12, 20]
    assert continuation_logprobs(logprobs, offsets, 10, 20) == [-0.5, -2.0]
    assert continuation_logprobs(logprobs, offsets, 10, 21) == [-0.5, -2.0, -0.25]
    assert continuation_logprobs(logprobs, offsets, 0, 10) is None  # the first token has none
    assert continuation_logprobs(logprobs, offsets, 13, 20) is None  # no token starts there
    assert continuation_logprobs([-1.0, -math.inf], [0, 1], 0, 2) is None


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


def echo(info: EndpointInfo, text: str, **extra_body: object) -> dict[str, list[object]]:
    client = openai.OpenAI(base_url=info.base_url, api_key="not-needed")
    try:
        response = client.completions.create(
            model=info.model, prompt=text, echo=True, logprobs=1, max_tokens=0, extra_body=extra_body or None
        )
    finally:
        client.close()
    return json.loads(response.choices[0].logprobs.model_dump_json())  # type: ignore[union-attr]


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


@pytest.mark.integration
def test_cloze_picks_the_likeliest_text_per_token_with_no_letters_shown(embedded_info: EndpointInfo) -> None:
    choice = run_client(embedded_info, PROMPT, OPTIONS)
    totals = json.loads(choice.raw)  # type: ignore[attr-defined]
    assert set(totals) == set(OPTIONS) and all(total < 0 < count for total, count in totals.values())
    for letter, text in OPTIONS.items():  # each score is the option's own tokens after the prompt
        logprobs = echo(embedded_info, f"{PROMPT} {text}")
        values = continuation_logprobs(logprobs["token_logprobs"], logprobs["text_offset"], len(PROMPT), 10_000)  # type: ignore[arg-type]
        assert values is not None and totals[letter] == [pytest.approx(sum(values), abs=1e-3), len(values)]
    per_token = {letter: total / count for letter, (total, count) in totals.items()}
    assert choice.letter == max(per_token, key=lambda x: per_token[x]) == "B"  # type: ignore[attr-defined]
    assert choice.calls == len(OPTIONS) and choice.usage.prompt_tokens > 0  # type: ignore[attr-defined]
    again = run_client(embedded_info, PROMPT, {"A": OPTIONS["D"], "B": OPTIONS["B"]})  # another order, same scores
    assert json.loads(again.raw)["B"][0] == pytest.approx(totals["B"][0], abs=1e-4)  # type: ignore[attr-defined]

"""Cloze scoring over the OpenAI completions API: each option's text scored as the continuation of a prompt.

One completion per option, ``prompt + " " + text``, with ``echo`` and ``logprobs`` (:func:`cloze_args`): the
engine returns the log-probability of every prompt token, and the option's are those that start after the prompt
(:func:`continuation_logprobs`). The option with the best mean per token wins (:func:`cloze_probabilities`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping

from autogen_core.models import RequestUsage
from openai.resources.completions import AsyncCompletions

from medcouncil.serving.common.errors import MedcouncilError
from medcouncil.serving.components import Choice
from medcouncil.serving.dialects import EndpointInfo, cloze_args, cloze_probabilities, continuation_logprobs

METHOD = "cloze-per-token-v1"
"""What a cached cloze answer was computed with: part of its cache key, so a change of method is never served an old
answer."""

BY_LETTER = "answer by letter (MEDCOUNCIL_SHAPES=off for the shaped council; without --debias cloze or joint)"
"""What an engine that cannot score by cloze leaves: the letter choice."""


async def score_options(
    completions: AsyncCompletions,
    info: EndpointInfo,
    prompt: str,
    options: Mapping[str, str],
    failure: Callable[[Exception], MedcouncilError],
    errors: tuple[type[BaseException], ...],
) -> Choice:
    """Score each option after ``prompt`` and choose. ``failure`` turns a request's error (one of ``errors``) into
    medcouncil's; an engine that gives no prompt log-probabilities is an error naming it, not an answer.

    Raises:
        MedcouncilError: the engine gives no cloze (its dialect, or a reply without prompt log-probabilities).
    """
    args = cloze_args(info.dialect, len(prompt), own_engine=bool(info.weights))
    if args is None:
        raise MedcouncilError(
            f"{info.base_url} cannot score options by cloze (no prompt log-probabilities in its dialect): {BY_LETTER}"
        )
    fields = dict(args)
    extra_body = fields.pop("extra_body", None)
    scores: dict[str, list[float]] = {}
    prompt_tokens = completion_tokens = 0
    for option, text in options.items():
        full = f"{prompt} {text.strip()}"
        try:
            response = await completions.create(model=info.model, prompt=full, extra_body=extra_body, **fields)
        except errors as error:
            raise failure(error) from error  # type: ignore[arg-type]
        usage = response.usage
        generated = usage.completion_tokens if usage else 0
        prompt_tokens += usage.prompt_tokens if usage else 0
        completion_tokens += generated
        logprobs = response.choices[0].logprobs if response.choices else None
        values = None
        if logprobs is not None:
            values = continuation_logprobs(
                logprobs.tokens or [],
                logprobs.token_logprobs or [],
                logprobs.text_offset or [],
                generated,
                len(prompt),
                len(full),
            )
        if values is None:
            raise MedcouncilError(
                f"{info.base_url} gave no log-probabilities for the tokens of option {option} after the prompt "
                f"(echo with logprobs): it cannot score options by cloze; {BY_LETTER}"
            )
        scores[option] = values
    probabilities = cloze_probabilities(scores)
    letter = max(probabilities, key=lambda x: probabilities[x]) if probabilities else None
    summary = {option: [round(sum(values), 4), len(values)] for option, values in scores.items()}
    usage = RequestUsage(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)
    return Choice(letter=letter, probabilities=probabilities, raw=json.dumps(summary), usage=usage, calls=len(options))

"""Where OpenAI-compatible engines differ: the one place that knows it.

Every engine speaks chat completions, streaming and ``logprobs``; they differ in how output is constrained to
a set of option letters and in whether a stream reports token usage:

* llama-cpp-python's server takes a GBNF ``grammar`` field (it rejects ``response_format`` ``json_schema``)
  and reports no usage on streams;
* vLLM takes ``structured_outputs`` (``{"choice": [...]}``) and reports stream usage;
* anything else (OpenAI, Ollama, SGLang, llama.cpp's C++ ``llama-server``) gets a ``json_schema``
  response format, the OpenAI way.

A reply can also be held to a :class:`Shape` (a doctor's action line): a GBNF grammar on llama.cpp, a regular
expression in ``structured_outputs`` on vLLM; other engines get no constraint (the reply is read as written).
A shaped reply also bans the lone-space token (:func:`lone_space_bias`), found by each engine's tokenizer endpoint.

A text can be scored as the continuation of a prompt (cloze scoring, :func:`cloze_args`): the completions API with
``echo`` and ``logprobs`` on both engines; medcouncil's llama.cpp engine also takes the character from which to
score (``logprobs_from``), so the prompt before it goes through no output layer. Other engines get no cloze.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from autogen_core.models import ChatCompletionTokenLogprob

Dialect = Literal["llamacpp", "vllm", "openai"]

_OWNED_BY: dict[str, Dialect] = {"vllm": "vllm", "me": "llamacpp", "llamacpp": "llamacpp"}
"""``/v1/models`` ``owned_by`` values that identify an engine (llama-cpp-python answers ``me``)."""


def dialect_from_owner(owned_by: str | None) -> Dialect:
    """The dialect of an endpoint, from the ``owned_by`` field of its ``/v1/models`` listing."""
    return _OWNED_BY.get((owned_by or "").lower(), "openai")


def stream_reports_usage(dialect: Dialect) -> bool:
    """Whether a streamed completion ends with a usage chunk when asked (``stream_options``)."""
    return dialect != "llamacpp"


def choice_args(dialect: Dialect, letters: Sequence[str], top_logprobs: int = 20) -> dict[str, Any]:
    """``extra_create_args`` that force the reply to be exactly one of ``letters``, with log-probabilities."""
    base: dict[str, Any] = {"logprobs": True, "top_logprobs": top_logprobs, "temperature": 0.0}
    if dialect == "llamacpp":
        grammar = "root ::= " + " | ".join(f'"{letter}"' for letter in letters)
        return {**base, "max_tokens": 1, "extra_body": {"grammar": grammar}}
    if dialect == "vllm":
        return {**base, "max_tokens": 1, "extra_body": {"structured_outputs": {"choice": list(letters)}}}
    schema = {
        "type": "object",
        "properties": {"answer": {"type": "string", "enum": list(letters)}},
        "required": ["answer"],
        "additionalProperties": False,
    }
    return {
        **base,
        "max_tokens": 16,
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "choice", "schema": schema, "strict": True},
        },
    }


@dataclass(frozen=True)
class Shape:
    """The form a reply must take, in the two languages engines accept: a regular expression (vLLM's structured
    outputs) and the same language as a GBNF grammar (llama.cpp). Both must describe the same replies."""

    name: str
    regex: str
    grammar: str
    frequency_penalty: float = 0.0
    """Sent with the shaped request (an OpenAI sampling field both engines honour): a base model held to a form
    of several lines fills them with one line repeated unless repetition costs it something."""
    ban_lone_space: bool = False
    """Ban the lone-space token (:func:`lone_space_bias`) for the whole reply: for a form whose fixed text ends in a
    space before free text. The price: nothing in the reply can have a space before a token that only follows a
    lone space (Gemma's digits: "about80/min")."""


def shape_args(dialect: Dialect, shape: Shape) -> dict[str, Any]:
    """``extra_create_args`` that hold a reply to ``shape``; empty where the engine offers no such constraint."""
    if dialect == "llamacpp":
        return {"extra_body": {"grammar": shape.grammar}}
    if dialect == "vllm":
        return {"extra_body": {"structured_outputs": {"regex": shape.regex}}}
    return {}


def cloze_args(dialect: Dialect, scored_from: int, own_engine: bool = False) -> dict[str, Any] | None:
    """Completions-API fields that return the log-probability of every token of the prompt (``echo`` with
    ``logprobs``); None where the engine gives no prompt log-probabilities. ``own_engine``: the endpoint is the
    llama.cpp engine medcouncil started, which also takes the character from which to score (``scored_from``: no
    output layer before it) and generates nothing when asked for 0 tokens (another llama-cpp-python server reads 0
    as "up to the context", so one token is generated there)."""
    base: dict[str, Any] = {"echo": True, "logprobs": 1, "max_tokens": 1, "temperature": 0.0}
    if dialect == "llamacpp":  # llama-cpp-python ignores a field it does not know
        return {**base, "max_tokens": 0 if own_engine else 1, "extra_body": {"logprobs_from": scored_from}}
    if dialect == "vllm":
        return base
    return None


def continuation_logprobs(
    tokens: Sequence[str],
    token_logprobs: Sequence[float | None],
    text_offsets: Sequence[int],
    generated: int,
    start: int,
    end: int,
) -> list[float] | None:
    """The log-probabilities of the echoed prompt tokens that start in ``[start, end)`` of the prompt (the
    continuation's tokens, ``end`` the prompt's length); None when the engine gave none for one of them, or no token
    starts there.

    Offsets are taken from the prompt's end: an engine may count text the prompt does not hold before it (vLLM
    renders a leading BOS as ``<bos>``, five characters). The last ``generated`` entries are the reply's."""
    count = min(len(tokens), len(token_logprobs), len(text_offsets)) - generated
    if count <= 0:
        return None
    shift = text_offsets[count - 1] + len(tokens[count - 1]) - end
    values = [token_logprobs[i] for i in range(count) if start <= text_offsets[i] - shift < end]
    if not values or any(value is None or not math.isfinite(value) for value in values):
        return None
    return [float(value) for value in values if value is not None]


def cloze_probabilities(scores: Mapping[str, Sequence[float]]) -> dict[str, float]:
    """Probabilities over options from the log-probabilities of their texts' tokens, normalised by length: each
    option's mean log-probability per token, scaled to the options' mean number of tokens (a long option is not
    penalised for being long); the most probable option is the one with the best mean per token.

    Per token rather than per character or summed, as measured on the embedded Gemma 3 270M (README, "Role
    shapes"): the sum favours short options and the mean per character long ones."""
    scored = {key: values for key, values in scores.items() if values}
    if not scored:
        return {}
    mean_tokens = sum(len(values) for values in scored.values()) / len(scored)
    scaled = {key: sum(values) / len(values) * mean_tokens for key, values in scored.items()}
    return normalise(scaled, list(scored)) or {}


def tokenize_request(dialect: Dialect, base_url: str, model: str, text: str) -> tuple[str, dict[str, Any]] | None:
    """The URL and body that ask the engine to tokenize ``text`` (llama-cpp-python: ``/extras/tokenize``; vLLM:
    ``/tokenize``, both beside ``/v1``); None where the engine offers no tokenizer."""
    root = base_url.rstrip("/").removesuffix("/v1")
    if dialect == "llamacpp":
        return f"{root}/extras/tokenize", {"input": text, "model": model}
    if dialect == "vllm":
        return f"{root}/tokenize", {"prompt": text, "model": model, "add_special_tokens": False}
    return None


def lone_space_bias(empty: Sequence[int], space: Sequence[int]) -> dict[str, int]:
    """The ``logit_bias`` that bans the tokenizer's lone-space token, from the tokens of ``""`` and of ``" "`` (the
    special tokens an engine adds are the common prefix). Under a grammar whose text starts after a space, a base
    model that picks a lone space is left with word fragments ("1. icle"); banned, it writes the word with its
    own leading space (" Pneumonia"). Empty when ``" "`` is not one token of its own."""
    rest = list(space[len(empty) :]) if list(space[: len(empty)]) == list(empty) else list(space)
    return {str(rest[0]): -100} if len(rest) == 1 else {}


def parse_choice_text(dialect: Dialect, text: str, letters: Sequence[str]) -> str | None:
    """The letter a constrained reply names, or None when the engine ignored the constraint."""
    candidate = text.strip()
    if dialect == "openai":
        try:
            candidate = str(json.loads(candidate).get("answer", "")).strip()
        except (json.JSONDecodeError, AttributeError):
            return None
    return candidate if candidate in letters else None


def letter_logprobs(
    logprobs: Sequence[ChatCompletionTokenLogprob] | None, letters: Sequence[str]
) -> dict[str, float] | None:
    """The log-probability of each letter found at the answer position (the first generated position that is a
    letter): the chosen token and the engine's top alternatives there. None when no position carries a letter.

    llama.cpp and vLLM report raw log-probabilities (before the constraint), so these are the model's own. Tokens
    count only when they are exactly a letter (``" A"`` is another token, which the constraint forbids). A letter
    outside the engine's top-k is absent: :meth:`ModelClient.choose` asks for it on its own.
    """
    for position in logprobs or []:
        if position.token.strip() not in letters:
            continue
        found: dict[str, float] = {}
        candidates = [(_token_text(alt.bytes), alt.logprob) for alt in position.top_logprobs or []]
        candidates.append((position.token.strip(), position.logprob))
        for token, logprob in candidates:
            if token in letters and logprob is not None and math.isfinite(logprob):
                found[token] = max(found.get(token, -math.inf), logprob)
        return found
    return None


def normalise(logprobs: dict[str, float], letters: Sequence[str]) -> dict[str, float] | None:
    """Probabilities over ``letters`` from their log-probabilities (a letter without one gets 0), summing to 1."""
    if not logprobs:
        return None
    top = max(logprobs.values())
    mass = {letter: math.exp(logprobs[letter] - top) if letter in logprobs else 0.0 for letter in letters}
    total = sum(mass.values())
    return {letter: value / total for letter, value in mass.items()}


def letter_probabilities(
    logprobs: Sequence[ChatCompletionTokenLogprob] | None, letters: Sequence[str]
) -> dict[str, float] | None:
    """Per-letter probabilities from one response's answer position, renormalised over the letters seen there (a
    letter outside the engine's top-k gets 0). None when no position carries a letter."""
    found = letter_logprobs(logprobs, letters)
    return normalise(found, letters) if found is not None else None


def _token_text(data: list[int] | None) -> str:
    """AutoGen keeps a top alternative's token only as its UTF-8 bytes."""
    return bytes(data or []).decode("utf-8", errors="replace")


@dataclass(frozen=True)
class EndpointInfo:
    """What a client needs to know of an endpoint."""

    base_url: str
    model: str
    dialect: Dialect
    api_key: str | None = None
    weights: str = ""
    """What the server serves, when medcouncil started it (:func:`medcouncil.serving.model_file.weights_identity`
    of the model and adapters); empty for an endpoint medcouncil does not know the weights of."""
    adapter_dir: str = ""
    """The folder of the adapter this model name serves, when medcouncil started the server with it (its
    ``run.json`` names the training data)."""
    served: str = ""
    """For an endpoint medcouncil did not start, a fingerprint of what it serves
    (:func:`medcouncil.serving.identity.served_fingerprint`), taken when the response cache is on: other weights
    behind the same URL and name get a cache of their own."""

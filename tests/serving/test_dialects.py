from __future__ import annotations

import math

import pytest
from autogen_core.models import ChatCompletionTokenLogprob, TopLogprob

from medcouncil.serving.dialects import (
    choice_args,
    dialect_from_owner,
    letter_probabilities,
    parse_choice_text,
    stream_reports_usage,
)


def position(token: str, logprob: float, alternatives: dict[str, float]) -> ChatCompletionTokenLogprob:
    top = [TopLogprob(logprob=lp, bytes=list(tok.encode())) for tok, lp in alternatives.items()]
    return ChatCompletionTokenLogprob(token=token, logprob=logprob, top_logprobs=top)


def test_engines_are_recognised_from_owned_by() -> None:
    assert dialect_from_owner("vllm") == "vllm"
    assert dialect_from_owner("me") == "llamacpp"  # llama-cpp-python
    assert dialect_from_owner("llamacpp") == "llamacpp"  # llama.cpp's C++ server
    assert dialect_from_owner("openai") == "openai"
    assert dialect_from_owner(None) == "openai"


def test_each_engine_gets_its_own_constraint() -> None:
    letters = ["A", "B", "C"]
    llama = choice_args("llamacpp", letters)
    assert llama["extra_body"] == {"grammar": 'root ::= "A" | "B" | "C"'}
    assert "response_format" not in llama  # llama-cpp-python rejects json_schema
    vllm = choice_args("vllm", letters)
    assert vllm["extra_body"] == {"structured_outputs": {"choice": letters}}
    generic = choice_args("openai", letters)
    assert generic["response_format"]["type"] == "json_schema"
    assert generic["response_format"]["json_schema"]["schema"]["properties"]["answer"]["enum"] == letters
    for args in (llama, vllm, generic):
        assert args["logprobs"] is True and args["top_logprobs"] > 0 and args["temperature"] == 0.0
    assert not stream_reports_usage("llamacpp") and stream_reports_usage("vllm")


@pytest.mark.parametrize(
    ("dialect", "text", "expected"),
    [
        ("llamacpp", "B", "B"),
        ("vllm", " C\n", "C"),
        ("openai", '{"answer": "A"}', "A"),
        ("openai", "A", None),
        ("llamacpp", "F", None),
        ("llamacpp", "", None),
    ],
)
def test_parse_choice_text(dialect: str, text: str, expected: str | None) -> None:
    assert parse_choice_text(dialect, text, ["A", "B", "C", "D"]) == expected  # type: ignore[arg-type]


def test_letter_probabilities_renormalise_over_letters() -> None:
    logprobs = [position("B", math.log(0.5), {"The": math.log(0.3), "B": math.log(0.5), "A": math.log(0.1)})]
    probs = letter_probabilities(logprobs, ["A", "B", "C"])
    assert probs is not None
    assert probs["B"] == pytest.approx(0.5 / 0.6)
    assert probs["A"] == pytest.approx(0.1 / 0.6)
    assert probs["C"] == 0.0  # outside the top-k


def test_letter_probabilities_skip_json_prefix_tokens() -> None:
    logprobs = [
        position('{"', -0.01, {'{"': -0.01}),
        position("answer", -0.01, {"answer": -0.01}),
        position('":"', -0.01, {'":"': -0.01}),
        position("D", math.log(0.7), {"D": math.log(0.7), "A": math.log(0.1)}),
    ]
    probs = letter_probabilities(logprobs, ["A", "B", "C", "D"])
    assert probs is not None and max(probs, key=probs.__getitem__) == "D"
    assert sum(probs.values()) == pytest.approx(1.0)


def test_no_letter_position_gives_none() -> None:
    assert letter_probabilities([position("Hello", -0.1, {"Hello": -0.1})], ["A", "B"]) is None
    assert letter_probabilities(None, ["A", "B"]) is None


def test_letter_logprobs_keep_what_the_engine_gave_and_normalise_completes() -> None:
    from medcouncil.serving.dialects import letter_logprobs, normalise

    logprobs = [position("B", math.log(0.5), {"B": math.log(0.5), "A": math.log(0.1), "The": math.log(0.3)})]
    found = letter_logprobs(logprobs, ["A", "B", "C"])
    assert found == pytest.approx({"A": math.log(0.1), "B": math.log(0.5)})  # C: outside the top-k, absent
    assert found is not None
    found["C"] = math.log(0.4)  # what a request forced to C reports
    assert normalise(found, ["A", "B", "C"]) == pytest.approx({"A": 0.1, "B": 0.5, "C": 0.4})
    assert normalise({}, ["A"]) is None

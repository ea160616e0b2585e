"""llama.cpp's logits for the last row only (``apply_last_row_logits``), on the real GGUF in process: the same
replies and log-probabilities as every position's logits, from rows the decode actually computed, and an echoed
prompt scored as llama-cpp-python scores it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
from llama_cpp.llama_grammar import LlamaGrammar

from medcouncil.serving.llama_engine import _RowsOnDemand, apply_last_row_logits, load_llama
from medcouncil.serving.model_file import embedded_gguf
from medcouncil.serving.state import ServerState

pytestmark = pytest.mark.integration
PROMPT = (
    "A 58-year-old man has crushing chest pain for 40 minutes, sweating and ST elevation in II, III and aVF. "
    "The most likely diagnosis is A. inferior myocardial infarction B. pericarditis C. aortic dissection "
    "D. pulmonary embolism.\nAnswer:"
)
BATCH = 32


@pytest.fixture(scope="module")
def llm() -> Iterator[Any]:
    model = load_llama(str(embedded_gguf()), n_ctx=512, n_batch=BATCH, n_threads=2, logits_all=True, verbose=False)
    yield model
    apply_last_row_logits(True)
    model.close()


def requests(llm: Any, last_row: bool) -> tuple[list[object], int]:
    """A server's kinds of request in a row, the engine state carried over (prefix reuse, a cached prompt, a
    stream, a grammar), and the number of rows holding logits after the first."""
    apply_last_row_logits(last_row)
    llm.reset()
    llm.scores[:128] = 0.0  # more rows than the requests below fill
    replies: list[object] = []

    def keep(reply: dict[str, Any]) -> None:
        choice = reply["choices"][0]
        logprobs = choice["logprobs"]
        replies.append((choice["text"], logprobs["tokens"], logprobs["token_logprobs"], logprobs["top_logprobs"]))

    keep(llm.create_completion(PROMPT, max_tokens=3, logprobs=10, temperature=0.0))
    rows = int(np.count_nonzero(np.abs(llm.scores[: llm.n_tokens]).sum(axis=1)))
    letters = LlamaGrammar.from_string('root ::= " A" | " B" | " C" | " D"', verbose=False)  # a constrained choice
    keep(llm.create_completion(PROMPT, max_tokens=1, logprobs=5, temperature=0.0, grammar=letters))  # prompt cached
    assert replies[-1][0] in (" A", " B", " C", " D")  # type: ignore[index]
    keep(llm.create_completion(PROMPT + " A", max_tokens=2, logprobs=5, temperature=0.0))  # a prefix hit
    streamed = llm.create_completion(PROMPT + " B", max_tokens=2, logprobs=3, temperature=0.0, stream=True)
    replies.append([(c["choices"][0]["text"], c["choices"][0]["logprobs"]) for c in streamed])
    chat = llm.create_chat_completion(
        [{"role": "user", "content": PROMPT}], max_tokens=1, logprobs=True, top_logprobs=4, temperature=0.0
    )
    replies.append((chat["choices"][0]["message"]["content"], chat["choices"][0]["logprobs"]))
    return replies, rows


def close(a: object, b: object) -> bool:
    """Equal structures, floats to 1e-5."""
    if isinstance(a, float | np.floating) and isinstance(b, float | np.floating):
        return abs(float(a) - float(b)) <= 1e-5
    if isinstance(a, dict) and isinstance(b, dict):
        return list(a) == list(b) and all(close(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(close(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def test_the_last_rows_give_the_same_replies_and_log_probabilities_as_every_position(llm: Any) -> None:
    n_prompt = len(llm.tokenize(PROMPT.encode()))
    assert BATCH < n_prompt < 120  # several batches: each batch's last row is computed, only the end is read
    every, every_rows = requests(llm, last_row=False)
    last, rows = requests(llm, last_row=True)
    assert every_rows == n_prompt + 2  # llama-cpp-python's own: a row per prompt token and per generated token
    assert rows == -(-n_prompt // BATCH) + 2  # the last token of each prompt batch, then each generated token
    assert close(last, every), (last, every)


def scored(reply: dict[str, Any]) -> tuple[list[Any], list[Any], list[Any], list[Any]]:
    logprobs = reply["choices"][0]["logprobs"]
    return logprobs["tokens"], logprobs["text_offset"], logprobs["token_logprobs"], logprobs["top_logprobs"]


def test_an_echoed_prompt_is_scored_as_llama_cpp_python_scores_it_whatever_was_asked_before(llm: Any) -> None:
    options = [" inferior myocardial infarction", " pericarditis", " aortic dissection of the ascending aorta"]
    apply_last_row_logits(False)  # llama-cpp-python's own echo: every row's logits, from an empty cache
    expected = []
    for option in options:
        llm.reset()
        expected.append(
            scored(llm.create_completion(PROMPT + option, max_tokens=1, logprobs=3, echo=True, temperature=0.0))
        )
    apply_last_row_logits(True)
    llm.reset()
    for order in ([0, 1, 2], [2, 0, 1, 2]):  # shared prefixes reused; a normal request in between
        for index in order:
            reply = llm.create_completion(PROMPT + options[index], max_tokens=1, logprobs=3, echo=True, temperature=0.0)
            assert reply["choices"][0]["text"].startswith(PROMPT + options[index])
            assert close(scored(reply), expected[index]), index
        llm.create_completion("Chest pain and", max_tokens=2)
    with pytest.raises(ValueError, match="stream off"):
        llm.create_completion(PROMPT, max_tokens=1, logprobs=2, echo=True, stream=True)
    echoed = llm.create_completion(PROMPT, max_tokens=1, echo=True)  # echo alone reads no logits
    assert echoed["choices"][0]["text"].startswith(PROMPT)


def test_scoring_from_a_character_leaves_the_tokens_before_it_unscored_and_the_rest_identical(llm: Any) -> None:
    options = [" pericarditis", " aortic dissection", " pericardial effusion with tamponade"]
    apply_last_row_logits(True)
    llm.reset()
    whole = scored(llm.create_completion(PROMPT + options[0], max_tokens=0, logprobs=1, echo=True))
    alone = []
    for option in options:  # each from an empty cache
        llm.reset()
        alone.append(
            scored(
                llm.create_completion(PROMPT + option, max_tokens=0, logprobs=1, echo=True, logprobs_from=len(PROMPT))
            )
        )
    part = alone[0]
    assert whole[:2] == part[:2]  # the same tokens and offsets
    for offset, full, only in zip(whole[1], whole[2], part[2], strict=True):
        assert (only is None) if offset < len(PROMPT) else (only is not None and abs(only - full) <= 1e-5)
    for order in ([2, 1, 0], [1, 1, 2]):  # the shared question's KV entries reused: the same numbers
        for index in order:
            again = llm.create_completion(
                PROMPT + options[index], max_tokens=0, logprobs=1, echo=True, logprobs_from=len(PROMPT)
            )
            assert close(scored(again), alone[index]), index
        llm.create_completion("Chest pain and", max_tokens=2)
    assert llm.create_completion(PROMPT, max_tokens=0, logprobs=1, echo=True)["choices"][0]["text"] == PROMPT


def test_only_the_rows_read_are_computed_and_any_other_use_gets_the_whole_matrix() -> None:
    logits = np.random.default_rng(0).normal(size=(5, 7)).astype(np.float32)

    def log_softmax(x: Any, axis: int = -1) -> Any:
        shifted = x - x.max(axis=axis, keepdims=True)
        return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))

    asked: list[object] = []

    def counted(x: Any, axis: int = -1) -> Any:
        asked.append(np.shape(x))
        return log_softmax(x, axis)

    rows = _RowsOnDemand(logits, counted)
    whole = log_softmax(logits)
    assert np.allclose(rows[3:], whole[3:]) and asked == [(2, 7)]
    assert np.allclose(rows[4], whole[4]) and np.allclose(rows[1, 2], whole[1, 2]) and asked[-1:] == [(7,)]
    assert np.allclose(rows[:, 2], whole[:, 2]) and asked[-1:] == [(5, 7)]  # a column: every row
    assert np.allclose(rows[[0, 2]], whole[[0, 2]]) and np.allclose(np.asarray(rows), whole) and len(rows) == 5


def test_a_request_the_server_cannot_read_is_a_400_naming_the_field(embedded_server: ServerState) -> None:
    """llama-cpp-python answers such a request 500 with a traceback, which clients retry as the server's fault."""
    url = embedded_server.base_url
    wrong_type = {"model": embedded_server.served_model_name, "messages": [{"role": "user", "content": "hi"}]}
    cases: list[tuple[dict[str, Any], str]] = [
        ({**wrong_type, "max_tokens": "many"}, "max_tokens"),
        ({**wrong_type, "messages": [{"role": "bogus", "content": "hi"}]}, "messages"),
        ({"model": "m", "prompt": "Hi", "max_tokens": 0}, "max_tokens 0 is for echo with logprobs"),
    ]
    for body, field in cases:
        route = "/chat/completions" if "messages" in body else "/completions"
        response = httpx.post(url + route, json=body, timeout=60)
        error = response.json()["error"]
        assert response.status_code == 400 and error["type"] == "invalid_request_error", response.text[:300]
        assert error["message"].startswith("invalid request: ") and field in error["message"]
        assert "\n" not in error["message"] and "Traceback" not in error["message"]
    for raw in (b'{"prompt": "hi",', b"\xff\xfe not text"):  # llama-cpp-python: a plain-text 500
        response = httpx.post(url + "/completions", content=raw, headers={"Content-Type": "application/json"})
        assert response.status_code == 400 and "the body is not JSON" in response.json()["error"]["message"]
    ok = httpx.post(url + "/chat/completions", json={**wrong_type, "max_tokens": 1}, timeout=60)
    assert ok.status_code == 200  # a valid request is untouched

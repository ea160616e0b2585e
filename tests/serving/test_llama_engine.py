"""llama.cpp's logits for the last row only (``apply_last_row_logits``), on the real GGUF in process: the same
log-probabilities as every position's logits, from rows the decode actually computed, and echo refused."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from medcouncil.serving.llama_engine import ECHO_LOGPROBS_REFUSED, apply_last_row_logits, load_llama
from medcouncil.serving.model_file import embedded_gguf

pytestmark = pytest.mark.integration
PROMPT = (
    "A 58-year-old man has crushing chest pain for 40 minutes, sweating and ST elevation in II, III and aVF. "
    "The most likely diagnosis is A. inferior myocardial infarction B. pericarditis C. aortic dissection "
    "D. pulmonary embolism.\nAnswer:"
)


@pytest.fixture(scope="module")
def llm() -> Iterator[Any]:
    model = load_llama(str(embedded_gguf()), n_ctx=512, n_batch=32, n_threads=2, logits_all=True, verbose=False)
    yield model
    apply_last_row_logits(True)
    model.close()


def answer(llm: Any, last_row: bool, max_tokens: int) -> tuple[dict[str, float], list[float], int]:
    """Top log-probabilities of the first token, every token's log-probability, and the rows holding logits."""
    apply_last_row_logits(last_row)
    llm.reset()
    llm.scores[:] = 0.0
    reply = llm.create_completion(PROMPT, max_tokens=max_tokens, logprobs=10, temperature=0.0)
    logprobs = reply["choices"][0]["logprobs"]
    rows = int(np.count_nonzero(np.abs(llm.scores[: llm.n_tokens]).sum(axis=1)))
    return logprobs["top_logprobs"][0], [float(x) for x in logprobs["token_logprobs"]], rows


def test_the_last_rows_give_the_same_log_probabilities_as_every_position(llm: Any) -> None:
    n_prompt = len(llm.tokenize(PROMPT.encode()))
    assert n_prompt > 32  # the prompt spans several batches: each batch's last row is computed, only the end is read
    every_top, every_tokens, every_rows = answer(llm, last_row=False, max_tokens=4)
    top, tokens, rows = answer(llm, last_row=True, max_tokens=4)
    assert every_rows == n_prompt + 3  # llama-cpp-python's own: a row for each prompt token and generated token
    assert rows == -(-n_prompt // 32) + 3  # the last token of each prompt batch, then each generated token
    assert list(top) == list(every_top)
    assert np.allclose(list(top.values()), list(every_top.values()), atol=1e-5)
    assert np.allclose(tokens, every_tokens, atol=1e-5)


def test_the_prompts_own_log_probabilities_are_refused_not_made_up(llm: Any) -> None:
    apply_last_row_logits(True)
    with pytest.raises(ValueError, match="echo with logprobs"):
        llm.create_completion(PROMPT, max_tokens=1, logprobs=2, echo=True)
    assert "is not served" in ECHO_LOGPROBS_REFUSED
    echoed = llm.create_completion(PROMPT, max_tokens=1, echo=True)  # echo alone reads no logits
    assert echoed["choices"][0]["text"].startswith(PROMPT)

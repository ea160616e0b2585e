"""The prompt's own log-probabilities (``echo`` with ``logprobs``) on medcouncil's llama.cpp engine.

OpenAI's completions API answers ``echo: true`` with ``logprobs`` by scoring every prompt token given the tokens
before it: how a text is scored as a continuation of another (cloze scoring of answer options, each appended to
the same question). llama-cpp-python computes that from its ``n_ctx x vocabulary`` logits array (the output layer
over every prompt row, which :func:`medcouncil.serving.llama_engine.apply_last_row_logits` skips) and then sorts
the whole vocabulary in Python for every prompt token: minutes for a few hundred tokens of Gemma 3's 262,144 words.

:func:`echo_completion` answers the same request in the same OpenAI form, with NumPy for each row's log-softmax and
top entries. A request may also name where scoring starts (:data:`LOGPROBS_FROM`, a character offset into the
prompt, medcouncil's extension of the request): the tokens that start before it get no log-probability (``null``,
as the first token of every echoed prompt), and their rows go through no output layer, which is most of a cloze
request's cost (one row of Gemma 3 270M's output layer costs about as much as the rest of the model for that token).

The prompt is decoded in chunks of :data:`ECHO_CHUNK` rows aligned on its start. A chunk's numbers depend on the
batch it is decoded in (llama.cpp's kernels differ by batch size and by which rows give logits), so a request reuses
the KV entries of the last echo request only up to a chunk boundary before the first row it scores: every scored
row is computed in the chunk a request with nothing cached computes it in, and an option's score does not depend on
which option was asked before it. The KV cache and ``input_ids`` are left holding the prompt, as a normal evaluation
leaves them, and the generated part of the reply (``max_tokens``) is llama-cpp-python's own.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

ECHO_CHUNK = 32
"""Prompt rows decoded per batch by an echo request (32 rows of 262,144 logits are 32 MB)."""
LOGPROBS_FROM = "logprobs_from"
"""The request field (llama.cpp dialect): the character offset of the prompt from which tokens are scored."""


def prompt_tokens(llama: Any, prompt: str) -> list[int]:
    """The prompt's tokens as llama-cpp-python's completion reads them (BOS when the model adds one, special
    tokens parsed)."""
    tokens: list[int] = llama.tokenize(prompt.encode("utf-8"), add_bos=False, special=True) if prompt else []
    bos = llama.token_bos()
    if llama._model.add_bos_token() and bos != -1:
        tokens = [bos, *tokens]
    return tokens


def echoed_rows(llama: Any) -> int:
    """How many leading KV entries the last echo request decoded (in its aligned chunks) and no other decode has
    overwritten since."""
    return int(getattr(llama, "_medcouncil_echoed_rows", 0))


def overwritten_from(llama: Any, position: int) -> None:
    """Record that a decode other than an echo request writes the KV cache from ``position`` on."""
    llama._medcouncil_echoed_rows = min(echoed_rows(llama), position)


def score_prompt(llama: Any, tokens: list[int], k: int, first: int) -> list[tuple[float, list[tuple[int, float]]]]:
    """The log-probability and the top ``k`` (token, log-probability) of every position from ``first`` (at least 1)
    to the end, each given the tokens before it; leaves the KV cache, ``input_ids``, ``n_tokens`` and the last row
    of ``scores`` as an evaluation of ``tokens`` would."""
    import numpy as np

    if not tokens:
        raise ValueError("echo with logprobs: the prompt has no tokens to score")
    if len(tokens) > llama.n_ctx():
        raise ValueError(f"Requested tokens ({len(tokens)}) exceed context window of {llama.n_ctx()}")
    size = max(1, min(ECHO_CHUNK, llama.n_batch))  # the batch holds n_batch tokens
    k = max(0, min(k, llama._n_vocab - 1))
    first = max(1, min(first, len(tokens)))
    in_cache = min(echoed_rows(llama), int(llama.longest_token_prefix(llama.input_ids[: llama.n_tokens], tokens)))
    start = min(in_cache, first - 1, len(tokens) - 1) // size * size
    llama._requires_eval = True  # until the prompt's last row is decoded: nothing samples from an older one
    llama._medcouncil_echoed_rows = 0
    if not llama._ctx.kv_cache_seq_rm(-1, start, -1):  # a cache that cannot drop its tail: start afresh
        llama._ctx.kv_cache_seq_rm(-1, 0, -1)
        start = 0
    llama.n_tokens = start
    vocab, batch = llama._n_vocab, llama._batch.batch
    found: list[tuple[float, list[tuple[int, float]]]] = []
    for begin in range(start, len(tokens), size):
        chunk = tokens[begin : begin + size]
        outputs = []
        batch.n_tokens = len(chunk)
        for i, token in enumerate(chunk):
            row = begin + i
            batch.token[i], batch.pos[i], batch.seq_id[i][0], batch.n_seq_id[i] = token, row, 0, 1
            wanted = row >= first - 1 or row == len(tokens) - 1  # scored rows, and the last (generation reads it)
            batch.logits[i] = wanted
            if wanted:
                outputs.append(row)
        llama._ctx.decode(llama._batch)
        llama.input_ids[begin : begin + len(chunk)] = chunk
        llama.n_tokens = begin + len(chunk)
        if not outputs:
            continue
        rows = np.ctypeslib.as_array(llama._ctx.get_logits(), shape=(len(outputs), vocab))
        if outputs[-1] == len(tokens) - 1:
            llama.scores[len(tokens) - 1, :] = rows[-1]
        for index, row_of in enumerate(outputs):
            position = row_of + 1  # the row of a token predicts the next position
            if position >= len(tokens):
                continue
            values = rows[index].astype(np.float64)
            top = float(values.max())
            logprobs = values - (top + float(np.log(np.exp(values - top).sum())))
            best = np.argpartition(-logprobs, k)[:k] if k else np.array([], dtype=int)
            ranked = sorted(((int(i), float(logprobs[i])) for i in best), key=lambda item: -item[1])
            found.append((float(logprobs[tokens[position]]), ranked))
    llama._requires_eval = False
    llama._medcouncil_echoed_rows = len(tokens)
    return found


def echo_completion(
    create_completion: Any, llama: Any, arguments: dict[str, Any], logprobs_from: int | None = None
) -> dict[str, Any]:
    """A non-streamed completion with ``echo`` and ``logprobs``, in llama-cpp-python's response form: the prompt
    scored by :func:`score_prompt` (from the token at character ``logprobs_from`` on, every token when None), then
    the generated part (if any) from ``create_completion`` without echo."""
    prompt = arguments.get("prompt", "")
    if not isinstance(prompt, str) or not prompt:
        raise ValueError("echo with logprobs takes a text prompt that is not empty")
    k = int(arguments["logprobs"])
    tokens = prompt_tokens(llama, prompt)
    skip = 1 if tokens and tokens[0] == llama.token_bos() else 0
    pieces, offsets, seen = [], [], b""
    for position in range(skip, len(tokens)):
        raw = llama.detokenize([tokens[position]], prev_tokens=tokens[:position])
        offsets.append(len(seen.decode("utf-8", errors="ignore")))
        pieces.append(raw.decode("utf-8", errors="ignore"))
        seen += raw
    from_char = 0 if logprobs_from is None else max(0, int(logprobs_from))
    first = next((i + skip for i, offset in enumerate(offsets) if offset >= from_char), len(tokens))
    first = max(first, skip + 1)  # the first token of an echoed prompt has no log-probability (OpenAI's form)
    scored = score_prompt(llama, tokens, k, first)
    logprob_list: list[float | None] = []
    tops: list[dict[str, float] | None] = []
    for position in range(skip, len(tokens)):
        if position < first:
            logprob_list.append(None)
            tops.append(None)
            continue
        value, ranked = scored[position - first]
        top = {
            llama.detokenize([i], prev_tokens=tokens[:position]).decode("utf-8", errors="ignore"): lp
            for i, lp in ranked
        }
        top[pieces[position - skip]] = value
        logprob_list.append(value)
        tops.append(top)
    generated: dict[str, Any] = {
        "id": f"cmpl-{uuid.uuid4()}",
        "created": int(time.time()),
        "model": arguments.get("model") or llama.model_path,
        "choices": [{"text": "", "index": 0, "logprobs": None, "finish_reason": "length"}],
    }
    if int(arguments.get("max_tokens") or 0) > 0:  # None would mean "up to the context": only what is asked
        generated = create_completion(llama, **{**arguments, "echo": False})
    choice = generated["choices"][0]
    extra = choice.get("logprobs") or {}
    logprobs = {
        "tokens": pieces + list(extra.get("tokens", [])),
        "text_offset": offsets + list(extra.get("text_offset", [])),
        "token_logprobs": logprob_list + list(extra.get("token_logprobs", [])),
        "top_logprobs": tops + list(extra.get("top_logprobs", [])),
    }
    completion = int((generated.get("usage") or {}).get("completion_tokens", 0))
    return {
        **{key: value for key, value in generated.items() if key != "choices"},
        "object": "text_completion",
        "choices": [{**choice, "text": prompt + choice.get("text", ""), "logprobs": logprobs}],
        "usage": {
            "prompt_tokens": len(tokens),
            "completion_tokens": completion,
            "total_tokens": len(tokens) + completion,
        },
    }

"""llama.cpp in this process or as medcouncil's server, with CPU settings that run on any x86-64 CPU.

llama.cpp places some weights in "extra" CPU buffer types: AMX tiles on CPUs that advertise AMX (Sapphire Rapids
and later) and repacked Q4/Q8 layouts for AVX2/AVX-512. Its AMX path faults on machines where the kernel grants
AMX tile permission to the main thread only (llama.cpp issue #20824: a general protection fault on ``ldtilecfg`` in
a worker thread, which kills the server with SIGSEGV on its first request). medcouncil therefore loads models with
``use_extra_bufts = false`` unless asked otherwise: the weights stay in llama.cpp's plain CPU buffer on every CPU.
On the 2-core reference machine (AVX-512, no AMX) that costs nothing measurable (serving benchmark, README).

``extra_buffers=True`` (``medcouncil serve --extra-buffers``, ``extra_buffers: true`` in the engine YAML, or
``MEDCOUNCIL_EXTRA_BUFFERS=1`` for the automatically started engine) turns the fast path back on for CPUs and
kernels that support it.

Vocabulary logits only where a reply reads them. llama-cpp-python's server loads models with ``logits_all``, which
it needs to return ``logprobs`` at all: every prompt token then goes through the output layer (Gemma 3's is 262,144
words wide, more than half of the 270M model's weights) and its row is copied into a ``n_ctx x vocabulary`` array,
and a non-streamed reply with ``logprobs`` takes the log-softmax of every row of that array to read its last ones.
A reply reads the row before each generated token; the prompt's own log-probabilities (``echo``, cloze scoring) are
computed on their own path (:mod:`medcouncil.serving.llama_echo`). :func:`apply_last_row_logits` makes each decode
ask llama.cpp for the logits of its last token only, keep that row, and compute log-probabilities for the rows read:
the same replies, measured in the serving benchmark (2 threads, AVX2, a 670-token prompt answered with one token and
its logprobs) as 4.5x the prefill speed and a cached answer in 0.51 s instead of 1.19 s. ``echo`` with ``logprobs``
goes to :func:`echo_completion` (a stream of it is refused in one line), and the server's completion request also
takes ``logprobs_from`` (:func:`accept_logprobs_from`).

``python -m medcouncil.serving.llama_engine [--extra-buffers] --config_file FILE`` is the embedded server: the
llama-cpp-python OpenAI server with these settings applied, and Python's fault handler on, so a crash leaves the
faulting thread's stack in the server log.
"""

from __future__ import annotations

import faulthandler
import functools
import inspect
import json
import os
import sys
import threading
from typing import Any

from medcouncil.serving.llama_echo import LOGPROBS_FROM, echo_completion, overwritten_from

ENV_EXTRA_BUFFERS = "MEDCOUNCIL_EXTRA_BUFFERS"
"""``1``: llama.cpp's extra buffer types (AMX, repacked weights) for engines started without an explicit setting."""
MARKER = "medcouncil: llama.cpp extra buffer types"
"""Logged by the server at start, with ``on`` or ``off``: what the model is loaded with."""


def extra_buffers_default() -> bool:
    return os.environ.get(ENV_EXTRA_BUFFERS, "").strip().lower() in ("1", "true", "yes", "on")


def apply_cpu_settings(extra_buffers: bool) -> None:
    """Make every later ``llama_cpp.Llama(...)`` in this process load with ``use_extra_bufts = extra_buffers``.

    llama-cpp-python builds its model parameters from ``llama_model_default_params()`` and has no argument for this
    field, so the default itself is wrapped (once; calling again changes the setting).
    """
    import llama_cpp.llama_cpp as low_level

    original = getattr(low_level.llama_model_default_params, "_medcouncil_original", None)
    original = original or low_level.llama_model_default_params

    def default_params() -> Any:
        params = original()
        params.use_extra_bufts = extra_buffers
        return params

    default_params._medcouncil_original = original  # type: ignore[attr-defined]
    low_level.llama_model_default_params = default_params


ECHO_LOGPROBS_REFUSED = (
    "medcouncil's llama.cpp engine scores an echoed prompt (echo with logprobs) in a non-streamed reply only: "
    "ask again with stream off"
)


class _RowsOnDemand:
    """The log-softmax of a logits matrix along its rows, computed only for the rows indexed out of it (any other
    use computes the whole matrix, as llama-cpp-python's own function does)."""

    def __init__(self, logits: Any, original: Any) -> None:
        self.logits, self.original = logits, original

    def __getitem__(self, key: Any) -> Any:
        rows, rest = (key[0], key[1:]) if isinstance(key, tuple) else (key, ())
        if isinstance(rows, (int, slice)):
            picked = self.original(self.logits[rows], axis=-1)
            return picked[(slice(None), *rest) if isinstance(rows, slice) else rest] if rest else picked
        return self.original(self.logits, axis=-1)[key]

    def __array__(self, dtype: Any = None, copy: Any = None) -> Any:
        whole = self.original(self.logits, axis=-1)
        return whole if dtype is None else whole.astype(dtype)

    def __len__(self) -> int:
        return len(self.logits)


_PATCH_LOCK = threading.Lock()


def apply_last_row_logits(on: bool = True) -> None:
    """Make ``llama_cpp.Llama`` compute and keep the logits of each decode's last token only (``on``), or restore
    llama-cpp-python's own behaviour (every position's logits when the model has ``logits_all``).

    A model used with the patch on holds logits for the rows it read only: ``reset()`` it after restoring before
    asking for rows it skipped. Models with embeddings on (every token is an output) and speculative decoding keep
    llama-cpp-python's own evaluation.
    """
    import numpy as np
    from llama_cpp import Llama

    with _PATCH_LOCK:
        originals = getattr(Llama, "_medcouncil_originals", None)
        if originals is None:
            originals = (Llama.eval, Llama.logits_to_logprobs, Llama.create_completion, Llama.__call__)
            Llama._medcouncil_originals = originals  # type: ignore[attr-defined]
        full_eval, full_logprobs, create_completion, call = originals
        if not on:
            Llama.eval, Llama.create_completion = full_eval, create_completion  # type: ignore[method-assign]
            Llama.__call__ = call  # type: ignore[method-assign]
            Llama.logits_to_logprobs = staticmethod(full_logprobs)  # type: ignore[method-assign]
            return
        signature = inspect.signature(create_completion)

        @functools.wraps(full_eval)
        def eval_last_rows(self: Any, tokens: Any) -> None:
            overwritten_from(self, self.n_tokens)  # an echo request's KV entries from here on are gone
            if self.draft_model is not None or not self._logits_all or self.context_params.embeddings:
                full_eval(self, tokens)
                return
            self._ctx.kv_cache_seq_rm(-1, self.n_tokens, -1)
            for start in range(0, len(tokens), self.n_batch):
                chunk = tokens[start : start + self.n_batch]
                first = self.n_tokens
                self._batch.set_batch(batch=chunk, n_past=first, logits_all=False)  # logits of its last token only
                self._ctx.decode(self._batch)
                self.input_ids[first : first + len(chunk)] = chunk
                last = np.ctypeslib.as_array(self._ctx.get_logits_ith(-1), shape=(self._n_vocab,))
                self.scores[first + len(chunk) - 1, :] = last
                self.n_tokens += len(chunk)
                self._requires_eval = False

        @functools.wraps(full_logprobs)
        def logprobs_of_read_rows(logits: Any, axis: int = -1) -> Any:
            if np.ndim(logits) == 2 and axis in (-1, 1):
                return _RowsOnDemand(logits, full_logprobs)
            return full_logprobs(logits, axis=axis)

        @functools.wraps(create_completion)
        def echo_on_scored_rows(self: Any, *args: Any, logprobs_from: int | None = None, **kwargs: Any) -> Any:
            asked = signature.bind(self, *args, **kwargs)
            asked.apply_defaults()
            arguments = {key: value for key, value in asked.arguments.items() if key != "self"}
            scored = self._logits_all and not self.context_params.embeddings  # embeddings: every row is an output
            if arguments.get("echo") and arguments.get("logprobs") is not None and scored:
                if arguments.get("stream"):
                    raise ValueError(ECHO_LOGPROBS_REFUSED)
                return echo_completion(create_completion, self, arguments, logprobs_from)
            return create_completion(self, *args, **kwargs)

        @functools.wraps(call)
        def call_with_extensions(self: Any, *args: Any, logprobs_from: int | None = None, **kwargs: Any) -> Any:
            return self.create_completion(*args, logprobs_from=logprobs_from, **kwargs)

        Llama.eval = eval_last_rows  # type: ignore[method-assign]
        Llama.logits_to_logprobs = staticmethod(logprobs_of_read_rows)  # type: ignore[method-assign]
        Llama.create_completion = echo_on_scored_rows  # type: ignore[method-assign]
        Llama.__call__ = call_with_extensions  # type: ignore[method-assign]


def load_llama(model_path: str, extra_buffers: bool | None = None, **kwargs: Any) -> Any:
    """A ``llama_cpp.Llama`` loaded with medcouncil's CPU settings (every in-process GGUF load goes here)."""
    apply_cpu_settings(extra_buffers_default() if extra_buffers is None else extra_buffers)
    apply_last_row_logits()
    import llama_cpp

    return llama_cpp.Llama(model_path, **kwargs)


def accept_logprobs_from() -> None:
    """Let the server's completion request carry :data:`LOGPROBS_FROM` (its request model drops unknown fields):
    called before llama-cpp-python's server app is imported, which builds its routes from that model."""
    import llama_cpp.server.types as types
    from pydantic import Field, model_validator

    if "llama_cpp.server.app" in sys.modules:
        raise RuntimeError("accept_logprobs_from() must run before llama_cpp.server.app is imported")
    if LOGPROBS_FROM in types.CreateCompletionRequest.model_fields:
        return

    class CompletionRequest(types.CreateCompletionRequest):  # type: ignore[misc]
        max_tokens: int | None = Field(
            default=16, ge=0, description="0 only with echo and logprobs: the prompt is scored, nothing generated"
        )
        logprobs_from: int | None = Field(
            default=None, ge=0, description="medcouncil: with echo and logprobs, score the prompt from this character"
        )

        @model_validator(mode="after")
        def _nothing_generated_only_when_echoed(self) -> CompletionRequest:
            scored = self.echo and self.logprobs is not None
            if self.max_tokens == 0 and not (scored and not self.stream):
                # llama-cpp-python reads 0 as "up to the context": only a scored prompt generates nothing
                raise ValueError("max_tokens 0 is for echo with logprobs, not streamed (the prompt scored alone)")
            if scored and self.stream:
                raise ValueError("echo with logprobs is answered whole: ask with stream off")
            if scored and self.prompt in ("", [], [""]):
                raise ValueError("echo with logprobs needs a prompt to score")
            return self

    types.CreateCompletionRequest = CompletionRequest  # type: ignore[misc]


def reject_invalid_requests() -> None:
    """A request the server cannot read (not JSON, a field of the wrong type, a role it does not know, the checks
    above) is the client's error: HTTP 400 ``invalid_request_error`` naming the fields on one line, where
    llama-cpp-python answers 500 (with a traceback, or plain text for a body that is not JSON), which clients retry
    as the server's fault. Errors inside the engine stay 500."""
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from llama_cpp.server import errors

    original = errors.RouteErrorHandler.get_route_handler
    if getattr(original, "rejects_invalid", False):
        return

    def rejected(message: str) -> JSONResponse:
        error = {"message": message, "type": "invalid_request_error", "param": None, "code": None}
        return JSONResponse({"error": error}, status_code=400)

    def get_route_handler(self: Any) -> Any:
        handler = original(self)

        async def checked(request: Any) -> Any:
            if request.method == "POST":
                try:
                    json.loads(await request.body() or b"null")  # kept by the request for the route to read
                except ValueError as error:  # UnicodeDecodeError included
                    return rejected(f"invalid request: the body is not JSON ({type(error).__name__})")
            return await handler(request)

        return checked

    def message_of(self: Any, error: Exception, body: Any = None) -> tuple[int, Any]:
        if isinstance(error, RequestValidationError):
            problems = [
                f"{'.'.join(str(part) for part in problem.get('loc', ()) if part != 'body') or 'body'}: "
                f"{problem.get('msg', '')}"
                for problem in error.errors()
            ]
            message = "invalid request: " + "; ".join(problems[:5]) + (" …" if len(problems) > 5 else "")
            return 400, errors.ErrorResponse(message=message, type="invalid_request_error", param=None, code=None)
        return wrapped(self, error, body)

    wrapped = errors.RouteErrorHandler.error_message_wrapper
    get_route_handler.rejects_invalid = True  # type: ignore[attr-defined]
    errors.RouteErrorHandler.get_route_handler = get_route_handler  # type: ignore[method-assign]
    errors.RouteErrorHandler.error_message_wrapper = message_of  # type: ignore[method-assign]


def main(argv: list[str]) -> None:
    extra = "--extra-buffers" in argv
    arguments = [arg for arg in argv if arg != "--extra-buffers"]
    faulthandler.enable(all_threads=True)
    apply_cpu_settings(extra)
    apply_last_row_logits()
    print(f"{MARKER}: {'on' if extra else 'off'}", file=sys.stderr, flush=True)
    accept_logprobs_from()
    reject_invalid_requests()
    from llama_cpp.server.__main__ import main as serve

    sys.argv = [sys.argv[0], *arguments]
    serve()  # type: ignore[no-untyped-call]


if __name__ == "__main__":
    main(sys.argv[1:])

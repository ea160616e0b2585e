"""Model clients: the AutoGen ChatCompletionClient of an endpoint or component (:mod:`.components`), plus
streamed chat and ``choose``."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast

import diskcache
import httpx
import openai
from autogen_core import ComponentModel
from autogen_core.models import (
    AssistantMessage,
    ChatCompletionClient,
    ChatCompletionTokenLogprob,
    CreateResult,
    LLMMessage,
    RequestUsage,
    SystemMessage,
    TopLogprob,
    UserMessage,
)
from openai.types.chat import ChatCompletionMessageParam

from medcouncil.serving.adapter import LocalEngineClient, normalize_messages
from medcouncil.serving.cloze import METHOD, score_options
from medcouncil.serving.common.errors import (
    EndpointUnreachableError,
    EngineDiedError,
    MedcouncilError,
    RequestRejectedError,
)
from medcouncil.serving.common.paths import cache_dir
from medcouncil.serving.components import (
    Choice,
    ClientSettings,
    cache_namespace,
)
from medcouncil.serving.dialects import (
    EndpointInfo,
    Shape,
    choice_args,
    letter_logprobs,
    lone_space_bias,
    normalise,
    parse_choice_text,
    shape_args,
    stream_reports_usage,
    tokenize_request,
)
from medcouncil.serving.health import bearer
from medcouncil.serving.model_file import EMBEDDED_MODEL_NAME

if TYPE_CHECKING:
    from medcouncil.serving.pool import EndpointPool

LOST_CONNECTION_WAIT_S = 3.0
"""After a lost connection, how long to look for the engine medcouncil started dying (a crash report, a core dump)
before calling the endpoint merely unreachable."""

REJECTED_STATUS = (400, 413, 422)
"""HTTP statuses of a request the engine will never accept as it is (too long for the context, invalid)."""
NO_TOKENIZER_STATUS = (404, 405, 501)
"""Answers of an engine that has no tokenizer endpoint (shaped replies then go without the lone-space ban)."""


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "".join(part for part in content if isinstance(part, str))


def to_openai_messages(messages: Sequence[LLMMessage]) -> list[ChatCompletionMessageParam]:
    """Plain OpenAI chat messages (text only) for calls that bypass AutoGen."""
    roles = {SystemMessage: "system", UserMessage: "user", AssistantMessage: "assistant"}
    return [
        cast(ChatCompletionMessageParam, {"role": roles.get(type(m), "user"), "content": _text(m.content)})
        for m in messages
    ]


class EngineWatch(Protocol):
    """The engine process behind an endpoint, where medcouncil started it (``session.EngineLink``)."""

    def failure(self, wait: float = 0.0) -> str | None:
        """Why the engine is gone (engine, pid, signal or exit code, log), or None while it runs; ``wait``: seconds
        to keep looking while it still runs (after a lost connection, a crashing engine may not be gone yet)."""
        ...


@dataclass(frozen=True)
class _Answer:
    text: str
    logprobs: list[ChatCompletionTokenLogprob] | None


class ModelClient:
    """A model behind the OpenAI API: the AutoGen client for agents, plus streamed chat and ``choose``."""

    def __init__(
        self,
        component: ComponentModel,
        info: EndpointInfo,
        settings: ClientSettings,
        engine: EngineWatch | None = None,
        pool: EndpointPool | None = None,
    ) -> None:
        self.info = info
        self.settings = settings
        self.engine = engine
        """The engine process, when medcouncil started it: a lost connection is then checked against it."""
        self.pool = pool
        """The replicas behind this client, when it has several (``serving/pool.py``)."""
        config = component.config
        http_client = pool.client(config.get("timeout", settings.timeout)) if pool is not None else None
        if http_client is not None:  # the same AutoGen client, with its requests routed over the replicas
            from autogen_ext.models.openai import OpenAIChatCompletionClient

            # http_client reaches AsyncOpenAI (AutoGen passes its init arguments on), though the typed config omits it.
            make = cast(Any, OpenAIChatCompletionClient)
            base: ChatCompletionClient = make(**config, http_client=http_client)
        else:
            base = ChatCompletionClient.load_component(component)
        client: ChatCompletionClient = LocalEngineClient(
            base, normalize=settings.normalize, fill_stream_usage=not stream_reports_usage(info.dialect)
        )
        self._openai = openai.AsyncOpenAI(
            base_url=info.base_url or None,
            api_key=info.api_key or config.get("api_key") or "not-needed",
            timeout=config.get("timeout", settings.timeout),
            max_retries=config.get("max_retries", settings.max_retries),
            http_client=http_client,
        )
        self.cache_path: Path | None = None
        self._choice_cache: diskcache.Cache | None = None
        if settings.cache:
            from autogen_ext.cache_store.diskcache import DiskCacheStore
            from autogen_ext.models.cache import ChatCompletionCache

            self.cache_path = cache_dir() / "llm" / cache_namespace(info, settings)
            self._choice_cache = diskcache.Cache(str(self.cache_path))
            client = ChatCompletionCache(client, DiskCacheStore[Any](self._choice_cache))
        self.client = client
        self._space_bias: dict[str, int] | None = None
        self._space_lock: asyncio.Lock | None = None
        self._lock_loop: asyncio.AbstractEventLoop | None = None
        self.tokenizer_probes = 0
        """How many times the engine's tokenizer was asked for the lone-space token (once per client)."""

    @property
    def name(self) -> str:
        return self.info.model

    @property
    def endpoints(self) -> str:
        """Where the model is served: its URL, or every replica's, comma-separated (as ``--endpoint`` takes them)."""
        return ",".join(r.url for r in self.pool.replicas) if self.pool is not None else self.info.base_url

    def _check_engine(self) -> None:
        """Fail at once, naming how, when the engine medcouncil started is known to be gone."""
        if self.engine is not None and (died := self.engine.failure()) is not None:
            raise EngineDiedError(died)

    def _failure(self, error: Exception) -> MedcouncilError:
        lost: tuple[type[BaseException], ...] = (
            openai.APIConnectionError,
            openai.APITimeoutError,
            httpx.TransportError,
        )
        if self.pool is not None:
            lost += (self.pool.http.TransportError,)
        if isinstance(error, lost):
            if self.engine is not None and (died := self.engine.failure(wait=LOST_CONNECTION_WAIT_S)) is not None:
                return EngineDiedError(died)
            if self.pool is not None:
                if not any(r.up for r in self.pool.replicas):
                    reasons = "; ".join(f"{r.url}: {r.reason}" for r in self.pool.replicas)
                    return EndpointUnreachableError(f"endpoint unreachable: no replica of the pool answers ({reasons})")
                return EndpointUnreachableError(f"a replica of the pool failed mid-reply ({type(error).__name__})")
            return EndpointUnreachableError(f"endpoint unreachable: {self.info.base_url} ({type(error).__name__})")
        if isinstance(error, openai.APIStatusError):
            if error.status_code in REJECTED_STATUS:
                return RequestRejectedError(
                    f"{self.info.base_url} refused the request (HTTP {error.status_code}): {error.message}"
                )
            return MedcouncilError(f"{self.info.base_url} answered HTTP {error.status_code}: {error.message}")
        return MedcouncilError(f"{self.info.base_url}: {error}")

    async def chat(self, messages: Sequence[LLMMessage], **create_args: Any) -> CreateResult:
        """One completion; ``create_args`` are OpenAI request fields (max_tokens, temperature, ...)."""
        self._check_engine()
        try:
            return await self.client.create(messages, extra_create_args=create_args)
        except (openai.OpenAIError, httpx.HTTPError, ValueError) as error:
            raise self._failure(error) from error

    @property
    def shapes(self) -> bool:
        """Whether a ``shape`` given to :meth:`stream` is enforced (see :attr:`ClientSettings.shapes`)."""
        if self.info.dialect == "openai":
            return False  # no grammar or structured output to enforce one with: the reply is read as written
        if self.settings.shapes is not None:
            return self.settings.shapes
        return self.info.model == EMBEDDED_MODEL_NAME

    async def stream(
        self, messages: Sequence[LLMMessage], shape: Shape | None = None, **create_args: Any
    ) -> AsyncIterator[str | CreateResult]:
        """Streamed completion: text chunks, then the final CreateResult with usage. ``shape``: the form the reply
        must take, enforced by the engine when :attr:`shapes` is on (else the reply is free)."""
        if shape is not None and self.shapes:
            body = {**create_args.get("extra_body", {}), **shape_args(self.info.dialect, shape).get("extra_body", {})}
            create_args = {**create_args, "extra_body": body} if body else create_args
            if shape.frequency_penalty and "frequency_penalty" not in create_args:
                create_args = {**create_args, "frequency_penalty": shape.frequency_penalty}
            if shape.ban_lone_space and (bias := await self._shape_bias()):
                create_args = {**create_args, "logit_bias": {**create_args.get("logit_bias", {}), **bias}}
        self._check_engine()
        try:
            async for item in self.client.create_stream(messages, extra_create_args=create_args):
                yield item
        except (openai.OpenAIError, httpx.HTTPError, ValueError) as error:  # httpx: a stream cut mid-answer
            raise self._failure(error) from error

    async def _shape_bias(self) -> dict[str, int]:
        """The lone-space ban of shaped replies (:func:`lone_space_bias`), asked of the engine's tokenizer once per
        client, under a lock (concurrent first requests wait for the one answer, so every shaped request of a run
        carries the same arguments and cache key). An engine without a tokenizer (no endpoint, HTTP 404/405/501, an
        answer without tokens) gives no ban, for good; an engine that cannot be reached fails the request as any
        request fails, and is asked again next time."""
        loop = asyncio.get_running_loop()
        if self._space_lock is None or self._lock_loop is not loop:  # a lock belongs to one event loop
            self._space_lock, self._lock_loop = asyncio.Lock(), loop
        async with self._space_lock:
            if self._space_bias is None:
                self._space_bias = await self._probe_space_bias()
            return self._space_bias

    async def _probe_space_bias(self) -> dict[str, int]:
        self.tokenizer_probes += 1
        info = self.info
        base = self.pool.base_url if self.pool is not None else info.base_url  # a pool's: every replica's URLs
        requests = [r for t in ("", " ") if (r := tokenize_request(info.dialect, base, info.model, t))]
        if len(requests) < 2:  # the engine offers no tokenizer
            return {}
        headers = bearer(self.info.api_key)
        found: list[list[int]] = []
        # A pool's replicas answer it too (the first may be the one that is out).
        client = self.pool.client(self.settings.timeout) if self.pool is not None else None
        errors: tuple[type[BaseException], ...] = (httpx.HTTPError,)
        if self.pool is not None:
            errors += (self.pool.http.HTTPError,)
        try:
            async with client or httpx.AsyncClient(timeout=self.settings.timeout) as http:
                for url, body in requests:
                    response = await http.post(url, json=body, headers=headers)
                    if response.status_code in NO_TOKENIZER_STATUS:
                        return {}
                    response.raise_for_status()
                    found.append([int(token) for token in response.json()["tokens"]])
        except (ValueError, KeyError, TypeError):  # an answer that holds no token list: no tokenizer to ask
            return {}
        except errors as error:
            raise self._failure(cast(Exception, error)) from error
        return lone_space_bias(found[0], found[1])

    async def choose(self, messages: Sequence[LLMMessage], letters: Sequence[str]) -> Choice:
        """The answer constrained to ``letters``, with per-letter probabilities where the engine gives them.

        This call goes to the OpenAI SDK directly: AutoGen's CreateResult keeps only the bytes of the top
        alternatives, and llama.cpp sends none, so the letters would be lost.
        """
        self._check_engine()
        args = choice_args(self.info.dialect, letters)
        payload = to_openai_messages(normalize_messages(messages) if self.settings.normalize else messages)
        key = "choose-complete:" + hashlib.sha256(json.dumps([payload, args], sort_keys=True).encode()).hexdigest()
        if self._choice_cache is not None and (hit := self._choice_cache.get(key)) is not None:
            return Choice.model_validate_json(hit).model_copy(update={"cached": True})
        first, usage = await self._constrained(payload, letters)
        found = letter_logprobs(first.logprobs, letters) if first.logprobs is not None else None
        calls = 1
        if found is not None:
            for letter in [x for x in letters if x not in found]:
                # Outside the engine's top alternatives: constrain the answer to this letter alone and read its
                # (raw) log-probability at the same position, so every option gets the model's own probability.
                forced, extra = await self._constrained(payload, [letter])
                calls += 1
                usage = RequestUsage(
                    prompt_tokens=usage.prompt_tokens + extra.prompt_tokens,
                    completion_tokens=usage.completion_tokens + extra.completion_tokens,
                )
                value = (letter_logprobs(forced.logprobs, [letter]) or {}).get(letter)
                if value is not None:
                    found[letter] = value
        choice = Choice(
            letter=parse_choice_text(self.info.dialect, first.text, letters),
            probabilities=normalise(found, letters) if found else None,
            raw=first.text,
            usage=usage,
            calls=calls,
        )
        if self._choice_cache is not None:
            self._choice_cache.set(key, choice.model_dump_json())
        return choice

    async def cloze(self, prompt: str, options: dict[str, str]) -> Choice:
        """The option whose text the model finds likeliest after ``prompt`` (:func:`medcouncil.serving.cloze.
        score_options`: each scored as ``prompt + " " + text``, by its mean log-probability per token), with no
        letters shown, so no letter prior. ``raw`` holds each option's summed log-probability and token count.

        Raises:
            MedcouncilError: the engine gives no prompt log-probabilities (named), or as any request.
        """
        self._check_engine()
        key = "cloze:" + hashlib.sha256(json.dumps([METHOD, prompt, options], sort_keys=True).encode()).hexdigest()
        if self._choice_cache is not None and (hit := self._choice_cache.get(key)) is not None:
            return Choice.model_validate_json(hit).model_copy(update={"cached": True})
        errors: tuple[type[BaseException], ...] = (openai.OpenAIError, httpx.HTTPError)
        choice = await score_options(self._openai.completions, self.info, prompt, options, self._failure, errors)
        if self._choice_cache is not None:
            self._choice_cache.set(key, choice.model_dump_json())
        return choice

    async def _constrained(
        self, payload: list[ChatCompletionMessageParam], letters: Sequence[str]
    ) -> tuple[_Answer, RequestUsage]:
        """One request constrained to ``letters``: its text and answer-position log-probabilities."""
        args = choice_args(self.info.dialect, letters)
        extra_body = args.pop("extra_body", None)
        try:
            response = await self._openai.chat.completions.create(
                model=self.info.model, messages=payload, extra_body=extra_body, **args
            )
        except (openai.OpenAIError, httpx.HTTPError) as error:
            raise self._failure(error) from error
        first = response.choices[0]
        content = first.logprobs.content if first.logprobs else None
        positions = None
        if content is not None:
            positions = [
                ChatCompletionTokenLogprob(
                    token=item.token,
                    logprob=item.logprob,
                    top_logprobs=[
                        TopLogprob(logprob=alt.logprob, bytes=[*alt.token.encode()]) for alt in item.top_logprobs
                    ],
                )
                for item in content
            ]
        usage = response.usage
        counted = RequestUsage(
            prompt_tokens=usage.prompt_tokens if usage else 0, completion_tokens=usage.completion_tokens if usage else 0
        )
        return _Answer(first.message.content or "", positions), counted

    async def close(self) -> None:
        await self.client.close()
        await self._openai.close()
        if self.pool is not None:
            await self.pool.aclose()
        if self._choice_cache is not None:
            self._choice_cache.close()

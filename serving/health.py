"""Asking an OpenAI-compatible endpoint whether it is up, what it serves and which engine it is."""

from __future__ import annotations

import socket
import time
from typing import Any

import httpx

from medcouncil.serving.common.errors import EndpointUnreachableError
from medcouncil.serving.dialects import EndpointInfo, dialect_from_owner


def hub_reachable(host: str = "huggingface.co") -> bool:
    """Whether the Hugging Face hub's name resolves: when it does not, loaders read the local cache only (and fail in
    a second instead of retrying for half a minute)."""
    try:
        socket.getaddrinfo(host, 443)
    except OSError:
        return False
    return True


HEALTH_TIMEOUT = 10.0
"""Seconds one ``/v1/models`` request may take: a llama.cpp server busy with a long prompt was seen taking 4.8 s."""
HEALTH_ATTEMPTS = 3
"""Requests before an endpoint counts as down (0.5 s, then 1 s between them)."""


def bearer(api_key: str | None) -> dict[str, str]:
    """The ``Authorization`` header for ``api_key`` (none without a key)."""
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


def list_models(
    base_url: str, api_key: str | None = None, timeout: float = HEALTH_TIMEOUT, attempts: int = HEALTH_ATTEMPTS
) -> list[dict[str, Any]]:
    """``GET {base_url}/models``, retried ``attempts`` times when there is no answer.

    Raises:
        EndpointUnreachableError: no answer after the retries, or not an OpenAI-compatible model listing.
    """
    url = base_url.rstrip("/") + "/models"
    headers = bearer(api_key)
    for attempt in range(1, attempts + 1):
        try:
            response = httpx.get(url, headers=headers, timeout=timeout)
            break
        except httpx.HTTPError as error:
            if attempt == attempts:
                raise EndpointUnreachableError(
                    f"endpoint unreachable: {url} ({type(error).__name__}; {attempts} tries, {timeout:g}s each)"
                ) from error
            time.sleep(0.5 * 2 ** (attempt - 1))
    if response.status_code != 200:
        raise EndpointUnreachableError(f"endpoint {url} answered HTTP {response.status_code}")
    try:
        data = response.json()["data"]
    except (ValueError, KeyError, TypeError) as error:
        raise EndpointUnreachableError(f"endpoint {url} did not return an OpenAI model listing") from error
    return list(data)


def is_healthy(
    base_url: str, api_key: str | None = None, timeout: float = HEALTH_TIMEOUT, attempts: int = HEALTH_ATTEMPTS
) -> bool:
    """True when the endpoint lists at least one model (patient: a busy engine is slow, not down)."""
    try:
        return bool(list_models(base_url, api_key, timeout, attempts))
    except EndpointUnreachableError:
        return False


def describe_endpoint(base_url: str, api_key: str | None = None, model: str | None = None) -> EndpointInfo:
    """Probe an endpoint: its first (or the named) model and its dialect.

    Raises:
        EndpointUnreachableError: as :func:`list_models`, or when the named model is not served.
    """
    models = list_models(base_url, api_key)
    if not models:
        raise EndpointUnreachableError(f"endpoint {base_url} serves no model")
    chosen = models[0]
    if model is not None:
        matches = [entry for entry in models if entry.get("id") == model]
        if not matches:
            served = ", ".join(str(entry.get("id")) for entry in models)
            raise EndpointUnreachableError(f"endpoint {base_url} does not serve {model!r} (it serves: {served})")
        chosen = matches[0]
    return EndpointInfo(
        base_url=base_url.rstrip("/"),
        model=str(chosen.get("id")),
        dialect=dialect_from_owner(chosen.get("owned_by")),
        api_key=api_key,
    )

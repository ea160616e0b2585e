"""How clients reach an endpoint: their settings, the AutoGen component of an endpoint or a YAML file, the
constrained-choice record, and the namespace of the response cache."""

from __future__ import annotations

import hashlib
import importlib
import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from autogen_core import ComponentModel
from autogen_core.models import RequestUsage
from pydantic import BaseModel, Field, ValidationError

from medcouncil.serving.common.errors import ConfigError
from medcouncil.serving.common.yamlfile import parse_yaml, read_text
from medcouncil.serving.dialects import EndpointInfo

OPENAI_PROVIDER = "autogen_ext.models.openai.OpenAIChatCompletionClient"

LOCAL_MODEL_INFO: dict[str, Any] = {
    "vision": False,
    "function_calling": False,
    "json_output": True,
    "structured_output": True,
    "family": "unknown",
    "multiple_system_messages": True,
}
"""``model_info`` for local models (AutoGen requires it for any non-OpenAI model name)."""


def shapes_from_env() -> bool | None:
    """``MEDCOUNCIL_SHAPES``: ``on`` (True), ``off`` (False), ``auto`` or unset (None)."""
    value = os.environ.get("MEDCOUNCIL_SHAPES", "auto").strip().lower()
    choices: dict[str, bool | None] = {"on": True, "off": False, "auto": None}
    if value not in choices:
        raise ConfigError(f"MEDCOUNCIL_SHAPES={value}: choose from on, off, auto")
    return choices[value]


class ClientSettings(BaseModel):
    """How model clients talk to an endpoint."""

    timeout: float = Field(default=120.0, gt=0)
    """Seconds per request."""
    max_retries: int = Field(default=3, ge=0)
    """Bounded retries with exponential backoff (connection errors, 408/429/5xx), by the OpenAI SDK."""
    cache: bool = True
    """Disk cache of completions, one store per model/adapter."""
    normalize: bool = True
    """Normalise histories for chat templates that demand strict user/assistant alternation."""
    temperature: float = 0.0
    shapes: bool | None = Field(default_factory=lambda: shapes_from_env())
    """Hold replies that have a fixed form (an episode action line) to it by the engine's grammar or structured
    output. None: on for the embedded Gemma 3 270M only (a base model that does not keep a format by itself); a
    model the user serves is read as it writes unless this is set. Default from env ``MEDCOUNCIL_SHAPES``
    (``on``, ``off``, ``auto``)."""


class Choice(BaseModel):
    """A constrained answer among option letters."""

    letter: str | None
    """The chosen letter; None when the engine ignored the constraint."""
    probabilities: dict[str, float] | None = None
    """Per-letter probabilities where the engine returns log-probabilities."""
    raw: str = ""
    usage: RequestUsage = Field(default_factory=lambda: RequestUsage(prompt_tokens=0, completion_tokens=0))
    cached: bool = False
    calls: int = 1
    """Requests made: 1, plus one per letter the engine's top alternatives left out (its probability asked for
    on its own, so every option has one)."""

    @property
    def valid(self) -> bool:
        return self.letter is not None


def endpoint_component(info: EndpointInfo, settings: ClientSettings) -> ComponentModel:
    """The AutoGen component for an OpenAI-compatible endpoint."""
    return ComponentModel(
        provider=OPENAI_PROVIDER,
        config={
            "model": info.model,
            "base_url": info.base_url,
            "api_key": info.api_key or "not-needed",
            "timeout": settings.timeout,
            "max_retries": settings.max_retries,
            "temperature": settings.temperature,
            "model_info": LOCAL_MODEL_INFO,
        },
    )


def load_component(path: Path) -> ComponentModel:
    """Read an AutoGen component YAML (``provider`` + ``config``).

    Raises:
        ConfigError: missing file, invalid YAML (with its line) or not a component.
    """
    data = parse_yaml(path, read_text(path, "model config"))
    try:
        component = ComponentModel.model_validate(data)
    except ValidationError as error:
        raise ConfigError(f"{path}: not an AutoGen component (needs provider and config)") from error
    config = dict(component.config)
    if "model" not in config:
        raise ConfigError(f"{path}: config.model is required")
    if not any(config.get(key) for key in ("base_url", "host", "azure_endpoint")):
        # The provider's default would be its public API: a local model's prompts (and key) would leave the machine.
        raise ConfigError(
            f"{path}: config.base_url is missing: set it to your server's URL (a public API's URL "
            "only if you mean to send it your prompts and key)"
        )
    from autogen_core._component_config import WELL_KNOWN_PROVIDERS

    module, _, name = WELL_KNOWN_PROVIDERS.get(component.provider, component.provider).rpartition(".")
    try:
        provider = getattr(importlib.import_module(module), name) if module else None
    except ImportError as error:
        raise ConfigError(
            f"{path}: provider {component.provider!r} cannot be imported ({error}); install its package or fix the name"
        ) from None
    except AttributeError:
        provider = None
    if provider is None:
        raise ConfigError(f"{path}: provider {component.provider!r} not found (module.Class, e.g. {OPENAI_PROVIDER})")
    config.setdefault("model_info", LOCAL_MODEL_INFO)
    return component.model_copy(update={"config": config})


CACHE_VERSION = 2
"""Raised when replies stored before may be wrong. 2: the embedded llama.cpp server cut a running stream when
another request arrived (its ``interrupt_requests`` default), and the truncated reply was stored as whole."""


def cache_namespace(info: EndpointInfo, settings: ClientSettings) -> str:
    """One cache store per model as served and per sampling setting: AutoGen's cache keys hold the messages and
    request arguments only, not the model, the endpoint or the client's own temperature.

    A server medcouncil started is named by its engine and weights (:attr:`EndpointInfo.weights`), so the
    embedded model's cache survives a new port; any other endpoint by its full URL (host and port), dialect and
    what it serves (:attr:`EndpointInfo.served`), so a checkpoint swapped in behind the same URL and model name
    never reads the answers of the one before.
    """
    where = info.weights or f"{info.dialect}|{info.base_url or 'api'}" + (f"|{info.served}" if info.served else "")
    material = (
        f"v{CACHE_VERSION}|{where}|{info.model}|temperature={settings.temperature}|normalize={settings.normalize}"
    )
    host = urlparse(info.base_url).hostname if info.base_url else "api"
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{host}-{info.model}")[:80]
    return f"{slug}-{hashlib.sha256(material.encode()).hexdigest()[:12]}"

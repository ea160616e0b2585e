"""Offline text embeddings: all-MiniLM-L6-v2, shipped with medcouncil (``models/all-MiniLM-L6-v2``, float16) and
run by the built-in NumPy encoder (``bert.py``: no PyTorch in the main install), another sentence-transformers BERT
folder, any sentence-transformers model through the ``sentence-transformers`` package
(an optional install), or an OpenAI-compatible ``/v1/embeddings`` endpoint.

Vectors are L2-normalised, so cosine similarity is their dot product. The built-in encoder and
sentence-transformers give the same vectors for the same folder (and the same :attr:`Embedder.name`), so a store
built by one is searched by the other.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any, Literal, Protocol

import httpx
import numpy as np
from pydantic import BaseModel, Field

from medcouncil.serving.common.errors import ConfigError, EndpointUnreachableError


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

    kind: Literal["bert", "sentence-transformers", "openai"] = "bert"
    """``bert``: the built-in NumPy encoder (BERT-family sentence-transformers folders, mean or CLS pooling);
    ``sentence-transformers``: any sentence-transformers model (``pip install sentence-transformers``: it brings
    PyTorch); ``openai``: an OpenAI-compatible ``/v1/embeddings`` endpoint."""
    model: str | None = None
    """A sentence-transformers folder (default: the shipped all-MiniLM-L6-v2) or the endpoint's model name."""
    base_url: str | None = None
    """OpenAI-compatible base URL, for ``kind: openai``."""
    api_key: str | None = None
    batch_size: int = Field(default=64, ge=1)
    languages: list[str] = Field(default_factory=lambda: ["en"])
    """Languages the model reads (``en``, ``ko``): a query in another one is ranked and judged lexically only (the
    shipped MiniLM reads English; Hangul is noise to it)."""


def _normalise(vectors: np.ndarray[Any, Any]) -> np.ndarray[Any, np.dtype[np.float32]]:
    matrix: np.ndarray[Any, np.dtype[np.float32]] = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    normalised: np.ndarray[Any, np.dtype[np.float32]] = matrix / np.maximum(norms, 1e-12)
    return normalised


DEFAULT_MODEL_NAME = "all-MiniLM-L6-v2"
DEFAULT_MODEL = Path(__file__).with_name("models") / DEFAULT_MODEL_NAME
"""The shipped model folder (see its README: float16 weights of sentence-transformers/all-MiniLM-L6-v2)."""


def model_folder(model: str | None) -> tuple[Path, str]:
    """The local folder of an embedding model and the name a store records for it (never fetched from a hub).

    Raises:
        ConfigError: the folder does not exist.
    """
    if model is None:
        return DEFAULT_MODEL, DEFAULT_MODEL_NAME
    path = Path(model).expanduser()
    if not path.is_dir():
        raise ConfigError(f"embedding model folder not found: {model}")
    return path, path.name


def folder_identity(folder: Path) -> str:
    """The resolved folder and its files' names, sizes and modification times: what tells two models apart when
    they share a folder name (a cache of their vectors is keyed by it)."""
    files = sorted(path for path in folder.resolve().rglob("*") if path.is_file())
    stats = [f"{path.relative_to(folder.resolve())}:{path.stat().st_size}:{path.stat().st_mtime_ns}" for path in files]
    return "\n".join([str(folder.resolve()), *stats])


class BertEmbedder:
    """A BERT-family sentence-transformers folder run by the built-in NumPy encoder (no PyTorch)."""

    def __init__(self, model: str | None = None, batch_size: int = 64) -> None:
        from medcouncil.tools.bert import BertSentenceEncoder

        folder, self._name = model_folder(model)
        self.batch_size = batch_size
        self._encoder = BertSentenceEncoder(folder)
        self.identity = folder_identity(folder)

    @property
    def name(self) -> str:
        return self._name

    def encode(self, texts: list[str]) -> np.ndarray[Any, np.dtype[np.float32]]:
        return self._encoder.encode(texts, self.batch_size)


class SentenceTransformerEmbedder:
    """A local model run by the sentence-transformers package (an optional install), never fetched from a hub."""

    def __init__(self, model: str | None = None, batch_size: int = 64) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        try:
            import transformers
            from sentence_transformers import SentenceTransformer
        except ImportError:
            raise ConfigError(
                "embedding kind 'sentence-transformers' needs the package: pip install "
                "sentence-transformers (or use kind 'bert', built in)"
            ) from None

        transformers.logging.set_verbosity_error()  # type: ignore[no-untyped-call]
        transformers.logging.disable_progress_bar()  # type: ignore[no-untyped-call]
        folder, self._name = model_folder(model)
        self.batch_size = batch_size
        self._model = SentenceTransformer(str(folder), device="cpu")
        self.identity = folder_identity(folder)

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
        self.identity = f"{self.url} {model}"

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


CACHE_FORMAT = 1
"""Bumped when the cached files' layout or key changes: older files are then never read."""


class CachedEncoder:
    """An embedder's vectors for a list of texts kept on disk (``cache_dir()/embeddings``), one file per model and
    list (decontamination asks for blocks of 2,048 evaluation questions): the evaluation sets that every
    decontamination encodes again are encoded once. The key is the model's identity (class, name, and its folder's
    resolved path and files' sizes and times, or its endpoint) and the texts, each length-prefixed. A missing,
    unreadable or mismatched file is encoded afresh; a cache that cannot be written (full disk, read-only) is
    skipped. Files of evaluation sets that changed are left behind: the folder can be deleted at any time."""

    def __init__(self, embedder: Embedder, folder: Path | None = None) -> None:
        from medcouncil.serving.common.paths import cache_dir

        self.embedder = embedder
        self.folder = folder if folder is not None else cache_dir() / "embeddings"

    def key(self, texts: list[str]) -> str:
        import hashlib

        identity = [CACHE_FORMAT, type(self.embedder).__qualname__, self.embedder.name]
        identity.append(str(getattr(self.embedder, "identity", "")))
        digest = hashlib.sha256(repr(identity).encode("utf-8", "surrogatepass"))
        for text in texts:
            data = text.encode("utf-8", "surrogatepass")
            digest.update(len(data).to_bytes(8, "little") + data)
        return digest.hexdigest()

    def encode(self, texts: list[str]) -> np.ndarray[Any, np.dtype[np.float32]]:
        import tempfile

        path = self.folder / f"{self.key(texts)}.npy"
        try:
            cached: np.ndarray[Any, np.dtype[np.float32]] = np.load(path, allow_pickle=False)
            if cached.ndim == 2 and cached.shape[0] == len(texts) and cached.dtype == np.float32:
                return cached
        except (OSError, ValueError, EOFError):
            pass
        vectors: np.ndarray[Any, np.dtype[np.float32]] = np.asarray(self.embedder.encode(texts), dtype=np.float32)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            handle, tmp = tempfile.mkstemp(dir=self.folder, prefix=".", suffix=".tmp")
        except OSError:
            return vectors
        try:
            with os.fdopen(handle, "wb") as stream:
                np.save(stream, vectors, allow_pickle=False)
            os.replace(tmp, path)
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        return vectors


def build_embedder(config: EmbeddingConfig | None = None) -> Embedder:
    config = config or EmbeddingConfig()
    if config.kind == "openai":
        if not config.base_url or not config.model:
            raise ConfigError("openai embeddings need base_url and model")
        return OpenAIEmbedder(config.base_url, config.model, config.api_key, config.batch_size)
    if config.kind == "sentence-transformers":
        return SentenceTransformerEmbedder(config.model, config.batch_size)
    return BertEmbedder(config.model, config.batch_size)

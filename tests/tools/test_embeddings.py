"""The OpenAI-compatible /v1/embeddings backend, against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import json
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from medcouncil.serving.common.errors import ConfigError, EndpointUnreachableError
from medcouncil.tools.embeddings import CachedEncoder, EmbeddingConfig, OpenAIEmbedder, build_embedder

from ..conftest import QuietHandler, serving


class Handler(QuietHandler):
    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        assert self.path == "/v1/embeddings" and body["model"] == "embed-model"
        # Reversed order and unnormalised vectors: the client must sort by index and normalise.
        data = [{"index": i, "embedding": [float(len(text)), 3.0, 4.0]} for i, text in enumerate(body["input"])]
        self.reply(200, {"data": data[::-1]})


@pytest.fixture
def endpoint() -> Iterator[str]:
    with serving(ThreadingHTTPServer(("127.0.0.1", 0), Handler)) as server:
        yield f"http://127.0.0.1:{server.server_port}/v1"


def test_openai_embeddings_are_ordered_and_normalised(endpoint: str) -> None:
    embedder = build_embedder(EmbeddingConfig(kind="openai", base_url=endpoint, model="embed-model", batch_size=2))
    vectors = embedder.encode(["a", "bbb", "cc"])
    assert vectors.shape == (3, 3)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(vectors[1], np.array([3.0, 3.0, 4.0]) / np.sqrt(34), rtol=1e-6)
    assert embedder.name == "openai:embed-model"


def test_unreachable_embeddings_endpoint() -> None:
    embedder = OpenAIEmbedder("http://127.0.0.1:9/v1", "embed-model")
    with pytest.raises(EndpointUnreachableError, match=r"embeddings endpoint failed: http://127\.0\.0\.1:9/v1"):
        embedder.encode(["x"])
    with pytest.raises(ConfigError, match="need base_url and model"):
        build_embedder(EmbeddingConfig(kind="openai"))


class Counting:
    """An embedder that counts the texts it encodes (the cache's logic, no model)."""

    def __init__(self, name: str = "counting") -> None:
        self.name, self.encoded = name, 0

    def encode(self, texts: list[str]) -> np.ndarray:
        self.encoded += len(texts)
        return np.array([[float(len(t)), 1.0] for t in texts], dtype=np.float32)


def test_cached_vectors_are_encoded_once_per_model_and_list(tmp_path: Path) -> None:
    inner = Counting()
    cache = CachedEncoder(inner, tmp_path / "embeddings")
    first = cache.encode(["a", "bb"])
    assert np.array_equal(cache.encode(["a", "bb"]), first) and inner.encoded == 2
    cache.encode(["bb", "a"])  # another list: encoded
    CachedEncoder(Counting("other model"), tmp_path / "embeddings").encode(["a", "bb"])
    assert inner.encoded == 4 and len(list((tmp_path / "embeddings").glob("*.npy"))) == 3
    for path in (tmp_path / "embeddings").glob("*.npy"):
        path.write_bytes(b"not numpy")  # a damaged cache is encoded afresh
    assert np.array_equal(cache.encode(["a", "bb"]), first) and inner.encoded == 6


def test_a_cache_that_cannot_be_written_is_skipped(tmp_path: Path) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("a file where the cache folder would be")
    inner = Counting()
    vectors = CachedEncoder(inner, blocked / "embeddings").encode(["a"])
    assert vectors.shape == (1, 2) and inner.encoded == 1


def test_the_key_tells_texts_and_models_apart(tmp_path: Path) -> None:
    cache = CachedEncoder(Counting(), tmp_path)
    assert cache.key(["a\0b", "c"]) != cache.key(["a", "b\0c"])  # no separator makes two lists one
    other = Counting()
    other.identity = "/models/another/all-MiniLM-L6-v2"  # type: ignore[attr-defined]
    assert CachedEncoder(other, tmp_path).key(["a"]) != cache.key(["a"])  # same name, another folder

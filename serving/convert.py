"""GGUF → Hugging Face folder, for vLLM (which serves HF folders).

transformers dequantizes the GGUF and saves safetensors plus the tokenizer. The conversion runs in the engine's
interpreter (``EngineConfig.python``), which has torch, transformers, gguf and accelerate beside vLLM. A GGUF
without a chat template (the embedded Gemma) gets medcouncil's Gemma template.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from medcouncil.serving.common.errors import ServerStartError
from medcouncil.serving.common.paths import cache_dir
from medcouncil.serving.config import GEMMA_TEMPLATE
from medcouncil.serving.model_file import sha256_file

CONVERT_SCRIPT = """
import sys
from pathlib import Path
from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

gguf, out, template = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
if not getattr(tokenizer, "chat_template", None):
    tokenizer.chat_template = template.read_text(encoding="utf-8")
model = AutoModelForCausalLM.from_pretrained(
    gguf.parent, gguf_file=gguf.name, quantization_config=GgufConfig(dequantize=True)
)
model.save_pretrained(out)
tokenizer.save_pretrained(out)
"""

DONE_MARKER = ".medcouncil-converted"


def converted_path(gguf: Path) -> Path:
    """Where :func:`converted_folder` puts (or has put) the HF folder for ``gguf``."""
    return cache_dir() / "models" / f"{gguf.stem}-hf-{sha256_file(gguf)[:16]}"


def is_converted(gguf: Path) -> bool:
    return (converted_path(gguf) / DONE_MARKER).exists()


def converted_folder(gguf: Path, python: str, timeout: float = 1800) -> Path:
    """The HF folder for ``gguf``, converted once into the cache (keyed by the file's sha256).

    Raises:
        ServerStartError: the conversion failed; the message names the interpreter and its last error line.
    """
    out = converted_path(gguf)
    if (out / DONE_MARKER).exists():
        return out
    out.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [python, "-c", CONVERT_SCRIPT, str(gguf), str(out), str(GEMMA_TEMPLATE)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise ServerStartError(f"converting {gguf} for vLLM with {python} failed: {last}")
    (out / DONE_MARKER).write_text(gguf.name, encoding="utf-8")
    return out

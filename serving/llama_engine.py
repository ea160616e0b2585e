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

``python -m medcouncil.serving.llama_engine [--extra-buffers] --config_file FILE`` is the embedded server: the
llama-cpp-python OpenAI server with these settings applied, and Python's fault handler on, so a crash leaves the
faulting thread's stack in the server log.
"""

from __future__ import annotations

import faulthandler
import os
import sys
from typing import Any

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


def load_llama(model_path: str, extra_buffers: bool | None = None, **kwargs: Any) -> Any:
    """A ``llama_cpp.Llama`` loaded with medcouncil's CPU settings (every in-process GGUF load goes here)."""
    apply_cpu_settings(extra_buffers_default() if extra_buffers is None else extra_buffers)
    import llama_cpp

    return llama_cpp.Llama(model_path, **kwargs)


def main(argv: list[str]) -> None:
    extra = "--extra-buffers" in argv
    arguments = [arg for arg in argv if arg != "--extra-buffers"]
    faulthandler.enable(all_threads=True)
    apply_cpu_settings(extra)
    print(f"{MARKER}: {'on' if extra else 'off'}", file=sys.stderr, flush=True)
    from llama_cpp.server.__main__ import main as serve

    sys.argv = [sys.argv[0], *arguments]
    serve()  # type: ignore[no-untyped-call]


if __name__ == "__main__":
    main(sys.argv[1:])

"""Optional installs: what each extra brings, and one clear line when a command needs one that is missing.

The main install (``pip install -e .``) chats, serves, benchmarks and indexes without PyTorch. Training needs
``.[train]`` (torch, transformers, peft, accelerate), Hugging Face dataset ids ``.[hf]``, the vLLM engine in the same
environment ``.[vllm]``, federated fine-tuning on Flower ``.[federated]`` (and
``.[federated-sim]`` for its Simulation Engine, which brings Ray).
"""

from __future__ import annotations

import importlib.util

from medcouncil.serving.common.errors import ConfigError

EXTRAS: dict[str, tuple[str, ...]] = {
    "train": ("torch", "transformers", "peft", "accelerate"),
    "hf": ("datasets",),
    "vllm": ("vllm",),
    "federated": ("torch", "transformers", "peft", "flwr"),
    "federated-sim": ("torch", "transformers", "peft", "flwr", "ray"),
}
"""Each extra of ``pyproject.toml`` and the modules it makes importable."""


def missing(extra: str) -> list[str]:
    """The modules of ``extra`` that cannot be imported here."""
    return [module for module in EXTRAS[extra] if importlib.util.find_spec(module) is None]


def require(extra: str, purpose: str) -> None:
    """Raise a one-line error naming the install command when ``extra`` is not installed.

    Raises:
        ConfigError: a module of the extra is missing.
    """
    absent = missing(extra)
    if absent:
        raise ConfigError(
            f"{purpose} needs the '{extra}' extra ({', '.join(absent)} not installed): "
            f"pip install 'medcouncil[{extra}]'"
        )

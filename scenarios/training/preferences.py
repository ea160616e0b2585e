"""Preference pairs for ``finetune --method dpo``: from a pairs file (JSONL with ``prompt``, text or chat messages,
``chosen`` and ``rejected``: TRL's names), a ``distill`` output (a rationale reaching the gold option against one
that does not: ``distill.distill_pairs``) or an arena run (``scenarios/arena/pairs.py``); their prompts
decontaminated against the local evaluation sets as ``data build`` does. The command picks the source
(``scenarios/cli/finetune.py``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from medcouncil.serving.common.errors import ConfigError
from medcouncil.serving.common.jsonl import first_object
from medcouncil.serving.training.config import FinetuneConfig
from medcouncil.serving.training.preference import PreferenceExample, is_preference_jsonl, read_preferences

if TYPE_CHECKING:
    from medcouncil.scenarios.training.decontamination import EvalItem
    from medcouncil.tools.embeddings import Embedder


def load_preferences(config: FinetuneConfig) -> tuple[list[PreferenceExample], str]:
    """The pairs (the first ``limit``) and a description of their source.

    Raises:
        ConfigError: no ``--data``, or neither a pairs file nor an arena run.
    """
    if config.data is None:
        raise ConfigError("--data is required: preference pairs (JSONL: prompt, chosen, rejected) or an arena run")
    path = Path(config.data).expanduser()
    if path.is_file() and is_preference_jsonl(path):
        pairs = read_preferences(path)
    elif path.is_file() and is_distillation(path):
        from medcouncil.scenarios.training.distill import distill_pairs

        pairs = distill_pairs(path)
    else:
        raise ConfigError(
            f"{config.data}: not preference pairs (JSONL with prompt, chosen, rejected), a distill output nor an "
            "arena run folder"
        )
    return (pairs[: config.limit] if config.limit else pairs), str(path.resolve())


def is_distillation(path: Path) -> bool:
    """Whether ``path`` is a ``medcouncil distill`` output: its manifest beside it, or rows shaped as its rows."""
    if path.with_suffix(".run.json").is_file():
        return True
    record = first_object(path)
    return record is not None and {"kept", "gold", "answers"} <= record.keys()


def decontaminate_pairs(
    pairs: list[PreferenceExample], evals: Sequence[EvalItem], embedder: Embedder | None
) -> tuple[list[PreferenceExample], int]:
    """The pairs whose question (else the prompt's last user turn) overlaps no evaluation item (exact, or near
    under the embedder), and how many were dropped."""
    from medcouncil.scenarios.training.decontamination import find_overlaps

    questions = [(str(n), pair.question or pair.prompt[-1].content) for n, pair in enumerate(pairs)]
    overlaps = find_overlaps(questions, evals, embedder)
    clean = [pair for n, pair in enumerate(pairs) if str(n) not in overlaps]
    return clean, len(pairs) - len(clean)

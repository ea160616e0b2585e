"""Training data from benchmark datasets: each sample becomes one chat example in the run-time prompt format.

The user turn is the single model's question format (``tools/mcqa.MCQA_TEMPLATE``), the assistant turn the answer
line (``tools/mcqa.ANSWER_LINE``: the letter first, which the constrained choice reads at run time).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from medcouncil.scenarios.datasets.samples import Sample
from medcouncil.serving.common.errors import ConfigError
from medcouncil.serving.training.data import ChatExample, Message
from medcouncil.tools.mcqa import answer_line, format_mcqa

if TYPE_CHECKING:
    from medcouncil.serving.training.config import FinetuneConfig


def record_to_example(sample: Sample) -> ChatExample:
    """One MCQA sample as a single-model training conversation."""
    return ChatExample(
        messages=(
            Message(role="user", content=format_mcqa(sample.question, sample.options)),
            Message(role="assistant", content=answer_line(sample.answer, sample.options)),
        ),
        source=sample.id,
    )


def samples_to_examples(samples: Sequence[Sample]) -> list[ChatExample]:
    return [record_to_example(sample) for sample in samples]


def load_examples(config: FinetuneConfig) -> tuple[list[ChatExample], str]:
    """The training examples and a description of their source.

    Raises:
        ConfigError: no data given; a malformed chat file (file:line) or dataset.
    """
    from medcouncil.serving.training.data import is_chat_jsonl, read_chat_jsonl
    from medcouncil.serving.training.preference import is_preference_jsonl

    if config.data is None:
        raise ConfigError("--data is required: a chat JSONL file ('messages') or a dataset medcouncil bench loads")
    path = Path(config.data).expanduser()
    if path.suffix.lower() in (".jsonl", ".ndjson") and path.is_file() and is_preference_jsonl(path):
        raise ConfigError(
            f"{path}: preference pairs (chosen, rejected), not chat examples: train them with --method dpo"
        )
    if is_chat_jsonl(path):
        examples = read_chat_jsonl(path)
        return (examples[: config.limit] if config.limit else examples), str(path.resolve())
    samples, source = dataset_samples(config)
    if not samples:
        raise ConfigError(f"{config.data}: no valid items")
    chosen = samples[: config.limit] if config.limit else samples
    return samples_to_examples(chosen), source


def dataset_samples(config: FinetuneConfig) -> tuple[list[Sample], str]:
    """The samples of ``config.data`` read as a dataset (every row valid, or a one-line error) and their source.

    Raises:
        ConfigError: unknown dataset, missing file, or a malformed row (``FILE:LINE``).
    """
    from medcouncil.scenarios.datasets.generic import FieldMap
    from medcouncil.scenarios.datasets.registry import load_dataset
    from medcouncil.scenarios.datasets.samples import MalformedRow

    assert config.data is not None
    try:
        samples, info = load_dataset(
            config.data,
            config.subset,
            config.split,
            FieldMap.parse(config.fields) if config.fields else None,
            strict=True,
            data_root=config.data_dir,
        )
    except MalformedRow as error:
        raise ConfigError(f"malformed training row: {error}") from None
    return samples, info.source

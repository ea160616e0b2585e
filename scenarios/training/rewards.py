"""Verifiable rewards for ``finetune --method grpo`` on multiple-choice items.

Each item becomes the diagnostician's prompt exactly as the council renders it at run time (system prompt and task:
``sft.diagnostician_task``); a completion earns 1 when the letter of its last ``Final answer:`` line is the gold
letter (``distill.read_final``, which also reads an option's text) and :data:`FORMAT_REWARD` when it has that line
at all: the role's shape. The items are decontaminated against the local evaluation sets as ``data build`` does.
"""

from __future__ import annotations

from collections.abc import Sequence

from medcouncil.agents import prompts
from medcouncil.scenarios.datasets.samples import Sample
from medcouncil.scenarios.training.distill import read_final
from medcouncil.scenarios.training.sft import diagnostician_task
from medcouncil.serving.common.errors import ConfigError
from medcouncil.serving.training.config import FinetuneConfig
from medcouncil.serving.training.data import Message
from medcouncil.serving.training.grpo import RewardExample

FORMAT_REWARD = 0.2
"""What the role's shape alone earns (a ``Final answer:`` line), beside 1 for the gold letter."""


def mcqa_reward(text: str, example: RewardExample) -> float:
    """1 for the gold letter in the last final answer line, plus :data:`FORMAT_REWARD` for having such a line."""
    letter, _ = read_final(text, example.options)
    shaped = prompts.FINAL_ANSWER_PATTERN.search(text) is not None
    return (1.0 if letter == example.answer else 0.0) + (FORMAT_REWARD if shaped else 0.0)


def sample_to_reward_example(sample: Sample) -> RewardExample:
    return RewardExample(
        prompt=(
            Message(role="system", content=prompts.DIAGNOSTICIAN_SYSTEM),
            Message(role="user", content=diagnostician_task(sample)),
        ),
        answer=sample.answer,
        options=sample.options,
        source=sample.id,
    )


def load_reward_examples(config: FinetuneConfig, decontaminate: bool) -> tuple[list[RewardExample], str]:
    """The items of ``--data`` (a dataset ``bench`` loads) as reward examples, decontaminated unless told not to.

    Raises:
        ConfigError: no data, a malformed row, no valid item, or every item overlapping an evaluation set.
    """
    from medcouncil.scenarios.training.examples import dataset_samples

    if config.data is None:
        raise ConfigError("--data is required: a multiple-choice dataset (GRPO rewards the gold letter)")
    samples, source = dataset_samples(config)
    chosen: Sequence[Sample] = samples[: config.limit] if config.limit else samples
    if decontaminate:
        from medcouncil.scenarios.training.decontamination import decontaminate as drop
        from medcouncil.scenarios.training.decontamination import local_eval_sets
        from medcouncil.tools.embeddings import build_embedder

        chosen, dropped = drop(chosen, local_eval_sets(config.data_dir), build_embedder())
        source = f"{source} (decontaminated: {len(dropped)} items dropped)"
    if not chosen:
        raise ConfigError(f"{config.data}: no item left to train on")
    return [sample_to_reward_example(sample) for sample in chosen], source

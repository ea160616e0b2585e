"""Training data from benchmark datasets: each sample becomes one chat example in the run-time prompt format.

The user turn is the single model's question format (``tools/mcqa.MCQA_TEMPLATE``), the assistant turn the answer
line (``tools/mcqa.ANSWER_LINE``: the letter first, which the constrained choice reads at run time).
"""

from __future__ import annotations

from collections.abc import Sequence

from medcouncil.scenarios.samples import Sample
from medcouncil.serving.finetune.data import ChatExample, Message
from medcouncil.tools.mcqa import answer_line, format_mcqa


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

"""Was the model under test trained on the benchmark? A check of a fine-tuned model's run card against a run's
items, for ``medcouncil bench``.

The card (``run.json`` of ``medcouncil finetune``, found through the server that serves the adapter or given with
``--model-card``) names the training data and how it was read. Its examples are read again; the question of each
benchmark item is looked for in their user turns: the case quoted between ⟪ and ⟫ (as every council prompt and the
single-model question quote it) matched after :func:`decontamination.normalise_text`, or, for a user turn without
quotes, the question's normalised text contained in it. A match means the model saw the item (and usually its
answer) while training: its score on that item is not a held-out score.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from medcouncil.scenarios.datasets.samples import Sample
from medcouncil.scenarios.training.decontamination import normalise_text
from medcouncil.serving.common.errors import MedcouncilError, first_line
from medcouncil.serving.common.jsonl import BadLine, read_json

QUOTED = re.compile(r"⟪(.*?)⟫", re.DOTALL)
SHOWN = 20
"""Overlapping item ids kept in the run log (the count is always complete)."""


class TrainingOverlap(BaseModel):
    """The outcome of the check, kept in the run's ``run.json``."""

    card: str
    data: str = ""
    """The training data the card names."""
    checked: int = 0
    overlapping: int = 0
    ids: list[str] = []
    """The first overlapping items (up to :data:`SHOWN`)."""
    note: str = ""
    """Why the check could not be made, when it could not."""

    def warning(self) -> str:
        if self.note:
            return f"training data of the model not checked against this benchmark: {self.note}"
        return (
            f"the model was trained on {self.overlapping} of these {self.checked} items ({self.data}, named by "
            f"{self.card}): their answers are not held-out scores"
        )


def _training_turns(card_path: Path) -> tuple[str, list[str]]:
    """The data the card names and the user turns of its examples.

    Raises:
        MedcouncilError: the card or the data cannot be read (the message names the file).
    """
    from medcouncil.scenarios.training.examples import load_examples
    from medcouncil.serving.training.config import FinetuneConfig

    try:
        card = read_json(card_path)
    except (BadLine, OSError) as error:
        raise MedcouncilError(str(error) if isinstance(error, BadLine) else f"{card_path}: cannot read") from None
    config = card.get("config") if isinstance(card, dict) else None
    federation = card.get("federation") if isinstance(card, dict) else None
    if isinstance(federation, dict):
        return _federated_turns(card_path, federation)
    if not isinstance(config, dict):
        raise MedcouncilError(f"{card_path}: not a medcouncil finetune run card (no config)")
    try:
        settings = FinetuneConfig.model_validate(config)
    except ValidationError:
        raise MedcouncilError(f"{card_path}: its config is not a finetune configuration") from None
    if settings.objective == "dpo":  # the prompts of its pairs
        from medcouncil.scenarios.training.preferences import load_preferences

        pairs, source = load_preferences(settings)
        return source, [m.content for p in pairs for m in p.prompt if m.role == "user"] + [p.question for p in pairs]
    if settings.objective == "grpo":  # the items it was rewarded on
        from medcouncil.scenarios.training.examples import dataset_samples

        samples, source = dataset_samples(settings)
        return source, [sample.question for sample in samples]
    examples, source = load_examples(settings)
    return source, [m.content for e in examples for m in e.messages if m.role == "user"]


def _federated_turns(card_path: Path, federation: dict[str, Any]) -> tuple[str, list[str]]:
    """The user turns of every client's training file a federated card names (the files must be on this machine:
    a deployed SuperNode's data stays on its host, and the check says which it could not read)."""
    from medcouncil.serving.training.data import read_chat_jsonl

    clients = federation.get("clients") or []
    paths = [Path(str(c.get("path", ""))) for c in clients if isinstance(c, dict)]
    absent = [str(path) for path in paths if not path.is_file()]
    if absent or not paths:
        raise MedcouncilError(
            f"{card_path}: federated clients' data not on this machine ({', '.join(absent[:3]) or 'none named'})"
        )
    turns = [m.content for path in paths for e in read_chat_jsonl(path) for m in e.messages if m.role == "user"]
    return f"{len(paths)} federated clients ({', '.join(str(p) for p in paths)})", turns


def check(card_dir: Path, samples: Sequence[Sample]) -> TrainingOverlap:
    """Compare a fine-tuned model's training data (its folder's ``run.json``) with ``samples``; never raises."""
    card_path = card_dir / "run.json" if card_dir.is_dir() else card_dir
    result = TrainingOverlap(card=str(card_path), checked=len(samples))
    try:
        source, turns = _training_turns(card_path)
    except MedcouncilError as error:
        return result.model_copy(update={"note": first_line(error)})
    quoted: set[str] = set()
    unquoted: list[str] = []
    for turn in turns:
        found = QUOTED.findall(turn)
        quoted.update(normalise_text(text) for text in found)
        if not found:
            unquoted.append(normalise_text(turn))
    ids = []
    for sample in samples:
        text = normalise_text(sample.question)
        if text and (text in quoted or any(text in turn for turn in unquoted)):
            ids.append(sample.id)
    return result.model_copy(update={"data": source, "overlapping": len(ids), "ids": ids[:SHOWN]})

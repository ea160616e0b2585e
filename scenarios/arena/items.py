"""Open-ended arena items: one frozen schema, one small adapter per source.

An :class:`ArenaItem` is a prompt every contestant answers in free text, with reference answers when the source has
them. Sources, recognised from the file (its first record):

- **patient cases** (AgentClinic OSCE, NEJM-style records, medcouncil's case JSON, or ``agentclinic`` by name): the
  whole case at once, asking for the diagnosis with its reasoning (:data:`prompts.ARENA_CASE_TASK`); references:
  the diagnosis and its aliases;
- **BioASQ** (``{"questions": [{"body", "ideal_answer", ...}]}`` or one such question per JSONL line): the question;
  references: its ideal answers, then its exact answers;
- **chat transcripts** saved with ``/save`` (``x.jsonl``): each user turn, without a reference;
- **arena JSONL** (``{"id", "prompt", "reference"?}``): as given;
- anything else is read as a **multiple-choice dataset** (a registered name, a file, an HF id) and asked without
  its options: references: the gold option's text.

A malformed record is skipped and reported as ``FILE:LINE: reason`` (``strict``: fatal).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator

from medcouncil.agents import prompts
from medcouncil.agents.cases import ClinicalCase
from medcouncil.scenarios.datasets.ids import print_renamed, unique_ids
from medcouncil.scenarios.datasets.parquet import parquet_rows
from medcouncil.scenarios.datasets.samples import Sample, convert_rows, json_items, jsonl_rows, record_id
from medcouncil.serving.common.errors import ConfigError, first_line
from medcouncil.serving.common.jsonl import load_json


class ArenaItem(BaseModel):
    """One open-ended question of the arena."""

    model_config = ConfigDict(frozen=True)

    id: str
    prompt: str
    """What every contestant is asked."""
    references: tuple[str, ...] = ()
    """Reference answers (the first is shown to a judge model; all count for the reference judge)."""
    dataset: str = ""
    """Where the item comes from: the per-dataset columns of the ratings."""
    case: ClinicalCase | None = None
    """The patient case an item was made from: what an ``episode:`` contestant plays."""

    @field_validator("prompt")
    @classmethod
    def _not_empty(cls, prompt: str) -> str:
        if not prompt.strip():
            raise ValueError("empty question")
        return prompt

    @field_validator("references")
    @classmethod
    def _kept(cls, references: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(r.strip() for r in references if r and r.strip())


def case_to_item(case: ClinicalCase, dataset: str = "cases") -> ArenaItem:
    """A patient case, all at once: the diagnosis with its reasoning is asked for."""
    prompt = prompts.ARENA_CASE_TASK.format(case=case.static_text())
    return ArenaItem(id=case.id, prompt=prompt, references=(case.diagnosis, *case.aliases), dataset=dataset, case=case)


def sample_to_item(sample: Sample, dataset: str) -> ArenaItem:
    """A multiple-choice item asked without its options; the gold option's text is the reference."""
    return ArenaItem(id=sample.id, prompt=sample.question, references=(sample.options[sample.answer],), dataset=dataset)


def _texts(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [text for entry in value for text in _texts(entry)]
    raise ValueError(f"expected text or a list of texts, got {type(value).__name__}")


def record_to_bioasq(record: Any, index: int, dataset: str = "bioasq") -> ArenaItem:
    """A BioASQ question: ``body``; ``ideal_answer`` (text or list), then ``exact_answer`` (nested lists)."""
    if not isinstance(record, dict):
        raise ValueError(f"expected an object, got {type(record).__name__}")
    references = _texts(record.get("ideal_answer")) + _texts(record.get("exact_answer"))
    return ArenaItem(
        id=record_id(record, index, "id"), prompt=record["body"], references=tuple(references), dataset=dataset
    )


def record_to_item(record: Any, index: int, dataset: str = "arena") -> ArenaItem:
    """medcouncil's arena JSONL: ``prompt`` (or ``question``), ``reference`` / ``references`` optional."""
    if not isinstance(record, dict):
        raise ValueError(f"expected an object, got {type(record).__name__}")
    prompt = record["prompt"] if "prompt" in record else record["question"]
    if not isinstance(prompt, str):
        raise ValueError(f"prompt: expected text, got {type(prompt).__name__}")
    references = _texts(record.get("references")) + _texts(record.get("reference"))
    return ArenaItem(
        id=record_id(record, index, "id"),
        prompt=prompt,
        references=tuple(references),
        dataset=str(record.get("dataset") or dataset),
    )


def record_to_chat_turn(record: Any, index: int, dataset: str = "chat") -> ArenaItem:
    """One saved conversation turn (a chat transcript line): the user's question, no reference."""
    question = record["question"]
    if not isinstance(question, dict):
        raise ValueError("question: expected an object (a transcript line)")
    return ArenaItem(id=f"turn-{index + 1}", prompt=question["text"], dataset=dataset)


def _kind(record: Any) -> str | None:
    if not isinstance(record, dict):
        return None
    if "body" in record and ("ideal_answer" in record or "exact_answer" in record):
        return "bioasq"
    if isinstance(record.get("question"), dict) and "answerer" in record:
        return "chat"
    if "prompt" in record or ("question" in record and "options" not in record and "reference" in record):
        return "arena"
    return None


ADAPTERS = {"bioasq": record_to_bioasq, "chat": record_to_chat_turn, "arena": record_to_item}


def _first(path: Path) -> object:
    """The first record that is an object (a malformed first line does not hide the format of the rest)."""
    return next((record for _, record in _rows(path) if isinstance(record, dict)), None)


def _rows(path: Path) -> Iterable[tuple[int, Any]]:
    if path.suffix.lower() == ".parquet":
        return parquet_rows(path)
    if path.suffix.lower() == ".json":
        data = load_json(path)
        if isinstance(data, dict) and isinstance(data.get("questions"), list):
            return enumerate(data["questions"], 1)
        return json_items(path)
    return jsonl_rows(path)


def load_items(
    source: str, limit: int | None = None, strict: bool = False, data_root: Path | None = None
) -> tuple[list[ArenaItem], list[str]]:
    """The items of ``source`` (the first ``limit``) and the rows skipped (``FILE:LINE: reason``).

    Raises:
        ConfigError: no such file or dataset, a format nobody reads, or no valid item at all.
        MalformedRow: the first bad row, when ``strict``.
    """
    path = Path(source).expanduser()
    kind = (
        _kind(_first(path))
        if path.is_file() and path.suffix.lower() in (".jsonl", ".ndjson", ".json", ".parquet")
        else None
    )
    name = path.stem if path.is_file() else source
    if kind is not None:
        items, bad = convert_rows(path, _rows(path), ADAPTERS[kind], strict, limit, dataset=name)
        skipped = [str(row) for row in bad]
    else:
        items, skipped = _cases_or_dataset(source, limit, strict, data_root)
    if not items:
        first = f": {skipped[0]}" if skipped else ""
        raise ConfigError(f"{source}: no valid arena item{first}")
    items, renamed = unique_ids(items)
    print_renamed(renamed)
    return items, skipped


def _cases_or_dataset(
    source: str, limit: int | None, strict: bool, data_root: Path | None
) -> tuple[list[ArenaItem], list[str]]:
    from medcouncil.scenarios.episodes.load import NAMES, adapter_for, load_cases

    path = Path(source).expanduser()
    if source in NAMES or (path.is_file() and adapter_for(_first(path)) is not None):
        cases, skipped = load_cases(source, limit, strict, data_root)
        dataset = source if source in NAMES else path.stem
        return [case_to_item(case, dataset) for case in cases], [str(row) for row in skipped]
    from medcouncil.scenarios.datasets.registry import load_dataset

    try:
        samples, info = load_dataset(source, strict=strict, data_root=data_root)
    except ConfigError as error:
        raise ConfigError(
            f"{source}: not an arena source (patient cases, BioASQ, a chat transcript, arena JSONL) nor a "
            f"dataset ({first_line(error)})"
        ) from None
    dataset = info.dataset or source
    chosen = samples[:limit] if limit else samples
    return [sample_to_item(sample, dataset) for sample in chosen], list(info.skipped_rows)

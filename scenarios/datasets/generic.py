"""Any JSONL / CSV (with a header) / JSON file of multiple-choice items, through a field mapping.

``--fields "id=qid;question=stem;options=opa,opb,opc,opd;answer=cop;answer_format=index1;subset=subject"``

- ``options``: several fields (one option each, in order) or one field holding a list or an ``{"A": ...}`` dict;
- ``answer_format``: ``letter`` (A..E, the default), ``index0`` (0 = A), ``index1`` (1 = A) or ``text`` (the
  option's text);
- ``id`` and ``subset`` are optional (the row number is the id).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ValidationError

from medcouncil.scenarios.samples import Sample, letter_at, letter_options
from medcouncil.serving.errors import ConfigError


class FieldMap(BaseModel):
    question: str
    options: list[str]
    answer: str
    answer_format: Literal["letter", "index0", "index1", "text"] = "letter"
    id: str | None = None
    subset: str | None = None

    @classmethod
    def parse(cls, text: str) -> FieldMap:
        """Read ``key=value;key=value`` (options: comma-separated field names).

        Raises:
            ConfigError: an unknown key, a missing required key or a bad answer format.
        """
        values: dict[str, Any] = {}
        for part in filter(None, (p.strip() for p in text.split(";"))):
            key, sep, value = part.partition("=")
            if not sep:
                raise ConfigError(f"--fields: {part!r} is not key=value")
            values[key.strip()] = [v.strip() for v in value.split(",")] if key.strip() == "options" else value.strip()
        try:
            return cls.model_validate(values)
        except ValidationError as error:
            problem = error.errors()[0]
            raise ConfigError(f"--fields: {'.'.join(map(str, problem['loc']))}: {problem['msg']}") from None


def _options(record: dict[str, Any], fields: FieldMap) -> dict[str, str]:
    if len(fields.options) > 1:
        return letter_options([record.get(name) for name in fields.options])
    value = record[fields.options[0]]
    if isinstance(value, dict):
        return {str(k).strip(): str(v).strip() for k, v in sorted(value.items())}
    if isinstance(value, list):
        return letter_options(value)
    raise ValueError(f"field {fields.options[0]!r} is neither a list nor a dict of options")


def _answer(raw: Any, options: dict[str, str], form: str) -> str:
    if form == "index0":
        return letter_at(int(raw))
    if form == "index1":
        return letter_at(int(raw) - 1)
    if form == "text":
        letters = [letter for letter, text in options.items() if text.strip().lower() == str(raw).strip().lower()]
        if not letters:
            raise ValueError(f"answer {raw!r} is none of the options")
        return letters[0]
    return str(raw).strip().upper().rstrip(".)")


def record_to_sample(record: dict[str, Any], index: int, fields: FieldMap) -> Sample:
    options = _options(record, fields)
    subset = str(record.get(fields.subset) or "") if fields.subset else ""
    return Sample(
        id=str(record[fields.id]) if fields.id else str(index),
        question=str(record[fields.question]).strip(),
        options=options,
        answer=_answer(record[fields.answer], options, fields.answer_format),
        metadata={"dataset": "generic", **({"subset": subset} if subset else {})},
    )

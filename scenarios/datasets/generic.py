"""Any JSONL / CSV (with a header) / JSON file of multiple-choice items, through a field mapping.

``--fields "id=qid;question=stem;options=opa,opb,opc,opd;answer=cop;answer_format=index1;subset=subject"``

- ``options``: several fields (one option each, in order) or one field holding a list or an ``{"A": ...}`` dict;
- ``answer_format``: ``letter`` (A..E, the default), ``index0`` (0 = A), ``index1`` (1 = A) or ``text`` (the
  option's text);
- ``id`` and ``subset`` are optional (the row number is the id).

Without ``--fields``, a file in no known format is read with a mapping guessed from common field names
(:func:`guess`: ``question``/``stem``/``prompt``, ``options``/``choices`` or numbered ``opt1``.. / ``option_a``.. /
``A``..``J`` fields, ``answer``/``correct``/``label``/``gold``, ``id``/``qid``, ``subject``/``category``); the
guess is printed, so it can be checked and overridden.
"""

from __future__ import annotations

import difflib
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from medcouncil.scenarios.datasets.samples import (
    Sample,
    letter_at,
    letter_options,
    options_field,
    text_of,
    whole_number,
)
from medcouncil.serving.common.errors import ConfigError


class FieldMap(BaseModel):
    model_config = ConfigDict(extra="forbid")

    question: str
    options: list[str]
    answer: str
    answer_format: Literal["letter", "index0", "index1", "text"] = "letter"
    id: str | None = None
    subset: str | None = None

    def describe(self) -> str:
        """The mapping as a ``--fields`` value."""
        parts = [
            f"question={self.question}",
            f"options={','.join(self.options)}",
            f"answer={self.answer}",
            f"answer_format={self.answer_format}",
        ]
        parts += [f"{key}={value}" for key, value in (("id", self.id), ("subset", self.subset)) if value]
        return ";".join(parts)

    @classmethod
    def parse(cls, text: str) -> FieldMap:
        """Read ``key=value;key=value`` (options: comma-separated field names): the one check of ``--fields``, for
        every command that takes it and for the mapping a run log recorded.

        Raises:
            ConfigError: a part that is not key=value, an unknown key (with the nearest known one), a key given
                twice, an empty field name, a missing required key or a bad answer format.
        """
        values: dict[str, Any] = {}
        for part in filter(None, (p.strip() for p in text.split(";"))):
            key, sep, value = (piece.strip() for piece in part.partition("="))
            if not sep:
                raise ConfigError(f"--fields: {part!r} is not key=value")
            if key not in cls.model_fields:
                near = difflib.get_close_matches(key, list(cls.model_fields), n=1)
                hint = f" (did you mean {near[0]}?)" if near else ""
                raise ConfigError(f"--fields: unknown key {key!r}{hint}; the keys are {', '.join(cls.model_fields)}")
            if key in values:
                raise ConfigError(f"--fields: {key} is given twice")
            names = [v.strip() for v in value.split(",")] if key == "options" else [value]
            if not all(names):
                raise ConfigError(f"--fields: {key}={value!r} names an empty field")
            values[key] = names if key == "options" else value
        try:
            return cls.model_validate(values)
        except ValidationError as error:
            problem = error.errors()[0]
            raise ConfigError(f"--fields: {'.'.join(map(str, problem['loc']))}: {problem['msg']}") from None


def _options(record: dict[str, Any], fields: FieldMap) -> dict[str, str]:
    if len(fields.options) > 1:
        return letter_options([record.get(name) for name in fields.options])
    options = options_field(record[fields.options[0]], fields.options[0])
    return {letter.strip(): text.strip() for letter, text in options.items()}


def _answer(raw: Any, options: dict[str, str], form: str) -> str:
    if form == "index0":
        return letter_at(whole_number(raw, "answer"))
    if form == "index1":
        return letter_at(whole_number(raw, "answer") - 1)
    if form == "text":
        wanted = text_of(raw, "answer").strip().lower()
        letters = [letter for letter, text in options.items() if text.strip().lower() == wanted]
        if not letters:
            raise ValueError(f"answer {raw!r} is none of the options")
        return letters[0]
    return text_of(raw, "answer").strip().upper().lstrip("(").rstrip(".)")


def record_to_sample(record: dict[str, Any], index: int, fields: FieldMap) -> Sample:
    options = _options(record, fields)
    subset = str(record.get(fields.subset) or "") if fields.subset else ""
    return Sample(
        id=str(index) if fields.id is None or record[fields.id] is None else str(record[fields.id]),
        question=text_of(record[fields.question], fields.question).strip(),
        options=options,
        answer=_answer(record[fields.answer], options, fields.answer_format),
        metadata={"dataset": "generic", **({"subset": subset} if subset else {})},
    )


QUESTION_NAMES = ("question", "stem", "prompt", "query", "question_text", "full_question", "text", "q", "sent1")
"""``sent1``: the SWAG shape of HF MedQA copies (``sent1``, ``ending0``.., ``label``)."""
OPTION_LIST_NAMES = ("options", "choices", "candidates", "answers", "option", "choice")
ANSWER_NAMES = (
    "answer",
    "correct",
    "correct_answer",
    "answer_idx",
    "answer_index",
    "label",
    "gold",
    "target",
    "key",
    "cop",
    "correct_option",
    "answerkey",
    "answer_key",
)
ID_NAMES = ("id", "qid", "question_id", "uid", "_id", "item_id")
SUBSET_NAMES = ("subject", "subset", "category", "topic", "specialty")
NUMBERED = re.compile(r"^(?:opt|option|choice|ans|answer|op|ending)[ _-]?([a-j0-9]|10)$", re.IGNORECASE)


def _find(keys: dict[str, str], names: tuple[str, ...]) -> str | None:
    return next((keys[name] for name in names if name in keys), None)


def _numbered_options(record: dict[str, Any]) -> list[str]:
    """Fields holding one option each: ``opt1``.., ``option_a``.., ``opa``.. or ``A``..``J``, in order."""
    numbered: list[tuple[int, str]] = []
    for key in record:
        name = str(key)
        match = NUMBERED.match(name)
        label = (
            match.group(1).lower() if match else (name.lower()[2:] if re.fullmatch(r"op[a-j]", name.lower()) else None)
        )
        if label is None and re.fullmatch(r"[A-J]", name):
            label = name.lower()
        if label is not None:
            numbered.append((int(label) if label.isdigit() else ord(label) - ord("a") + 1, name))
    numbered.sort()
    if len(numbered) < 2 or [n for n, _ in numbered] != list(range(numbered[0][0], numbered[0][0] + len(numbered))):
        return []
    return [name for _, name in numbered]


def _answer_formats(value: Any, options: dict[str, str]) -> set[str]:
    """The answer formats one record's answer fits: a letter, a 0- or 1-based index, an option's text."""
    text = str(value).strip()
    if re.fullmatch(r"\(?[A-Ja-j][.)]?", text) and text.lstrip("(")[0].upper() in options:
        return {"letter"}
    if re.fullmatch(r"\d+", text):
        number = int(text)
        return {form for form, low in (("index0", 0), ("index1", 1)) if low <= number < low + len(options)}
    if any(option.strip().lower() == text.lower() for option in options.values()):
        return {"text"}
    return set()


def guess(records: list[Any]) -> FieldMap | None:
    """A mapping for records in no known format (a file's first ones), from common field names; None when there is
    no clear one. The field names come from the first record; the answer format from all of them, so that a file of
    indexes counting from 1 is not read as counting from 0 because its first answer happens to be below the last
    option (one 0 makes it 0-based, one answer equal to the number of options 1-based; when nothing tells, numbered
    ``opt1``.. fields or ARC's labels from "1" mean 1-based, anything else 0-based).

    Raises:
        ValueError: answers that fit no one form (a 0 and a 4 of four options; letters and texts).
    """
    record = records[0] if records else None
    if not isinstance(record, dict):
        return None
    keys = {str(k).lower(): str(k) for k in record}
    question, answer = _find(keys, QUESTION_NAMES), _find(keys, ANSWER_NAMES)
    if question is None or answer is None:
        return None
    option_fields = _numbered_options({k: v for k, v in record.items() if k not in (question, answer)})
    if not option_fields:
        listed = _find(keys, OPTION_LIST_NAMES)
        if listed is None or listed == answer or not isinstance(record[listed], list | dict | str):
            return None
        option_fields = [listed]
    fields = FieldMap(
        question=question,
        options=option_fields,
        answer=answer,
        id=_find(keys, ID_NAMES),
        subset=_find(keys, SUBSET_NAMES),
    )
    forms: set[str] | None = None
    for row in records:
        try:
            fits = _answer_formats(row[answer], _options(row, fields))
        except (ValueError, KeyError, TypeError, AttributeError):
            fits = set()
        if not fits:  # a row that fits nothing is reported when it is read
            continue
        if forms is not None and not forms & fits:
            raise ValueError(
                f"{answer}: the rows' answers fit no one form (a letter, an index from 0 or from 1, an option's text): "
                f"pass --fields '{fields.describe()}' with the answer_format that holds (letter, index0, index1, text)"
            )
        forms = fits if forms is None else forms & fits
    if not forms:
        return None
    if {"index0", "index1"} <= forms:
        form = "index1" if option_fields[0][-1:] == "1" or _labelled_from_one(record[option_fields[0]]) else "index0"
    else:
        form = sorted(forms)[0]
    return fields.model_copy(update={"answer_format": form})


def _labelled_from_one(value: Any) -> bool:
    """ARC's ``{"label": ["1", ...], "text": [...]}`` and MedExpQA's ``{"1": ..}``: an answer that names a label
    counts from 1."""
    if isinstance(value, dict) and value and all(str(key).strip().isdigit() for key in value):
        return "0" not in {str(key).strip() for key in value}
    return isinstance(value, dict) and isinstance(value.get("label"), list) and value["label"][:1] == ["1"]

"""Training examples: chat-format JSONL in, token ids with labels on the assistant turns only out.

An example is ``{"messages": [{"role": "system"|"user"|"assistant", "content": "..."}, ...]}`` (or ShareGPT's
``{"conversations": [{"from": "system"|"human"|"gpt", "value": "..."}, ...]}``); any other keys are kept as
metadata. The conversation is rendered with the tokenizer's chat template (medcouncil's Gemma template for models
that carry none), so the model is trained on exactly the text the engine builds at run time. Each assistant turn is
cut out of the rendering: the prompt before it carries no label, its content and end-of-turn marker do.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from medcouncil.serving.common.errors import ConfigError
from medcouncil.serving.common.jsonl import BadLine, first_object, iter_jsonl, json_type

IGNORE = -100
"""Label of a position that carries no loss (prompt tokens, padding)."""
ROLES = ("system", "user", "assistant")


class Message(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    role: str
    content: str

    @field_validator("role")
    @classmethod
    def _known_role(cls, value: str) -> str:
        if value not in ROLES:
            raise ValueError(f"role {value!r} is not one of {', '.join(ROLES)}")
        return value


class ChatExample(BaseModel):
    """One training conversation; the loss is on its assistant turns."""

    model_config = ConfigDict(frozen=True)

    messages: tuple[Message, ...]
    source: str = ""
    """Where it came from (``FILE:LINE`` or the dataset item), for error messages and the data card."""

    @field_validator("messages")
    @classmethod
    def _has_answer(cls, value: tuple[Message, ...]) -> tuple[Message, ...]:
        if not any(m.role == "assistant" and m.content.strip() for m in value):
            raise ValueError("no assistant turn with content: nothing to learn from")
        if late := next((n for n, m in enumerate(value) if m.role == "system" and n > 0), None):
            raise ValueError(
                f"message {late + 1} is a system message: a system message only opens a conversation (chat "
                "templates put it before the first user turn, so anywhere else it would not be trained as written)"
            )
        return value


SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}
"""ShareGPT's ``from`` values and the roles they stand for."""


def _turn_list(value: Any) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(
            isinstance(t, dict) and ({"role", "content"} <= t.keys() or {"from", "value"} <= t.keys()) for t in value
        )
    )


def chat_field(record: dict[str, Any]) -> str | None:
    """The field of ``record`` that holds a conversation (a list of ``{role, content}`` or ShareGPT
    ``{from, value}`` objects): ``messages`` first; None when no field does."""
    for key in ("messages", "conversations"):
        if key in record:
            return key
    return next((key for key, value in record.items() if _turn_list(value)), None)


def _messages(record: dict[str, Any]) -> Any:
    """The ``messages`` of a chat record; a ShareGPT ``conversations`` list is read as one (``from`` → role).

    Raises:
        ValueError: ``conversations`` is not a list of turns, a turn's ``from`` is not one of
            :data:`SHAREGPT_ROLES` or its ``value`` is not text.
    """
    if "messages" in record:
        return record["messages"]
    if not _turn_list(record["conversations"]):
        raise ValueError("conversations: expected a list of {from, value} (or {role, content}) turns")
    messages = []
    for number, turn in enumerate(record["conversations"], 1):
        if "role" in turn:
            messages.append(turn)
            continue
        role = SHAREGPT_ROLES.get(str(turn["from"]).lower())
        if role is None:
            raise ValueError(f"conversations.{number}.from: {turn['from']!r} is not one of {', '.join(SHAREGPT_ROLES)}")
        if not isinstance(turn["value"], str):
            raise ValueError(f"conversations.{number}.value: expected text, got {json_type(turn['value'])}")
        messages.append({"role": role, "content": turn["value"]})
    return messages


def first_error(error: ValidationError) -> str:
    """One line naming the invalid field and why."""
    first = error.errors()[0]
    field = ".".join(str(part) for part in first["loc"])
    message = str(first["msg"]).removeprefix("Value error, ")
    return f"{field}: {message}" if field else message


def read_chat_jsonl(path: Path) -> list[ChatExample]:
    """Every example of a chat JSONL file.

    Raises:
        ConfigError: the file is missing or unreadable, or a line is not a valid example (``FILE:LINE: reason``).
    """
    examples: list[ChatExample] = []
    try:
        lines = list(iter_jsonl(path))
    except OSError as error:
        raise ConfigError(f"{path}: cannot read training data ({error.strerror or error})") from error
    for number, record in lines:
        where = f"{path}:{number}"
        if isinstance(record, BadLine):
            raise ConfigError(str(record))
        field = chat_field(record) if isinstance(record, dict) else None
        if field not in ("messages", "conversations"):
            held = f" (its {field!r} looks like one: rename it 'messages')" if field else ""
            raise ConfigError(f"{where}: expected an object with a 'messages' list{held}")
        assert isinstance(record, dict)
        try:
            examples.append(ChatExample.model_validate({"messages": _messages(record), "source": where}))
        except ValidationError as error:
            raise ConfigError(f"{where}: {first_error(error)}") from error
        except ValueError as error:
            raise ConfigError(f"{where}: {error}") from error
    if not examples:
        raise ConfigError(f"{path}: no training examples")
    return examples


def is_chat_jsonl(path: Path) -> bool:
    """True when the first object of a JSON Lines file (``.jsonl``, ``.ndjson``, any case) holds a conversation:
    a ``messages`` field, or any field with a list of turns (a ShareGPT ``conversations``; another name is then
    refused by :func:`read_chat_jsonl` with the name to use, rather than read as a dataset it is not)."""
    if path.suffix.lower() not in (".jsonl", ".ndjson") or not path.is_file():
        return False
    record = first_object(path)
    return record is not None and chat_field(record) is not None


def fingerprint(examples: Sequence[ChatExample]) -> str:
    """sha256 of the examples' messages, in order: the data's identity in the run card."""
    digest = hashlib.sha256()
    for example in examples:
        digest.update(json.dumps([m.model_dump() for m in example.messages], ensure_ascii=False).encode())
        digest.update(b"\n")
    return digest.hexdigest()


class ChatTokenizer(Protocol):
    """What the tokenizer must do (a transformers tokenizer does)."""

    def apply_chat_template(self, conversation: Any, **kwargs: Any) -> Any: ...

    def __call__(self, text: str, **kwargs: Any) -> Any: ...


@dataclass(frozen=True)
class Tokenized:
    input_ids: list[int]
    labels: list[int]
    truncated: bool

    @property
    def labelled(self) -> int:
        return sum(label != IGNORE for label in self.labels)


def _render(tokenizer: ChatTokenizer, messages: Sequence[Message], open_turn: bool) -> str:
    rendered = tokenizer.apply_chat_template(
        [m.model_dump() for m in messages], tokenize=False, add_generation_prompt=open_turn
    )
    return str(rendered)


def segments(tokenizer: ChatTokenizer, example: ChatExample) -> list[tuple[str, bool]]:
    """The rendered conversation as (text, trained) pieces: prompts untrained, assistant turns trained.

    Raises:
        ConfigError: the template does not render the conversation as a growing prefix (e.g. two assistant turns
            in a row, which the template merges).
    """
    pieces: list[tuple[str, bool]] = []
    done = ""
    messages = example.messages
    for index, message in enumerate(messages):
        if message.role != "assistant":
            continue
        prompt = _render(tokenizer, messages[:index], open_turn=True)
        full = _render(tokenizer, messages[: index + 1], open_turn=False)
        if not prompt.startswith(done) or not full.startswith(prompt):
            raise ConfigError(
                f"{example.source}: the chat template does not render turn {index + 1} after the "
                "previous ones (consecutive assistant turns?)"
            )
        pieces.append((prompt[len(done) :], False))
        answer = full[len(prompt) :].rstrip("\n")
        pieces.append((answer, True))
        done = prompt + answer
    return pieces


def tokenize(tokenizer: ChatTokenizer, example: ChatExample, max_len: int) -> Tokenized:
    """Token ids and labels; too long an example loses tokens from the start (its answer stays whole)."""
    ids: list[int] = []
    labels: list[int] = []
    for text, trained in segments(tokenizer, example):
        if not text:
            continue
        piece = list(tokenizer(text, add_special_tokens=False)["input_ids"])
        ids += piece
        labels += piece if trained else [IGNORE] * len(piece)
    truncated = len(ids) > max_len
    if truncated:
        ids, labels = ids[-max_len:], labels[-max_len:]
    return Tokenized(ids, labels, truncated)


def split_eval(examples: Sequence[object], fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Indices of the training and held-out examples (a seeded shuffle; at least one held out when fraction > 0)."""
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    held = 0
    if fraction > 0 and len(order) >= 2:
        held = min(len(order) - 1, max(1, round(fraction * len(order))))
    return sorted(order[held:]), sorted(order[:held])

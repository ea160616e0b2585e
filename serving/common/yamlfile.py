"""Reading a YAML file into a pydantic model, with errors that name the file and line."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from medcouncil.serving.common import jsonl
from medcouncil.serving.common.errors import ConfigError

M = TypeVar("M", bound=BaseModel)


def line_of(node: yaml.Node | None, path: tuple[Any, ...]) -> int | None:
    """The 1-based line of the YAML node at ``path`` (keys and list indices), or of its nearest parent."""
    line = node.start_mark.line + 1 if node is not None else None
    for key in path:
        if isinstance(node, yaml.MappingNode):
            match = next((value for k, value in node.value if getattr(k, "value", None) == key), None)
            if match is None:
                return line
            node = match
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            node = node.value[key]
        else:
            return line
        line = node.start_mark.line + 1
    return line


def read_text(path: Path, what: str) -> str:
    """A file's text; ``FILE: cannot read WHAT (not found)`` and the like as a ConfigError."""
    try:
        return jsonl.read_text(path)
    except jsonl.BadLine as error:
        raise ConfigError(f"{path}:{error.line}: cannot read {what}: {error.reason}") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: cannot read {what} (a directory, not a file)") from None
    except FileNotFoundError as error:
        raise ConfigError(f"{path}: cannot read {what} (not found)") from error
    except OSError as error:
        raise ConfigError(f"{path}: cannot read {what} ({error.strerror})") from error


class _UniqueKeys(yaml.SafeLoader):
    """YAML's safe loader refusing a key given twice in one mapping (plain YAML keeps the last without a word)."""

    def flatten_mapping(self, node: yaml.MappingNode) -> None:
        # Checked once per mapping, before its ``<<`` merges are expanded into it (a merged key the mapping then
        # sets again is an override, not a repeat).
        checked: set[int] = self.__dict__.setdefault("_checked", set())
        if id(node) not in checked:
            checked.add(id(node))
            seen: set[tuple[str, str]] = set()
            for key_node, _ in node.value:
                if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = (key_node.tag, key_node.value)
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"key {key_node.value!r} given twice in one mapping", key_node.start_mark
                    )
                seen.add(key)
        super().flatten_mapping(node)


def parse_yaml(path: Path, text: str) -> Any:
    """Parsed YAML; a syntax error or a key given twice is a ConfigError naming ``FILE:LINE``."""
    try:
        return yaml.load(text, Loader=_UniqueKeys)  # a SafeLoader: plain data only
    except RecursionError:
        raise ConfigError(f"{path}: invalid YAML (nested too deeply)") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise ConfigError(f"{where}: invalid YAML ({getattr(error, 'problem', error)})") from error


def _mapping(path: Path, data: Any, what: str) -> dict[str, Any] | None:
    """``data`` when it is a mapping or empty (None); otherwise a ConfigError naming the file."""
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of {what} options, got {type(data).__name__}")
    return data


def load_yaml(path: Path, model: type[M], what: str = "file") -> M:
    """Read and validate ``path`` as ``model``.

    Raises:
        ConfigError: ``FILE:LINE: what is wrong`` for missing files, invalid YAML and invalid fields.
    """
    text = read_text(path, what)
    data = _mapping(path, parse_yaml(path, text), what)
    node = yaml.compose(text)
    try:
        return model.model_validate(data if data is not None else {})
    except ValidationError as error:
        first = error.errors()[0]
        line = line_of(node, tuple(first["loc"]))
        field = ".".join(str(part) for part in first["loc"]) or what
        raise ConfigError(f"{path}:{line or 1}: {field}: {first['msg']}") from error


def load_with_overrides(model: type[M], path: Path | None, overrides: dict[str, Any], what: str) -> M:
    """Defaults, then the YAML file at ``path``, then the ``overrides`` that are set (flags beat the file).

    Raises:
        ConfigError: ``FILE: field: what is wrong`` (or ``field: ...`` for a flag).
    """
    data: dict[str, Any] = {}
    if path is not None:
        data.update(_mapping(path, parse_yaml(path, read_text(path, what)), what) or {})
    data.update({key: value for key, value in overrides.items() if value not in (None, [], {})})
    try:
        return model.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or what
        source = f"{path}: " if path is not None else ""
        message = str(first["msg"]).removeprefix("Value error, ")  # a validator's own sentence, as written
        raise ConfigError(f"{source}{field}: {message}") from error

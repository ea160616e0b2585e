"""YAML files (scenarios, engine, finetune and council configs): a key given twice is an error naming its line,
where plain YAML keeps the last one without a word."""

from __future__ import annotations

from pathlib import Path

import pytest

from medcouncil.serving.common.errors import ConfigError
from medcouncil.serving.common.yamlfile import parse_yaml


def test_a_key_given_twice_is_named_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "engine.yaml"
    text = "engine: vllm\ntensor_parallel_size: 2\nextra:\n  a: 1\ntensor_parallel_size: 1\n"
    with pytest.raises(ConfigError, match=r"engine\.yaml:5: invalid YAML \(key 'tensor_parallel_size' given twice"):
        parse_yaml(path, text)
    nested = "turns:\n  - user: hi\n    expect: a\n    expect: b\n"
    with pytest.raises(ConfigError, match=r":4: invalid YAML \(key 'expect' given twice"):
        parse_yaml(path, nested)


def test_merge_keys_lists_and_distinct_keys_still_load(tmp_path: Path) -> None:
    text = "base: &b {threads: 2, port: 1}\nserver:\n  <<: *b\n  port: 2\nlist: [1, 1]\n'1': one\n1: number\n"
    assert parse_yaml(tmp_path / "ok.yaml", text) == {
        "base": {"threads": 2, "port": 1},
        "server": {"threads": 2, "port": 2},
        "list": [1, 1],
        "1": "one",
        1: "number",
    }
    nested = "c: &c {a: 1}\nserver:\n  <<: &b\n    <<: *c\n    a: 2\n  port: 2\nother: *b\n"  # an override
    assert parse_yaml(tmp_path / "ok.yaml", nested)["other"] == {"a": 2}

"""The layers import only downwards: serving <- tools <- agents <- scenarios (each may use those before it)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ("serving", "tools", "agents", "scenarios")


def imported_layers(path: Path) -> set[tuple[str, int]]:
    """(layer, line) of every ``medcouncil.<layer>`` import in a module, type-checking imports included."""
    found: set[tuple[str, int]] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        for name in names:
            parts = name.split(".")
            if parts[0] == "medcouncil" and len(parts) > 1 and parts[1] in LAYERS:
                found.add((parts[1], node.lineno))
    return found


def violations() -> list[str]:
    wrong = []
    for rank, layer in enumerate(LAYERS):
        for path in sorted((ROOT / layer).rglob("*.py")):
            for used, line in sorted(imported_layers(path)):
                if LAYERS.index(used) > rank:
                    wrong.append(f"{path.relative_to(ROOT)}:{line} ({layer}) imports medcouncil.{used}")
    return wrong


def test_layers_import_only_downwards() -> None:
    assert violations() == []


def test_the_check_sees_an_upward_import(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("from medcouncil.scenarios.bench import Harness\nimport medcouncil.agents.council\n")
    assert imported_layers(module) == {("scenarios", 1), ("agents", 2)}

"""The layers import only downwards: serving <- tools <- agents <- scenarios (each may use those before it)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ("serving", "tools", "agents", "scenarios")


def medcouncil_imports(path: Path) -> Iterator[tuple[list[str] | None, int]]:
    """Every import of a module, function-level and type-checking ones included, with its line: the parts after
    ``medcouncil.`` of each medcouncil name it imports (``from X import y`` gives ``X.y``), or None for a relative
    import."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                yield None, node.lineno
                continue
            names = [f"{node.module}.{alias.name}" for alias in node.names] if node.module else []
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "medcouncil" and len(parts) > 1 and parts[1] in LAYERS:
                yield parts[1:], node.lineno


def imported_layers(path: Path) -> set[tuple[str, int]]:
    """(layer, line) of every ``medcouncil.<layer>`` import in a module, type-checking imports included."""
    return {(parts[0], line) for parts, line in medcouncil_imports(path) if parts is not None}


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
    module.write_text("from medcouncil.scenarios.bench.harness import Harness\nimport medcouncil.agents.council\n")
    assert imported_layers(module) == {("scenarios", 1), ("agents", 2)}


def unit(parts: list[str], root: Path = ROOT) -> str:
    """The room a module lives in: ``layer.subpackage``, or the layer itself for its top-level modules."""
    if len(parts) >= 2 and (root / parts[0] / parts[1]).is_dir():
        return f"{parts[0]}.{parts[1]}"
    return parts[0]


def room_imports(root: Path = ROOT) -> tuple[dict[str, set[str]], list[str]]:
    """Room → rooms it imports (any import: module level, in a function, type-checking), and every relative
    import as ``file:line`` (modules name what they import absolutely)."""
    edges: dict[str, set[str]] = {}
    relative: list[str] = []
    for layer in LAYERS:
        for path in sorted((root / layer).rglob("*.py")):
            source = unit(list(path.relative_to(root).with_suffix("").parts), root)
            for parts, line in medcouncil_imports(path):
                if parts is None:
                    relative.append(f"{path.relative_to(root)}:{line}")
                elif (target := unit(parts, root)) != source:
                    edges.setdefault(source, set()).add(target)
    return edges, relative


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every group of rooms that import each other round a circle (strongly connected, more than one room)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_no_circle_between_rooms_and_no_relative_import() -> None:
    edges, relative = room_imports()
    assert circles(edges) == []
    assert relative == []


def test_the_check_sees_a_circle_and_a_relative_import(tmp_path: Path) -> None:
    for layer in LAYERS:
        (tmp_path / layer).mkdir()
    for room in ("bench", "cli"):
        (tmp_path / "scenarios" / room).mkdir()
    (tmp_path / "scenarios" / "bench" / "a.py").write_text("def f():\n    from medcouncil.scenarios.cli import b\n")
    (tmp_path / "scenarios" / "cli" / "b.py").write_text("from medcouncil.scenarios.bench.a import f\n")
    (tmp_path / "scenarios" / "cli" / "c.py").write_text("from . import b\n")
    edges, relative = room_imports(tmp_path)
    assert circles(edges) == [["scenarios.bench", "scenarios.cli"]]
    assert relative == ["scenarios/cli/c.py:1"]

"""The code stays typed (mypy --strict) and lint-clean (ruff), checked under its installed names."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("agents", "tools", "serving", "scenarios")


def test_mypy_strict(tmp_path: Path) -> None:
    # mypy does not follow setuptools' package-dir mapping: give it a tree of links named as installed.
    tree = tmp_path / "src" / "medcouncil"
    tree.mkdir(parents=True)
    for name in PACKAGES:
        (tree / name).symlink_to(ROOT / name, target_is_directory=True)
    # The tests and the speed benchmarks (tests/benchmarks) are checked too, under their own name.
    (tmp_path / "src" / "tests").symlink_to(ROOT / "tests", target_is_directory=True)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--config-file",
            str(ROOT / "pyproject.toml"),
            "--cache-dir",
            str(tmp_path / "cache"),
            "-p",
            "medcouncil",
            "-p",
            "tests",
        ],
        cwd=tmp_path / "src",
        env={"MYPYPATH": str(tmp_path / "src"), "PATH": str(Path(sys.executable).parent)},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff() -> None:
    folders = [str(ROOT / name) for name in (*PACKAGES, "tests")]
    result = subprocess.run([sys.executable, "-m", "ruff", "check", *folders], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format() -> None:
    """The code is in ruff's format (no hand-kept layouts: no ``fmt: skip`` markers)."""
    folders = [str(ROOT / name) for name in (*PACKAGES, "tests")]
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "format", "--check", *folders], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_subpackage_is_installed() -> None:
    """A folder with an ``__init__.py`` missing from pyproject's package list works in an editable install and is
    left out of a wheel."""
    import tomllib

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {
        "medcouncil." + ".".join(init.parent.relative_to(ROOT).parts)
        for name in PACKAGES
        for init in (ROOT / name).rglob("__init__.py")
    }
    assert found <= listed, f"not in pyproject's packages: {sorted(found - listed)}"

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
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"), "--cache-dir",
         str(tmp_path / "cache"), "-p", "medcouncil"],
        cwd=tmp_path / "src",
        env={"MYPYPATH": str(tmp_path / "src"), "PATH": str(Path(sys.executable).parent)},
        capture_output=True,
        text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff() -> None:
    folders = [str(ROOT / name) for name in (*PACKAGES, "tests")]
    result = subprocess.run([sys.executable, "-m", "ruff", "check", *folders], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr

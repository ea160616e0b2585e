"""Every speed benchmark imports against the current package and offers its command (they are run by hand)."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
BENCHMARKS = sorted(path.stem for path in HERE.glob("bench_*.py"))


def test_the_benchmarks_are_found() -> None:
    assert {"bench_serving", "bench_startup", "bench_harness", "bench_finetune"} <= set(BENCHMARKS)


@pytest.mark.parametrize("name", BENCHMARKS)
def test_a_benchmark_imports_and_has_a_command(name: str) -> None:
    module = importlib.import_module(f"tests.benchmarks.{name}")
    assert callable(module.main) and module.__doc__ and "python -m tests.benchmarks." in module.__doc__


def test_a_benchmark_runs_with_one_command_from_the_root() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tests.benchmarks.bench_startup", "--help"],
        cwd=HERE.parents[1],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0 and "--trials" in result.stdout, result.stderr

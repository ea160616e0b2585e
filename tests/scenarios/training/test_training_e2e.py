"""End to end on the real components: role-shaped data from shared MedMCQA rows -> a real (few-step) LoRA run ->
the adapter served by the real llama.cpp server beside the base -> bench on a handful of items, which warns that
the adapter was trained on them (its run card, found through the server) and stays quiet for the base."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.conftest import SHARED

pytestmark = pytest.mark.integration
MEDMCQA_DEV = SHARED / "data" / "raw" / "medmcqa_dev.jsonl"
if not MEDMCQA_DEV.exists():
    pytest.skip(f"shared data not found at {MEDMCQA_DEV}", allow_module_level=True)


def run(cli: list[str], *args: str, timeout: int = 900) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([*cli, *args], capture_output=True, text=True, timeout=timeout)
    assert done.returncode in (0, 1), done.stderr
    return done


def test_build_finetune_serve_bench(cli: list[str], tmp_path: Path) -> None:
    data, adapter = tmp_path / "sft.jsonl", tmp_path / "adapter"
    built = run(
        cli,
        "data",
        "build",
        "--dataset",
        str(MEDMCQA_DEV),
        "--limit",
        "6",
        "--no-decontaminate",
        "--mix",
        "diagnostician=0.5,critic=0.25,single=0.25",
        "--size",
        "8",
        "--out",
        str(data),
    )
    assert built.returncode == 0, built.stderr
    trained = run(
        cli,
        "finetune",
        "--data",
        str(data),
        "--max-steps",
        "2",
        "--batch-size",
        "2",
        "--max-seq-len",
        "256",
        "--out",
        str(adapter),
    )
    assert trained.returncode == 0, trained.stderr
    assert json.loads((adapter / "run.json").read_text())["finished"]
    served = run(cli, "serve", "--lora", f"tuned={adapter}", "--detach", timeout=300)
    assert served.returncode == 0, served.stderr
    try:
        tuned = run(
            cli,
            "bench",
            "--dataset",
            str(MEDMCQA_DEV),
            "--limit",
            "4",
            "--mode",
            "single",
            "--model",
            "tuned",
            "--out",
            str(tmp_path / "tuned"),
        )
        assert tuned.returncode == 0, tuned.stderr
        assert "the model was trained on 4 of these 4 items" in " ".join(tuned.stderr.split())
        manifest = json.loads((tmp_path / "tuned" / "run.json").read_text())
        assert manifest["config"]["model"] == "tuned" and manifest["training"]["overlapping"] == 4
        assert manifest["training"]["card"] == str(adapter.resolve() / "run.json")
        assert "WARNING: the model was trained on 4 of these 4 items" in (tmp_path / "tuned" / "report.md").read_text()
        records = [json.loads(line) for line in (tmp_path / "tuned" / "samples.jsonl").read_text().splitlines()]
        assert len(records) == 4
        base = run(
            cli,
            "bench",
            "--dataset",
            str(MEDMCQA_DEV),
            "--limit",
            "4",
            "--mode",
            "single",
            "--out",
            str(tmp_path / "base"),
        )
        assert base.returncode == 0, base.stderr
        assert "trained on" not in base.stderr
        assert json.loads((tmp_path / "base" / "run.json").read_text())["training"] is None
    finally:
        run(cli, "serve", "--stop", timeout=120)

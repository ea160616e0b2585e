"""``medcouncil federate`` refuses what it cannot run in one line, before any engine or model starts."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from medcouncil.scenarios.cli.federate import settings_from
from medcouncil.serving.common.errors import ConfigError
from tests.conftest import SHARED

NO_FLAGS: dict[str, dict[str, object]] = {"top": {}, "partition": {}, "federation": {}}


def run(cli: list[str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*cli, "federate", *args], capture_output=True, text=True, timeout=300)


def error_line(done: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 1 and len(lines) == 1, done.stderr
    return lines[0]


def test_flags_override_the_yaml_inside_their_sections(tmp_path: Path) -> None:
    config = tmp_path / "fed.yaml"
    config.write_text(
        "data: [medqa]\npartition: {scheme: subject, clients: 4}\nfederation: {rounds: 5, strategy: fedprox}\n"
        "train: {lora_r: 8}\n"
    )
    flags: dict[str, dict[str, object]] = {
        "top": {"limit": 30},
        "partition": {"clients": 2},
        "federation": {"rounds": None, "mu": 0.1},
    }
    settings = settings_from(config, flags)
    assert (settings.limit, settings.partition.scheme, settings.partition.clients) == (30, "subject", 2)
    assert (settings.federation.rounds, settings.federation.strategy, settings.federation.mu) == (5, "fedprox", 0.1)
    assert settings.train.lora_r == 8
    with pytest.raises(ConfigError, match=r"^federate: federation.strategy: Input should be 'fedavg' or 'fedprox'"):
        settings_from(config, {**NO_FLAGS, "federation": {"strategy": "fedyogi"}})
    with pytest.raises(ConfigError, match=r"federation.*central DP needs both"):
        settings_from(None, {**NO_FLAGS, "federation": {"dp_noise_multiplier": 1.0}})
    config.write_text("federation: {rounds: 0}\n")
    with pytest.raises(ConfigError, match=r"fed.yaml"):
        settings_from(config, NO_FLAGS)


def test_the_cli_errors_are_one_line(cli: list[str], tmp_path: Path) -> None:
    assert "--data is required" in error_line(run(cli, "--out", str(tmp_path / "a")))
    assert "central DP needs both" in error_line(run(cli, "--dp-noise", "1", "--out", str(tmp_path / "b")))
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "federation.json").write_text("{}")
    line = error_line(run(cli, "--data", "medqa", "--out", str(taken)))
    assert f"{taken} already holds a run: continue it with --resume {taken}" in line
    assert "not a federation plan" in error_line(run(cli, "--resume", str(taken)))
    assert "cannot read the federation plan" in error_line(run(cli, "--resume", str(tmp_path / "nowhere")))


@pytest.mark.skipif(not (SHARED / "data").is_dir(), reason="../shared/data is not beside the project")
def test_a_partition_that_cannot_be_made_is_refused_before_any_engine(cli: list[str], tmp_path: Path) -> None:
    flat = SHARED / "data" / "mcqa" / "medmcqa.test.jsonl"
    done = run(
        cli,
        "--data",
        str(flat),
        "--limit",
        "50",
        "--partition",
        "subject",
        "--no-decontaminate",
        "--out",
        str(tmp_path / "run"),
    )
    assert "1 subjects for 3 clients" in error_line(done) and "name no subject" in done.stderr
    assert not (tmp_path / "run" / "federation.json").exists()

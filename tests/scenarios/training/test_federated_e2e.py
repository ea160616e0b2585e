"""Real federated runs of the embedded Gemma 3 270M on shared MedMCQA items: the Simulation Engine (a server killed
with kill -9 and resumed; a client that fails mid-run), the Deployment Engine (a SuperLink and two SuperNodes on
loopback), and the result served by llama.cpp as an ordinary adapter."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from medcouncil.scenarios.datasets.registry import load_dataset
from medcouncil.scenarios.training.federate import FederateConfig, build_plan
from medcouncil.scenarios.training.partition import PartitionConfig
from medcouncil.serving.training.card import RunCard
from medcouncil.serving.training.federated.config import FederationConfig, FederationPlan
from tests.conftest import SHARED

pytestmark = pytest.mark.integration
pytest.importorskip("flwr")
pytest.importorskip("ray")
DEV = SHARED / "data" / "raw" / "medmcqa_dev.jsonl"
if not DEV.exists():
    pytest.skip(f"shared data not found at {DEV}", allow_module_level=True)

TINY_TRAIN = {
    "lora_r": 4,
    "lora_alpha": 8,
    "target_modules": ["q_proj", "v_proj"],
    "batch_size": 1,
    "max_seq_len": 96,
    "learning_rate": 1e-3,
}
TINY_FEDERATION = {"rounds": 2, "local_steps": 2, "min_clients": 2, "eval_items": 3, "probe_items": 2}


def tiny_config(out: Path, **federation: Any) -> dict[str, Any]:
    return {
        "data": [str(DEV)],
        "limit": 40,
        "out": str(out),
        "decontaminate": False,
        "eval_fraction": 0.1,
        "partition": {"scheme": "subject", "clients": 2},
        "federation": {**TINY_FEDERATION, **federation},
        "train": TINY_TRAIN,
    }


def tiny_plan(out: Path, **federation: Any) -> FederationPlan:
    samples, _ = load_dataset(str(DEV))
    config = FederateConfig.model_validate(tiny_config(out, **federation))
    plan, _ = build_plan(config, samples[:40], DEV.name)
    return plan


def card_of(out: Path) -> RunCard:
    return RunCard.model_validate_json((out / "run.json").read_text(encoding="utf-8"))


def test_a_server_killed_with_kill_9_resumes_from_its_last_round(cli: list[str], tmp_path: Path) -> None:
    out = tmp_path / "fed"
    config = tmp_path / "fed.yaml"
    config.write_text(yaml.safe_dump(tiny_config(out)), encoding="utf-8")
    log = (tmp_path / "first.log").open("wb")
    first = subprocess.Popen(
        [*cli, "federate", "--config", str(config)], stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    deadline = time.monotonic() + 600
    while not (out / "rounds" / "round-0001" / "state.json").exists():
        assert first.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
        assert time.monotonic() < deadline, "round 1 never finished"
        time.sleep(1)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    assert not (out / "run.json").exists()  # killed before the end: no card, no adapter yet
    resumed = subprocess.run([*cli, "federate", "--resume", str(out)], capture_output=True, text=True, timeout=900)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    card = card_of(out)
    fed = card.federation
    assert card.finished and fed is not None and fed.status == "finished"
    assert [r.round for r in fed.rounds] == [1, 2] and card.resumed_from[-1].endswith("round-0001")
    assert fed.initial is not None and fed.initial.items == 2 and fed.initial.loss is not None
    assert all(r.finished == 2 and r.eval is not None and r.eval.loss is not None for r in fed.rounds)
    assert fed.rounds[1].lr < fed.rounds[0].lr  # cosine across rounds, continued after the kill
    assert fed.full_model_bytes > 20 * (fed.sent_bytes + fed.received_bytes) > 0
    assert [c.name for c in fed.clients] == ["client-0", "client-1"] and all(c.examples > 0 for c in fed.clients)
    assert (out / "adapter_model.safetensors").is_file() and "<h2>Federation</h2>" in (out / "report.html").read_text()
    assert "round" in resumed.stdout and "whole models" in resumed.stdout.replace("\n", " ")
    assert_served(out)


def assert_served(adapter: Path) -> None:
    """llama.cpp serves the federated adapter as any finetune adapter (GGUF LoRA, its base checked)."""
    from medcouncil.serving.config import EngineConfig
    from medcouncil.serving.health import list_models
    from medcouncil.serving.server import EngineServer

    server = EngineServer(EngineConfig(lora={"federated": adapter}))
    state = server.start()
    try:
        assert {m["id"] for m in list_models(state.base_url)} >= {"federated"}
    finally:
        server.stop()


def test_a_client_failing_mid_run_leaves_the_round_to_the_others(tmp_path: Path) -> None:
    from flwr.clientapp import ClientApp

    from medcouncil.serving.training.federated import engines
    from medcouncil.serving.training.federated.app import simulated_data, train_handler

    plan = tiny_plan(tmp_path / "fed", min_clients=1)
    data_for = simulated_data(plan)
    flaky = ClientApp()

    @flaky.train()
    def train(message: Any, context: Any) -> Any:
        data = data_for(context)
        if data.name == "client-1" and int(message.content["config"]["medcouncil-round"]) == 2:
            raise RuntimeError("hospital B lost power")
        return train_handler(message, context, data)

    card = engines.simulate(plan, log=lambda text: None, client=flaky)
    fed = card.federation
    assert card.finished and fed is not None
    assert [(r.sampled, r.finished) for r in fed.rounds] == [(2, 2), (2, 1)]
    (failed,) = [c for c in fed.rounds[1].clients if not c.ok]
    assert "hospital B lost power" in failed.error and len(failed.error.splitlines()) == 1


def test_deployment_engine_superlink_and_two_supernodes_on_loopback(tmp_path: Path) -> None:
    from medcouncil.serving.training.federated import engines

    plan = tiny_plan(tmp_path / "fed", rounds=1, local_steps=1, engine="deployment")
    card = engines.deploy(plan, log=lambda text: None)
    fed = card.federation
    assert card.finished and fed is not None and fed.engine == "deployment"
    assert fed.rounds[0].finished == 2 and {c.client for c in fed.rounds[0].clients} == {"client-0", "client-1"}
    logs = {p.name for p in (plan.out / engines.LOGS).iterdir()}
    assert {"superlink.log", "supernode-0.log", "supernode-1.log", "flwr-run.log"} <= logs
    leftover = subprocess.run(["pgrep", "-f", str(plan.out)], capture_output=True, text=True).stdout.split()
    assert leftover == [], "processes of the run are still alive"
    home = plan.out / engines.HOME
    assert oct(home.stat().st_mode & 0o777) == "0o700"


def test_an_empty_partition_and_a_malformed_client_file_are_one_line_errors(tmp_path: Path) -> None:
    from medcouncil.serving.common.errors import ConfigError
    from medcouncil.serving.training.federated import engines
    from medcouncil.serving.training.federated.strategy import FederationError

    samples, _ = load_dataset(str(DEV))
    with pytest.raises(ConfigError, match=r"left client 1, 2 with no item"):
        build_plan(
            FederateConfig(out=tmp_path / "e", partition=PartitionConfig(scheme="dirichlet", clients=3, alpha=0.01)),
            samples[:3],
            DEV.name,
        )
    plan = tiny_plan(tmp_path / "bad", rounds=1, local_steps=1)
    bad = Path(plan.clients[1].path)
    bad.write_text(bad.read_text().splitlines()[0] + '\n{"messages": [{"role": "user"}]}\n', encoding="utf-8")
    with pytest.raises(FederationError, match=rf"^client client-1 \({bad}\): {bad}:2: "):
        engines.simulate(plan, log=lambda text: None)
    assert FederationConfig().engine == "simulation"

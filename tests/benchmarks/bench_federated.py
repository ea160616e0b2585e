"""Federated against centralised fine-tuning: ``python -m tests.benchmarks.bench_federated [--trials 2]``.

The embedded Gemma 3 270M, LoRA, on MedMCQA dev items (``raw/medmcqa_dev.jsonl``: it names subjects), decontaminated
against every local evaluation set (2,816 of its questions are in the MedMCQA test file), partitioned by subject
across 3 clients (hospitals). Three arms on the same training items, held-out set and probe:

- ``fedavg`` and ``fedprox``: ``rounds`` rounds of ``local_steps`` steps on each client (Simulation Engine);
- ``central``: ``finetune``'s loop on the union of the clients' training files for clients x rounds x local_steps
  steps of the same batch size (the same optimizer steps and examples), learning rate decaying linearly.

Per arm: held-out loss, probe accuracy (complete option probabilities), bytes exchanged (federated) against a
whole-model exchange, wall time (medians of interleaved trials: fedavg, fedprox, central, fedavg, ...). Then each
arm's adapter of the last trial is served by llama.cpp and benchmarked with ``bench --mode single --debias pride``
on the first ``--bench-items`` MedMCQA test items and the runs compared (``medcouncil compare``: CIs, McNemar).
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

ARMS = ("fedavg", "fedprox", "central")
SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def _cli(*args: str, timeout: float | None = None) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).parent / "medcouncil"
    return subprocess.run([str(script), *args], capture_output=True, text=True, timeout=timeout, check=False)


def _federated(arm: str, base: dict[str, Any], out: Path) -> dict[str, Any]:
    import yaml

    config = {**base, "out": str(out), "federation": {**base["federation"], "strategy": arm}}
    path = out.with_suffix(".yaml")
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    started = time.monotonic()
    done = _cli("federate", "--config", str(path))
    if done.returncode != 0:
        raise SystemExit(f"{arm}: {done.stderr[-2000:]}")
    card = json.loads((out / "run.json").read_text())
    fed = card["federation"]
    last = fed["rounds"][-1]["eval"]
    return {
        "seconds": time.monotonic() - started,
        "train_seconds": card["wall_seconds"],
        "loss": last["loss"],
        "accuracy": last["accuracy"],
        "bytes": sum(r["sent_bytes"] + r["received_bytes"] for r in fed["rounds"]),
        "full_bytes": sum(r["full_model_bytes"] for r in fed["rounds"]),
        "curve": [(r["round"], r["eval"]["loss"], r["eval"]["accuracy"]) for r in fed["rounds"]],
    }


def _central(plan_dir: Path, base: dict[str, Any], out: Path) -> dict[str, Any]:
    """Train on the union of a federated run's client files with the same steps and batch; score like its server."""
    import torch

    from medcouncil.serving.training.config import FinetuneConfig
    from medcouncil.serving.training.data import read_chat_jsonl
    from medcouncil.serving.training.evaluate import ProbeItem, held_out_loss, probe_accuracy, tokenize_all
    from medcouncil.serving.training.federated.config import FederationPlan
    from medcouncil.serving.training.model import LabelledLoss, load_model, load_tokenizer, resolve_base
    from medcouncil.serving.training.train import Trainer

    plan = FederationPlan.load(plan_dir / "federation.json")
    examples = [e for client in plan.clients for e in read_chat_jsonl(Path(client.path))]
    fed = base["federation"]
    steps = len(plan.clients) * fed["rounds"] * fed["local_steps"]
    config = FinetuneConfig.model_validate(
        {**base["train"], "out": str(out), "max_steps": steps, "eval_fraction": 0.0, "save_every": steps + 1}
    )
    info = resolve_base(None)
    started = time.monotonic()
    trained = Trainer(config, examples, info, "union of the federated clients' files").run()
    seconds = time.monotonic() - started
    from peft import PeftModel

    tokenizer = load_tokenizer(info)
    model = PeftModel.from_pretrained(load_model(info, config.model_copy(update={"method": "full"})), str(out))
    held = tokenize_all(tokenizer, read_chat_jsonl(Path(plan.eval_path or ""))[: fed["eval_items"]], config.max_seq_len)
    loss = held_out_loss(LabelledLoss(model), held, int(tokenizer.pad_token_id), config.batch_size, torch.device("cpu"))
    lines = Path(plan.probe_path or "").read_text(encoding="utf-8").splitlines()
    probe = [ProbeItem.model_validate_json(line) for line in lines if line.strip()]
    accuracy = probe_accuracy(model, tokenizer, probe, config.max_seq_len, torch.device("cpu")).accuracy
    return {
        "seconds": seconds,
        "train_seconds": trained.wall_seconds,
        "loss": loss,
        "accuracy": accuracy,
        "bytes": 0,
        "full_bytes": 0,
        "curve": [],
    }


def main(
    clients: Annotated[int, typer.Option(help="Hospitals (subject partition).")] = 3,
    rounds: Annotated[int, typer.Option(help="Federated rounds.")] = 4,
    local_steps: Annotated[int, typer.Option(help="Optimizer steps per client per round.")] = 8,
    batch_size: Annotated[int, typer.Option(help="Examples per step.")] = 4,
    max_seq_len: Annotated[int, typer.Option(help="Longest example in tokens.")] = 256,
    limit: Annotated[int, typer.Option(help="MedMCQA dev items before decontamination.")] = 1500,
    probe: Annotated[int, typer.Option(help="Held-out probe items scored each round.")] = 60,
    eval_items: Annotated[int, typer.Option(help="Held-out items whose loss is scored each round.")] = 200,
    trials: Annotated[int, typer.Option(help="Interleaved trials of the three arms.")] = 2,
    bench_items: Annotated[int, typer.Option(help="MedMCQA test items for bench single+pride (0: skip).")] = 200,
    out: Annotated[Path, typer.Option(help="Where the runs go.")] = Path("runs/bench-federated"),
) -> None:
    """Federated (FedAvg, FedProx) against centralised LoRA on the same data, steps and examples."""
    out.mkdir(parents=True, exist_ok=True)
    base: dict[str, Any] = {
        "data": [str(SHARED / "raw" / "medmcqa_dev.jsonl")],
        "limit": limit,
        "probe_limit": probe,
        "eval_fraction": 0.1,
        "partition": {"scheme": "subject", "clients": clients},
        "federation": {
            "rounds": rounds,
            "local_steps": local_steps,
            "min_clients": clients,
            "probe_items": probe,
            "eval_items": eval_items,
            "mu": 0.01,
            "lr_schedule": "linear",
            "min_lr_ratio": 0.0,
        },
        "train": {"batch_size": batch_size, "max_seq_len": max_seq_len, "learning_rate": 2e-4},
    }
    results: dict[str, list[dict[str, Any]]] = {arm: [] for arm in ARMS}
    for trial in range(trials):
        for arm in ARMS:
            folder = out / f"{arm}-{trial}"
            if arm == "central":
                result = _central(out / f"fedavg-{trial}", base, folder)
            else:
                result = _federated(arm, base, folder)
            results[arm].append(result)
            print(f"trial {trial} {arm}: {json.dumps({k: v for k, v in result.items() if k != 'curve'})}", flush=True)
    rows = [
        "| arm | held-out loss | probe accuracy | MB exchanged | whole-model MB | training s (median) | command s |",
        "|---|---|---|---|---|---|---|",
    ]
    for arm in ARMS:
        runs = results[arm]
        rows.append(
            f"| {arm} | {statistics.median(r['loss'] for r in runs):.4f} | "
            f"{statistics.median(r['accuracy'] for r in runs):.3f} | {runs[-1]['bytes'] / 1e6:.1f} | "
            f"{runs[-1]['full_bytes'] / 1e6:.0f} | {statistics.median(r['train_seconds'] for r in runs):.0f} | "
            f"{statistics.median(r['seconds'] for r in runs):.0f} |"
        )
    central_time = statistics.median(r["train_seconds"] for r in results["central"])
    for arm in ("fedavg", "fedprox"):
        ratio = statistics.median(r["train_seconds"] for r in results[arm]) / central_time
        rows.append(f"\n{arm} training time (rounds, evaluations included) / central training: {ratio:.2f}")
    table = "\n".join(rows)
    print(table)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    (out / "table.md").write_text(table + "\n")
    if bench_items:
        _bench(out, trials - 1, bench_items)


def _bench(out: Path, trial: int, items: int) -> None:
    """Serve the three adapters and the base, bench single+pride on MedMCQA test items, compare them."""
    adapters = [f"--lora={arm}={out / f'{arm}-{trial}'}" for arm in ARMS]
    port = "18089"
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "medcouncil"), "serve", "--port", port, *adapters],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 300
        import httpx

        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(2)
        runs = []
        for model in ("gemma-3-270m", *ARMS):
            run = out / f"bench-{model}"
            done = _cli(
                "bench",
                "--dataset",
                str(SHARED / "mcqa" / "medmcqa.test.jsonl"),
                "--limit",
                str(items),
                "--mode",
                "single",
                "--debias",
                "pride",
                "--endpoint",
                f"http://127.0.0.1:{port}/v1",
                "--model",
                model,
                "--no-cache",
                "--out",
                str(run),
            )
            if done.returncode != 0:
                raise SystemExit(f"bench {model}: {done.stderr[-2000:]}")
            runs.append(str(run))
        compared = _cli("compare", *runs, "--out", str(out / "compare"))
        print(compared.stdout)
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    typer.run(main)

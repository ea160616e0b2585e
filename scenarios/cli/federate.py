"""``medcouncil federate``: federated LoRA fine-tuning on Flower (Simulation or Deployment Engine)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from medcouncil.scenarios.cli.options import DataDirOpt, LimitOpt, SubsetOpt
from medcouncil.serving.common.console import console, err_console
from medcouncil.serving.common.errors import ConfigError

if TYPE_CHECKING:
    from medcouncil.scenarios.datasets.samples import Sample
    from medcouncil.scenarios.training.federate import FederateConfig
    from medcouncil.scenarios.training.partition import PartitionReport
    from medcouncil.serving.training.card import RunCard
    from medcouncil.serving.training.federated.config import FederationPlan


def print_partition(report: PartitionReport) -> None:
    table = Table(title=f"partition: {report.config.scheme}, {len(report.clients)} clients")
    for column in ("client", "items", "datasets", "subjects", "letters"):
        table.add_column(column)
    for row in report.clients:
        subjects = ", ".join(f"{k} {v}" for k, v in list(row.subjects.items())[:4])
        more = f" (+{len(row.subjects) - 4})" if len(row.subjects) > 4 else ""
        table.add_row(
            str(row.client),
            str(row.items),
            ", ".join(f"{k} {v}" for k, v in row.datasets.items()),
            subjects + more,
            " ".join(f"{k}{v}" for k, v in row.letters.items()),
        )
    console.print(table)


def print_rounds(card: RunCard, out: Path) -> None:
    from medcouncil.serving.training.federated.card import privacy_line, rounds_table

    fed = card.federation
    if fed is None:
        return
    rows = rounds_table(fed)
    table = Table(title=f"federated {fed.strategy}, {fed.engine} engine")
    for column in rows[0]:
        table.add_column(column)
    for row in rows[1:]:
        table.add_row(*row)
    console.print(table)
    exchanged = fed.sent_bytes + fed.received_bytes
    console.print(
        f"[usage]adapter {fed.adapter_bytes / 1e6:.2f} MB · exchanged {exchanged / 1e6:.1f} MB · whole models "
        f"would have moved {fed.full_model_bytes / 1e6:.0f} MB ({fed.full_model_bytes / max(1, exchanged):.0f}x)[/]"
    )
    if fed.dp_epsilon is not None:
        console.print(f"[usage]{escape(privacy_line(fed).strip())}[/]")
    console.print(
        f"[notice]adapter, run card and report in {escape(str(out))}[/] · serve it with "
        f"[bold]medcouncil serve --lora NAME={out}[/]"
    )


def federate(
    data: Annotated[list[str] | None, typer.Option("--data", "--dataset", help="Dataset(s) to partition.")] = None,
    clients: Annotated[int | None, typer.Option(help="Clients (hospitals) to partition into (3).")] = None,
    partition: Annotated[str | None, typer.Option(help="iid, dataset, subject or dirichlet (iid).")] = None,
    alpha: Annotated[float | None, typer.Option(help="Dirichlet concentration (0.5).")] = None,
    rounds: Annotated[int | None, typer.Option(help="Federated rounds (3).")] = None,
    local_steps: Annotated[int | None, typer.Option(help="Optimizer steps per client per round (10).")] = None,
    strategy: Annotated[str | None, typer.Option(help="fedavg or fedprox (fedavg).")] = None,
    mu: Annotated[float | None, typer.Option(help="FedProx proximal weight (0.01).")] = None,
    fraction: Annotated[float | None, typer.Option(help="Share of clients sampled per round (1.0).")] = None,
    min_clients: Annotated[int | None, typer.Option(help="Clients that must finish a round (2).")] = None,
    engine: Annotated[str | None, typer.Option(help="simulation or deployment (simulation).")] = None,
    superlink: Annotated[str | None, typer.Option(help="HOST:PORT of a running SuperLink (deployment).")] = None,
    dp_noise: Annotated[float | None, typer.Option(help="Central DP noise multiplier (with --dp-clip).")] = None,
    dp_clip: Annotated[float | None, typer.Option(help="Central DP clipping norm of each update.")] = None,
    dp_delta: Annotated[float | None, typer.Option(help="δ at which the card reports central DP's ε (1e-5).")] = None,
    probe: Annotated[str | None, typer.Option(help="Dataset of the per-round MCQA probe (held-out items).")] = None,
    decontaminate: Annotated[bool | None, typer.Option(help="Drop items found in evaluation sets (on).")] = None,
    out: Annotated[Path | None, typer.Option(help="Run folder (adapters/federated).")] = None,
    limit: LimitOpt = None,
    subset: SubsetOpt = None,
    data_dir: DataDirOpt = None,
    config: Annotated[Path | None, typer.Option("--config", help="Federate config YAML (flags override it).")] = None,
    resume: Annotated[Path | None, typer.Option(help="Continue the run in this folder from its last round.")] = None,
) -> None:
    """Federated LoRA fine-tuning on Flower: clients train on their own partitions, only adapters travel."""
    from medcouncil.serving.common.extras import require

    require("federated", "medcouncil federate")
    from medcouncil.scenarios.training.federate import build_plan, remote_plan
    from medcouncil.serving.training.federated.config import PLAN, FederationPlan
    from medcouncil.serving.training.federated.server import saved_rounds

    if resume is not None:
        plan = FederationPlan.load(resume / PLAN)
        if not saved_rounds(resume):
            err_console.print(f"[notice]{escape(str(resume))}: no finished round yet; starting from round 1[/]")
    else:
        flags: dict[str, dict[str, object]] = {
            "top": {
                "data": data,
                "out": out,
                "limit": limit,
                "subset": subset,
                "data_dir": data_dir,
                "probe": probe,
                "decontaminate": decontaminate,
            },
            "partition": {"clients": clients, "scheme": partition, "alpha": alpha},
            "federation": {
                "rounds": rounds,
                "local_steps": local_steps,
                "strategy": strategy,
                "mu": mu,
                "fraction": fraction,
                "min_clients": min_clients,
                "engine": engine,
                "superlink": superlink,
                "dp_noise_multiplier": dp_noise,
                "dp_clip_norm": dp_clip,
                "dp_delta": dp_delta,
            },
        }
        settings = settings_from(config, flags)
        if (settings.out / PLAN).exists() or (settings.out / "run.json").exists():
            raise ConfigError(f"{settings.out} already holds a run: continue it with --resume {settings.out}")
        if settings.federation.superlink and not settings.data:
            plan = remote_plan(settings, load_probe(settings))
        else:
            samples, source = load_samples(settings)
            plan, report = build_plan(settings, samples, source, load_probe(settings))
            print_partition(report)
    card = run_plan(plan)
    print_rounds(card, plan.out)


def settings_from(path: Path | None, flags: dict[str, dict[str, object]]) -> FederateConfig:
    """The YAML file's settings with the flags that are set on top (a section's flags inside that section).

    Raises:
        ConfigError: the file or a flag is invalid (``FILE: field: reason``).
    """
    from pydantic import ValidationError

    from medcouncil.scenarios.training.federate import FederateConfig

    base = FederateConfig.load(path)
    merged = base.model_dump(mode="python")
    merged.update({k: v for k, v in flags["top"].items() if v is not None})
    for section in ("partition", "federation"):
        merged[section].update({k: v for k, v in flags[section].items() if v is not None})
    try:
        return FederateConfig.model_validate(merged)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise ConfigError(f"federate: {where}: {first['msg']}") from None


def load_samples(settings: FederateConfig) -> tuple[list[Sample], str]:
    """The datasets' items, pooled (each tagged with its dataset), decontaminated when asked.

    Raises:
        ConfigError: no dataset, a dataset that cannot be read or has no valid item.
    """
    from medcouncil.scenarios.datasets.registry import load_dataset

    if not settings.data:
        raise ConfigError("--data is required: one or more datasets to partition across the clients")
    samples: list[Sample] = []
    sources = []
    for name in settings.data:
        loaded, info = load_dataset(name, settings.subset, None, None, False, settings.data_dir)
        loaded = loaded[: settings.limit] if settings.limit else loaded
        if not loaded:
            raise ConfigError(f"{name}: no valid items")
        samples += [
            s if s.metadata.get("dataset") else s.model_copy(update={"metadata": {**s.metadata, "dataset": name}})
            for s in loaded
        ]
        sources.append(f"{info.source} ({len(loaded)})")
    if settings.decontaminate:
        from medcouncil.scenarios.training import decontamination as decon
        from medcouncil.tools.embeddings import build_embedder

        evals = decon.local_eval_sets(settings.data_dir)
        with err_console.status(f"Checking {len(samples)} items against {len(evals)} evaluation items…"):
            samples, dropped = decon.decontaminate(samples, evals, build_embedder())
        err_console.print(f"[notice]decontamination: {len(dropped)} items found in evaluation sets dropped[/]")
        if not samples:
            raise ConfigError("every item was found in an evaluation set: nothing left to train on")
    return samples, " + ".join(sources)


def load_probe(settings: FederateConfig) -> list[Sample]:
    from medcouncil.scenarios.datasets.registry import load_dataset

    if settings.probe is None:
        return []
    loaded, _ = load_dataset(settings.probe, None, None, None, False, settings.data_dir)
    return loaded[: settings.probe_limit]


def run_plan(plan: FederationPlan) -> RunCard:
    """The plan on its engine (the Simulation Engine needs the federated-sim extra)."""
    from medcouncil.serving.common.extras import require
    from medcouncil.serving.training.federated import engines

    def log(text: str) -> None:
        err_console.print(f"[notice]{escape(text)}[/]")

    if plan.federation.engine == "simulation":
        require("federated-sim", "medcouncil federate --engine simulation")
        with err_console.status("federated rounds on the Simulation Engine…"):
            return engines.simulate(plan, log)
    with err_console.status("federated rounds on the Deployment Engine…"):
        return engines.deploy(plan, log)

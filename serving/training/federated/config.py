"""The federation's settings (one documented pydantic model, YAML accepted) and the plan a run is started from.

The plan (``OUT/federation.json``) is what the ServerApp reads: the training settings every client uses, the
federation settings, where each simulated client's data is (a deployed SuperNode names its own with
``--node-config 'data-path="…"'``), and the server's held-out set and probe.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from medcouncil.serving.common.errors import ConfigError, first_line
from medcouncil.serving.common.jsonl import BadLine, read_json
from medcouncil.serving.training.config import FinetuneConfig

PLAN = "federation.json"
Strategy = Literal["fedavg", "fedprox"]
Engine = Literal["simulation", "deployment"]


class FederationConfig(BaseModel):
    """How ``medcouncil federate`` runs the federation (the ``federation:`` section of its YAML)."""

    model_config = ConfigDict(extra="forbid")

    rounds: int = Field(default=3, ge=1)
    """Federated rounds: the server sends the global adapter, clients train, the server aggregates."""
    local_steps: int = Field(default=10, ge=1)
    """Optimizer steps each client runs per round (batch_size x grad_accum examples each)."""
    strategy: Strategy = "fedavg"
    """``fedavg`` (example-weighted mean of the adapters) or ``fedprox`` (the same mean; clients add μ/2‖w−w_g‖²)."""
    mu: float = Field(default=0.01, ge=0)
    """FedProx's proximal weight μ (``fedprox`` only)."""
    fraction: float = Field(default=1.0, gt=0, le=1)
    """Share of the connected clients sampled each round (at least ``min_clients``)."""
    min_clients: int = Field(default=2, ge=1)
    """Clients that must finish a round for it to count; fewer and the run stops, its last round checkpointed."""
    lr_schedule: Literal["constant", "linear", "cosine"] = "cosine"
    """The client learning rate across the run, as ``finetune`` decays it across its steps: from the training
    ``learning_rate`` at the start of round 1 to ``learning_rate x min_lr_ratio`` at the end of the last round,
    each round taking the schedule's value at its middle (constant within a round; a fresh AdamW per round). So
    the last round still trains when the schedule ends at 0, and the rounds' mean rate is the schedule's."""
    min_lr_ratio: float = Field(default=0.1, ge=0, le=1)
    """Where the schedule ends, as a share of ``learning_rate`` (``linear``, ``cosine``)."""
    round_timeout: float = Field(default=3600, gt=0)
    """Seconds the server waits for a round's replies; a client still training then counts as failed."""
    dp_noise_multiplier: float | None = Field(default=None, ge=0)
    """Central differential privacy (Flower's server-side fixed clipping): Gaussian noise σ = multiplier x clip
    norm / sampled clients, added to the mean of the clipped updates. Set with ``dp_clip_norm``."""
    dp_clip_norm: float | None = Field(default=None, gt=0)
    """L2 norm each client's update (its adapter minus the global one) is clipped to, for central DP."""
    dp_delta: float = Field(default=1e-5, gt=0, lt=1)
    """The δ at which the run card reports the client-level ε spent (exact for the composed Gaussian releases;
    see ``federated/privacy.py``). Under central DP the clipped updates are averaged with equal weights."""
    secure_aggregation: bool = False
    """SecAgg+: not offered (Flower 1.42 implements it only for its legacy strategy API; see the README)."""
    engine: Engine = "simulation"
    """``simulation`` (Flower's Simulation Engine, one machine) or ``deployment`` (a SuperLink and SuperNodes)."""
    superlink: str | None = None
    """``HOST:PORT`` of a running SuperLink (deployment on several hosts); None with ``deployment``: medcouncil
    starts a SuperLink and one SuperNode per client on 127.0.0.1 and stops them at the end."""
    root_certificates: str | None = None
    """CA certificate (PEM) of a remote SuperLink served with TLS; None: the connection is insecure (loopback,
    or a private network you trust)."""
    client_cpus: float = Field(default=1.0, gt=0)
    """CPU cores per simulated client (Ray resources; torch threads of each client)."""
    eval_items: int = Field(default=64, ge=0)
    """Held-out examples the server scores (loss) after each round."""
    probe_items: int = Field(default=50, ge=0)
    """MCQA items the server scores (accuracy from complete option probabilities) after each round."""
    keep_rounds: int = Field(default=2, ge=1)
    """Global checkpoints kept (``--resume`` continues from the newest)."""

    @model_validator(mode="after")
    def _consistent(self) -> FederationConfig:
        if (self.dp_noise_multiplier is None) != (self.dp_clip_norm is None):
            raise ValueError("central DP needs both dp_noise_multiplier and dp_clip_norm")
        if self.secure_aggregation:
            raise ValueError(
                "secure_aggregation: Flower 1.42 offers SecAgg+ only for its legacy strategy API "
                "(SecAggPlusWorkflow with LegacyContext), not for the Message-API strategies medcouncil runs"
            )
        if self.superlink is not None and self.engine != "deployment":
            raise ValueError("superlink is for engine: deployment")
        return self

    @property
    def dp(self) -> bool:
        return self.dp_noise_multiplier is not None

    def learning_rate(self, peak: float, server_round: int) -> float:
        """The clients' learning rate in ``server_round`` (1-based): the schedule at the middle of the round."""
        if self.lr_schedule == "constant":
            return peak
        progress = (server_round - 0.5) / self.rounds
        low = peak * self.min_lr_ratio
        if self.lr_schedule == "linear":
            return peak - (peak - low) * progress
        return low + (peak - low) * 0.5 * (1 + math.cos(math.pi * progress))


class ClientData(BaseModel):
    """A client's data as the plan and the run card name it: its source and counts, never its text."""

    name: str
    path: str
    """The chat JSONL the client trains on (on its own host for a deployed SuperNode)."""
    source: str = ""
    """Where its items came from (the datasets, the partition)."""
    examples: int = 0
    fingerprint: str = ""


class FederationPlan(BaseModel):
    """Everything the ServerApp needs, saved as ``OUT/federation.json`` before the engine starts."""

    out: Path
    train: FinetuneConfig
    federation: FederationConfig
    clients: list[ClientData] = Field(default_factory=list)
    """The simulated clients (partition-id k trains ``clients[k]``); deployed SuperNodes bring their own."""
    eval_path: str | None = None
    """Chat JSONL of held-out examples (loss after each round)."""
    probe_path: str | None = None
    """JSONL of :class:`evaluate.ProbeItem` (accuracy after each round)."""
    data_source: str = ""
    """How the clients' data was made (datasets, partition scheme): the run card's data source."""

    def save(self) -> Path:
        self.out.mkdir(parents=True, exist_ok=True)
        path = self.out / PLAN
        tmp = path.with_suffix(".tmp")
        tmp.write_text(self.model_dump_json(indent=2), encoding="utf-8")
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: Path) -> FederationPlan:
        """Raises: ConfigError: missing, unreadable or not a plan (naming the file)."""
        try:
            return cls.model_validate(read_json(path))
        except (BadLine, OSError) as error:
            raise ConfigError(f"{path}: cannot read the federation plan ({error})") from None
        except ValueError as error:
            raise ConfigError(f"{path}: not a federation plan ({first_line(error)})") from None

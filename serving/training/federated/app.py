"""The Flower apps: the same ServerApp and ClientApp code under the Simulation Engine and the Deployment Engine.

- Simulation: :func:`server_app` and :func:`client_app` are built in process around the plan; simulated client k
  (``partition-id`` k) trains the plan's ``clients[k]``.
- Deployment: ``serverapp`` and ``clientapp`` below are what ``flwr run`` loads (the generated app's components);
  the ServerApp reads the plan named by the run config (``plan``), and each SuperNode trains the chat JSONL named
  by its own ``--node-config 'data-path="…"'`` (and ``name="…"`` for the run card).

A client that cannot use its data (missing, malformed with its file and line, empty) or was given another base
model replies with :data:`server.DATA_ERROR`, and the server stops the run naming it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from medcouncil.serving.common.errors import MedcouncilError, first_line
from medcouncil.serving.training.federated.config import ClientData, FederationPlan
from medcouncil.serving.training.federated.server import DATA_ERROR, FederatedServer

_TRAINERS: dict[str, Any] = {}
"""This process's client trainer (at most one: a simulated client process may serve several partitions)."""


def _trainer(data: ClientData, train_json: str, digest: str) -> Any:
    from medcouncil.serving.training.config import FinetuneConfig
    from medcouncil.serving.training.data import read_chat_jsonl
    from medcouncil.serving.training.federated.local import LocalTrainer
    from medcouncil.serving.training.model import resolve_base

    key = json.dumps([data.path, train_json, digest])
    if key not in _TRAINERS:
        _TRAINERS.clear()
        config = FinetuneConfig.model_validate_json(train_json)
        examples = read_chat_jsonl(Path(data.path))
        base = resolve_base(config.base)
        if base.digest != digest:
            raise MedcouncilError(
                f"base model {base.source} here has digest {base.digest[:16]}, the server's {digest[:16]}"
            )
        _TRAINERS[key] = LocalTrainer(config, base, examples)
    return _TRAINERS[key]


def train_handler(message: Any, context: Any, data: ClientData) -> Any:
    """One round on this client: the global adapter in, the trained adapter and its metrics out."""
    from flwr.app import ArrayRecord, ConfigRecord, Error, Message, MetricRecord, RecordDict

    config = message.content["config"]
    try:
        trainer = _trainer(data, str(config["train"]), str(config["base-digest"]))
    except MedcouncilError as error:
        reason = f"client {data.name} ({data.path}): {first_line(error)}"
        return Message(Error(code=DATA_ERROR, reason=reason), reply_to=message)
    result = trainer.run_round(
        message.content["arrays"].to_torch_state_dict(),
        server_round=int(config["medcouncil-round"]),
        steps=int(config["local-steps"]),
        lr=float(config["lr"]),
        mu=float(config.get("proximal-mu", 0.0)),
    )
    metrics = MetricRecord(
        {
            "num-examples": result.examples,
            "train-loss": result.loss,
            "first-loss": result.first_loss,
            "steps": result.steps,
            "tokens": result.tokens,
            "seconds": result.seconds,
        }
    )
    content = RecordDict(
        {
            "arrays": ArrayRecord(result.tensors),
            "metrics": metrics,
            "client": ConfigRecord({"name": data.name, "path": data.path, "fingerprint": trainer.fingerprint}),
        }
    )
    return Message(content, reply_to=message)


def client_app(data_for: Callable[[Any], ClientData]) -> Any:
    """A ClientApp whose train handler trains the data ``data_for(context)`` names."""
    from flwr.clientapp import ClientApp

    app = ClientApp()

    @app.train()  # type: ignore[misc]
    def train(message: Any, context: Any) -> Any:
        return train_handler(message, context, data_for(context))

    return app


def server_app(plan_of: Callable[[Any], FederationPlan], outcome: dict[str, Any] | None = None) -> Any:
    """A ServerApp running :class:`FederatedServer` on ``plan_of(context)``; ``outcome`` receives the card or the
    error (the Simulation Engine logs a ServerApp's exception instead of raising it)."""
    from flwr.serverapp import ServerApp

    app = ServerApp()

    @app.main()  # type: ignore[misc]
    def main(grid: Any, context: Any) -> None:
        try:
            card = FederatedServer(plan_of(context)).run(grid)
        except Exception as error:
            if outcome is not None:
                outcome["error"] = error
            raise
        if outcome is not None:
            outcome["card"] = card

    return app


def simulated_data(plan: FederationPlan) -> Callable[[Any], ClientData]:
    return lambda context: plan.clients[int(context.node_config["partition-id"])]


def node_data(context: Any) -> ClientData:
    """A SuperNode's own data: ``data-path`` (required) and ``name`` (default: node NODE_ID) of its node config."""
    path = str(context.node_config.get("data-path", ""))
    name = str(context.node_config.get("name", "")) or f"node {context.node_id}"
    return ClientData(name=name, path=path or "(no data-path in --node-config)")


serverapp = server_app(lambda context: FederationPlan.load(Path(str(context.run_config["plan"]))))
clientapp = client_app(node_data)

"""How a round's updates become the global adapter: Flower's FedAvg or FedProx for sampling, medcouncil's float64
example-weighted mean, and central DP (Flower's server-side fixed clipping, DP-FedAvg's fixed denominator, the ε
spent)."""

from __future__ import annotations

from typing import Any

import torch

from medcouncil.serving.common.errors import MedcouncilError
from medcouncil.serving.training.aggregate import ClientUpdate, fedavg
from medcouncil.serving.training.federated.card import FederationCard
from medcouncil.serving.training.federated.config import FederationConfig
from medcouncil.serving.training.federated.privacy import epsilon


class FederationError(MedcouncilError):
    """A round that too few clients finished, or a client whose data is unusable; the last round is saved."""


def make_strategy(config: FederationConfig, clients: int) -> Any:
    """Flower's FedAvg or FedProx for the configured sampling (aggregating with :func:`aggregate.fedavg`: float64,
    errors naming the client), wrapped in Flower's server-side fixed clipping for central DP when asked."""
    from flwr.app import ArrayRecord
    from flwr.serverapp.strategy import DifferentialPrivacyServerSideFixedClipping, FedAvg, FedProx

    class ExampleWeighted:
        fixed: tuple[dict[str, torch.Tensor], int] | None = None
        """Central DP: the round's global adapter and the fixed denominator D (set by the server each round)."""

        def aggregate_train(self, server_round: int, replies: Any) -> tuple[Any, Any]:
            valid, _ = self._check_and_log_replies(replies, is_train=True)  # type: ignore[attr-defined]
            if not valid:
                return None, None
            updates = [
                ClientUpdate(
                    client=client_name(reply),
                    tensors=reply.content["arrays"].to_torch_state_dict(),
                    examples=1 if config.dp else int(reply.content["metrics"]["num-examples"]),
                )
                for reply in valid
            ]
            if config.dp:
                # the fixed-denominator mean of DP-FedAvg: global + Σ clipped updates / D, whoever finished, so
                # adding or removing one client moves it by at most clip norm / D
                if self.fixed is None:
                    raise FederationError("central DP: the round's global adapter was not set before aggregation")
                start, denominator = self.fixed
                if denominator > len(updates):
                    updates.append(ClientUpdate("global", start, denominator - len(updates)))
            metrics = self.train_metrics_aggr_fn(  # type: ignore[attr-defined]
                [reply.content for reply in valid],
                self.weighted_by_key,  # type: ignore[attr-defined]
            )
            return ArrayRecord(fedavg(updates)), metrics

    class MedcouncilFedAvg(ExampleWeighted, FedAvg):  # type: ignore[misc]
        pass

    class MedcouncilFedProx(ExampleWeighted, FedProx):  # type: ignore[misc]
        pass

    common: dict[str, Any] = {
        "fraction_train": config.fraction,
        "fraction_evaluate": 0.0,
        "min_train_nodes": config.min_clients,
        "min_available_nodes": config.min_clients,
    }
    strategy: Any = (
        MedcouncilFedProx(proximal_mu=config.mu, **common)
        if config.strategy == "fedprox"
        else MedcouncilFedAvg(**common)
    )
    if config.dp:
        strategy = DifferentialPrivacyServerSideFixedClipping(
            strategy,
            noise_multiplier=float(config.dp_noise_multiplier or 0.0),
            clipping_norm=float(config.dp_clip_norm or 1.0),
            num_sampled_clients=sample_size(config, clients),
        )
    return strategy


def sample_size(config: FederationConfig, clients: int) -> int:
    """Clients sampled per round: ``fraction`` of them, at least ``min_clients``."""
    return max(config.min_clients, int(clients * config.fraction))


def spend_privacy(fed: FederationCard, config: FederationConfig) -> None:
    """Central DP: the client-level ε of all rounds so far at ``dp_delta``, into the card (a round recorded
    without its noise multiplier counts as σ). Nothing without central DP."""
    if not config.dp or not fed.rounds:
        return
    sigma = float(config.dp_noise_multiplier or 0.0)
    fed.dp_delta = config.dp_delta
    fed.dp_epsilon = epsilon([sigma if r.dp_noise is None else r.dp_noise for r in fed.rounds], config.dp_delta)


def client_name(reply: Any) -> str:
    """The name a client reply carries (its data's name), or its node id."""
    try:
        return str(reply.content["client"]["name"])
    except (KeyError, TypeError):
        return f"node {reply.metadata.src_node_id}"

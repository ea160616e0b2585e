"""The server's rounds against a scripted Grid: FedAvg by hand through Flower's strategy, the minimum of clients, a
client with unusable data, the bytes and the learning-rate schedule (no model, no engine)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

pytest.importorskip("flwr")
from flwr.app import ArrayRecord, ConfigRecord, Error, Message, MetricRecord, RecordDict
from flwr.supercore.task_identity import TaskIdentity

from medcouncil.serving.training.config import FinetuneConfig
from medcouncil.serving.training.federated.card import FederationCard
from medcouncil.serving.training.federated.config import ClientData, FederationConfig, FederationPlan
from medcouncil.serving.training.federated.privacy import epsilon
from medcouncil.serving.training.federated.server import DATA_ERROR, FederatedServer
from medcouncil.serving.training.federated.strategy import FederationError, make_strategy, spend_privacy
from medcouncil.serving.training.model import BaseModelInfo

BASE = BaseModelInfo("tiny", "folder", "/nowhere", "/nowhere", "digest-1")
Reply = Callable[[Message, int], Message | None]  # None: the node stays silent


@pytest.fixture(autouse=True)
def task_identity() -> Iterator[None]:
    """Messages are built outside a Flower process here: give them a run and a node."""
    saved = (TaskIdentity._run_id, TaskIdentity._node_id, TaskIdentity._task_id)
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 7, 0, 1
    yield
    TaskIdentity._run_id, TaskIdentity._node_id, TaskIdentity._task_id = saved


class ScriptedGrid:
    """Nodes 1..n; each node answers a train message with ``reply(message, node)``."""

    def __init__(self, nodes: int, reply: Reply) -> None:
        self.nodes, self.reply = list(range(1, nodes + 1)), reply
        self.sent: list[Message] = []

    def get_node_ids(self) -> list[int]:
        return self.nodes

    def send_and_receive(self, messages: Iterable[Message], timeout: float) -> list[Message]:
        self.sent = list(messages)
        return [r for m in self.sent if (r := self.reply(m, m.metadata.dst_node_id)) is not None]


def trained(values: dict[int, tuple[list[float], int]]) -> Reply:
    """Node n replies with tensor ``w`` = values[n][0] trained on values[n][1] examples."""

    def reply(message: Message, node: int) -> Message:
        weights, examples = values[node]
        content = RecordDict(
            {
                "arrays": ArrayRecord({"w": torch.tensor(weights)}),
                "metrics": MetricRecord(
                    {
                        "num-examples": examples,
                        "train-loss": 1.5,
                        "first-loss": 2.0,
                        "steps": 2,
                        "tokens": 10,
                        "seconds": 0.5,
                    }
                ),
                "client": ConfigRecord({"name": f"hospital-{node}"}),
            }
        )
        return Message(content, reply_to=message)

    return reply


def server(tmp_path: Path, **federation: Any) -> FederatedServer:
    plan = FederationPlan(
        out=tmp_path,
        train=FinetuneConfig(learning_rate=1e-3),
        federation=FederationConfig(**federation),
        clients=[ClientData(name="hospital-1", path="a.jsonl"), ClientData(name="hospital-2", path="b.jsonl")],
    )
    return FederatedServer(plan, log=lambda text: None)


def run_round(srv: FederatedServer, grid: ScriptedGrid, server_round: int = 1) -> Any:
    strategy = make_strategy(srv.config, len(grid.nodes))
    return srv._round(grid, strategy, server_round, {"w": torch.zeros(2)}, BASE, full_bytes=1000)


def test_a_round_is_the_example_weighted_mean_by_hand_and_counts_its_bytes(tmp_path: Path) -> None:
    srv = server(tmp_path, min_clients=2, rounds=3, lr_schedule="linear", min_lr_ratio=0.5)
    grid = ScriptedGrid(2, trained({1: ([1.0, 2.0], 1), 2: ([3.0, 6.0], 3)}))
    log, aggregated = run_round(srv, grid, server_round=2)
    # by hand: (1·1 + 3·3)/4 = 2.5, (1·2 + 3·6)/4 = 5.0; the plain mean would be (2, 4)
    assert torch.allclose(aggregated["w"], torch.tensor([2.5, 5.0]))
    assert log.finished == log.sampled == 2 and {c.client for c in log.clients} == {"hospital-1", "hospital-2"}
    assert log.lr == pytest.approx(0.75e-3)  # halfway from 1e-3 to 0.5e-3 in round 2 of 3
    sent = grid.sent[0].content["config"]
    assert sent["lr"] == pytest.approx(0.75e-3) and sent["local-steps"] == 10 and sent["base-digest"] == "digest-1"
    assert all(c.sent_bytes > 8 and c.received_bytes > 8 for c in log.clients)  # at least the 2 float32 of w
    assert log.sent_bytes == sum(c.sent_bytes for c in log.clients)
    assert log.full_model_bytes == 1000 * 4  # two models down, two up


def test_a_failed_client_is_left_out_when_enough_others_finish(tmp_path: Path) -> None:
    healthy = trained({1: ([1.0, 1.0], 2), 2: ([9.0, 9.0], 2)})

    def reply(message: Message, node: int) -> Message | None:
        if node == 2:
            return Message(Error(code=1, reason="ClientApp raised: RuntimeError('node lost power')"), reply_to=message)
        return healthy(message, node)

    log, aggregated = run_round(server(tmp_path, min_clients=1), ScriptedGrid(2, reply))
    assert torch.equal(aggregated["w"], torch.tensor([1.0, 1.0]))  # hospital-2's update is not averaged in
    failed = [c for c in log.clients if not c.ok]
    assert log.finished == 1 and len(failed) == 1 and "node lost power" in failed[0].error


def test_too_few_clients_give_no_aggregate_and_a_silent_node_is_counted(tmp_path: Path) -> None:
    healthy = trained({1: ([1.0, 1.0], 2), 2: ([9.0, 9.0], 2)})
    log, aggregated = run_round(
        server(tmp_path, min_clients=2, round_timeout=5),
        ScriptedGrid(2, lambda m, n: healthy(m, n) if n == 1 else None),
    )
    assert aggregated is None and log.finished == 1
    assert [c.error for c in log.clients if not c.ok] == ["no reply in 5 s"]


def test_a_client_with_unusable_data_stops_the_run_naming_it(tmp_path: Path) -> None:
    reason = "client hospital-2 (b.jsonl): b.jsonl:3: messages: no assistant turn with content"
    grid = ScriptedGrid(
        2,
        lambda m, n: (
            Message(Error(code=DATA_ERROR, reason=reason), reply_to=m)
            if n == 2
            else trained({1: ([1.0, 1.0], 2)})(m, n)
        ),
    )
    with pytest.raises(FederationError, match=r"^client hospital-2 \(b.jsonl\): b.jsonl:3: messages"):
        run_round(server(tmp_path, min_clients=1), grid)


def test_central_dp_clips_each_update_to_the_norm(tmp_path: Path) -> None:
    srv = server(tmp_path, min_clients=2, dp_noise_multiplier=0.0, dp_clip_norm=1.0)
    _, aggregated = run_round(srv, ScriptedGrid(2, trained({1: ([30.0, 40.0], 1), 2: ([0.0, 2.0], 1)})))
    # updates from the global zeros: (30, 40) has norm 50 -> clipped to (0.6, 0.8); (0, 2) -> (0, 1); mean, no noise
    assert torch.allclose(aggregated["w"], torch.tensor([0.3, 0.9]), atol=1e-6)


def test_central_dp_weighs_clients_equally_whatever_their_examples(tmp_path: Path) -> None:
    srv = server(tmp_path, min_clients=2, dp_noise_multiplier=0.0, dp_clip_norm=100.0)
    _, aggregated = run_round(srv, ScriptedGrid(2, trained({1: ([1.0, 2.0], 1), 2: ([3.0, 6.0], 3)})))
    # no clipping at norm 100, no noise: the plain mean (2, 4), not the example-weighted (2.5, 5)
    assert torch.allclose(aggregated["w"], torch.tensor([2.0, 4.0]), atol=1e-6)


def test_central_dp_spends_epsilon_round_by_round(tmp_path: Path) -> None:
    config = FederationConfig(min_clients=1, dp_noise_multiplier=2.0, dp_clip_norm=1.0, dp_delta=1e-6)
    srv = server(tmp_path, min_clients=1, dp_noise_multiplier=2.0, dp_clip_norm=1.0, dp_delta=1e-6)
    fed = FederationCard(
        engine="simulation", strategy="fedavg", settings={}, clients=[], adapter_bytes=1, model_bytes=1
    )
    grid = ScriptedGrid(2, trained({1: ([1.0, 2.0], 1), 2: ([3.0, 6.0], 3)}))
    fed.rounds.append(run_round(srv, grid)[0])
    spend_privacy(fed, config)
    assert fed.rounds[0].dp_noise == 2.0 and fed.dp_delta == 1e-6
    assert fed.dp_epsilon == pytest.approx(epsilon([2.0], 1e-6))
    # round 2: one of the two sampled clients is silent; the denominator stays 2, so does the noise multiplier
    failing = ScriptedGrid(2, lambda m, n: trained({1: ([1.0, 2.0], 1)})(m, n) if n == 1 else None)
    fed.rounds.append(run_round(srv, failing, server_round=2)[0])
    spend_privacy(fed, config)
    assert fed.rounds[1].dp_noise == 2.0
    assert fed.dp_epsilon is not None and fed.dp_epsilon > epsilon([2.0], 1e-6)
    assert fed.dp_epsilon == pytest.approx(epsilon([2.0, 2.0], 1e-6))
    fed.rounds.append(fed.rounds[0].model_copy(update={"dp_noise": None}))  # a round recorded without it: σ
    spend_privacy(fed, config)
    assert fed.dp_epsilon == pytest.approx(epsilon([2.0] * 3, 1e-6))
    without = FederationCard(
        engine="simulation", strategy="fedavg", settings={}, clients=[], adapter_bytes=1, model_bytes=1
    )
    without.rounds.append(fed.rounds[0].model_copy(update={"dp_noise": None}))
    spend_privacy(without, FederationConfig())
    assert without.dp_epsilon is None and without.rounds[0].dp_noise is None


def test_central_dp_divides_by_the_sample_size_whoever_finishes(tmp_path: Path) -> None:
    def reply(message: Message, node: int) -> Message | None:
        if node == 2:
            return Message(Error(code=1, reason="ClientApp raised: RuntimeError('node lost power')"), reply_to=message)
        return trained({1: ([1.0, 2.0], 5)})(message, node)

    srv = server(tmp_path, min_clients=1, dp_noise_multiplier=0.0, dp_clip_norm=100.0)
    log, aggregated = run_round(srv, ScriptedGrid(2, reply))
    # an error reply does not stop the round; the one update (1, 2) from the global zeros is divided by 2, not 1:
    # one hospital, present or not, moves the release by at most clip norm / 2
    assert log.finished == 1 and log.dp_noise == 0.0
    assert torch.allclose(aggregated["w"], torch.tensor([0.5, 1.0]), atol=1e-6)


def test_the_cards_data_section_counts_the_clients_it_knows(tmp_path: Path) -> None:
    from medcouncil.serving.training.card import RunCard
    from medcouncil.serving.training.federated.server import count_data

    card = RunCard.new(FinetuneConfig(), BASE, "remote", "", [], (0, 0), 1)
    count_data(card, [])
    empty = card.data.fingerprint
    count_data(
        card,
        [
            ClientData(name="seoul", path="s", examples=12, fingerprint="f1"),
            ClientData(name="busan", path="b", examples=3),
        ],
    )
    assert card.data.examples == card.data.train == 15 and card.data.fingerprint != empty

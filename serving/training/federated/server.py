"""The server's side of a federated run: rounds of configure → train on the clients → aggregate, with the global
adapter checkpointed after each round (a server killed with ``kill -9`` resumes from the last one), the round's
bytes, time and losses recorded, and the global adapter scored on the held-out set and the probe.

Flower's strategies choose the clients and aggregate (``FedAvg``: the example-weighted mean; ``FedProx``: the same
mean, clients told μ; central DP: Flower's server-side fixed-clipping wrapper around either). medcouncil drives
the rounds itself, so that a resumed run continues at its round with its learning rate, and a round that too few
clients finish stops the run with the reason instead of averaging one hospital's adapter as if it were all.
"""

from __future__ import annotations

import hashlib
import shutil
import time
from pathlib import Path
from typing import Any

import torch

from medcouncil.serving.common.errors import ConfigError, MedcouncilError
from medcouncil.serving.training import checkpoint
from medcouncil.serving.training.card import RunCard, write_card
from medcouncil.serving.training.data import read_chat_jsonl
from medcouncil.serving.training.evaluate import ProbeItem, held_out_loss, probe_accuracy, tokenize_all
from medcouncil.serving.training.federated.card import ClientRound, FederationCard, GlobalEval, RoundLog
from medcouncil.serving.training.federated.config import ClientData, FederationPlan
from medcouncil.serving.training.federated.privacy import round_noise
from medcouncil.serving.training.federated.strategy import (
    FederationError,
    client_name,
    make_strategy,
    spend_privacy,
)
from medcouncil.serving.training.model import BaseModelInfo, LabelledLoss, load_model, load_tokenizer, resolve_base

ROUNDS = "rounds"
DATA_ERROR = 4201
"""Error code of a client reply whose data (or base model) cannot be used: the run stops, naming the client."""


def count_data(card: RunCard, clients: list[ClientData]) -> None:
    """The card's data section from the clients' (planned, or named in their replies by remote SuperNodes)."""
    card.data.fingerprint = hashlib.sha256("\n".join(c.fingerprint for c in clients).encode()).hexdigest()
    card.data.examples = card.data.train = sum(c.examples for c in clients)


def reply_data(reply: Any, examples: int) -> ClientData:
    """What a client's reply says of its data: name, path on its host, fingerprint (never the data)."""
    record = reply.content["client"]
    return ClientData(
        name=str(record["name"]),
        path=str(record.get("path", "")),
        source="its own data (deployed SuperNode)",
        examples=examples,
        fingerprint=str(record.get("fingerprint", "")),
    )


def model_bytes(model: torch.nn.Module) -> int:
    """The whole model's weights as a full-model exchange would send them (base and adapter, training dtype)."""
    return sum(p.numel() * p.element_size() for p in model.parameters())


def save_round(out: Path, server_round: int, tensors: dict[str, torch.Tensor], card: RunCard, keep: int) -> Path:
    """The global adapter after ``server_round`` and the card so far, written whole (temporary folder, rename)."""
    folder = out / ROUNDS
    state = {"round": server_round, "card": card.model_dump(mode="json")}
    try:
        target = checkpoint.write_whole(folder, f"round-{server_round:04d}", {"model": tensors}, state)
    except OSError as error:
        raise MedcouncilError(
            f"cannot write the round {server_round} checkpoint to {folder} ({error.strerror or error}): the "
            "previous round's checkpoint is intact; free space and continue with --resume"
        ) from None
    for old in saved_rounds(out)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return target


def saved_rounds(out: Path) -> list[Path]:
    folder = out / ROUNDS
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if p.name.startswith("round-") and (p / checkpoint.STATE).is_file()]
    return sorted(found, key=lambda p: int(p.name.removeprefix("round-")))


def load_round(path: Path) -> tuple[int, dict[str, torch.Tensor], RunCard]:
    tensors, state = checkpoint.load(path)
    return int(state["round"]), tensors["model"], RunCard.model_validate(state["card"])


def describe(result: GlobalEval) -> str:
    loss = "-" if result.loss is None else f"{result.loss:.4f}"
    accuracy = "-" if result.accuracy is None else f"{result.accuracy:.3f} of {result.items}"
    return f"held-out loss {loss}, probe accuracy {accuracy}"


def record_bytes(content: Any) -> int:
    """The bytes of a message's records (arrays, metrics, configs) as Flower counts them."""
    return sum(int(record.count_bytes()) for record in content.values())


def _reason(reply: Any) -> str:
    """The last line of a failed reply's reason (Flower wraps a client's exception in several lines)."""
    text = str(reply.error.reason or f"error {reply.error.code}")
    lines = [line.strip() for line in text.replace("\\n", "\n").splitlines() if line.strip()]
    last = lines[-1] if lines else text
    return last.removeprefix("Exception ClientAppException occurred. Message:").strip().strip("'>").strip()


class FederatedServer:
    """One federated run into ``plan.out``."""

    def __init__(self, plan: FederationPlan, log: Any = print) -> None:
        self.plan, self.config, self.log = plan, plan.federation, log
        self._seen: list[ClientData] = []
        """The clients that replied (a deployed SuperNode names its own data)."""

    def _evaluate(self, server_round: int, tensors: dict[str, torch.Tensor], state: dict[str, Any]) -> GlobalEval:
        started = time.monotonic()
        model = state["model"]
        checkpoint.apply(model, {"model": tensors})
        result = GlobalEval(round=server_round)
        if state["eval"]:
            result.loss = held_out_loss(
                state["loss_fn"], state["eval"], state["pad_id"], self.plan.train.batch_size, torch.device("cpu")
            )
        if state["probe"]:
            probe = probe_accuracy(
                model, state["tokenizer"], state["probe"], self.plan.train.max_seq_len, torch.device("cpu")
            )
            result.accuracy, result.gold_probability, result.items = (
                probe.accuracy,
                probe.mean_gold_probability,
                probe.items,
            )
        result.seconds = time.monotonic() - started
        return result

    def _setup(self, base: BaseModelInfo) -> dict[str, Any]:
        plan = self.plan
        torch.manual_seed(plan.train.seed)
        tokenizer = load_tokenizer(base)
        model = load_model(base, plan.train)
        loss_fn = LabelledLoss(model)
        held = read_chat_jsonl(Path(plan.eval_path))[: self.config.eval_items] if plan.eval_path else []
        probe: list[ProbeItem] = []
        if plan.probe_path:
            with Path(plan.probe_path).open(encoding="utf-8") as handle:
                probe = [ProbeItem.model_validate_json(line) for line in handle if line.strip()]
            probe = probe[: self.config.probe_items]
        return {
            "model": model,
            "tokenizer": tokenizer,
            "loss_fn": loss_fn,
            "pad_id": int(tokenizer.pad_token_id),
            "eval": tokenize_all(tokenizer, held, plan.train.max_seq_len),
            "probe": probe,
        }

    def _new_card(self, base: BaseModelInfo, tensors: dict[str, torch.Tensor], model: torch.nn.Module) -> RunCard:
        from medcouncil.serving.training.aggregate import tensor_bytes

        plan = self.plan
        card = RunCard.new(plan.train, base, plan.data_source, "", [], (0, 0), plan.federation.rounds)
        count_data(card, plan.clients)
        card.federation = FederationCard(
            engine=self.config.engine,
            strategy=self.config.strategy + (" + central DP" if self.config.dp else ""),
            settings=self.config.model_dump(mode="json"),
            clients=list(plan.clients),
            adapter_bytes=tensor_bytes(tensors),
            model_bytes=model_bytes(model),
        )
        return card

    def run(self, grid: Any) -> RunCard:
        """All rounds (or the rest of them, after a kill); then the adapter, ``run.json`` and ``report.html``.

        Raises:
            FederationError: too few clients finished a round, or a client's data is unusable (named).
        """
        plan, config = self.plan, self.config
        base = resolve_base(plan.train.base)
        state = self._setup(base)
        model = state["model"]
        tensors = checkpoint.trainable_state(model)
        card = self._new_card(base, tensors, model)
        start = 1
        saved = saved_rounds(plan.out)
        if saved:
            done, tensors, card = load_round(saved[-1])
            card.resumed_from.append(str(saved[-1]))
            start = done + 1
            self.log(f"resuming after round {done} of {config.rounds} ({saved[-1]})")
        fed = card.federation
        assert fed is not None
        if fed.initial is None:
            fed.initial = self._evaluate(0, tensors, state)
            self.log(f"round 0: {describe(fed.initial)}")
        strategy = make_strategy(config, max(len(plan.clients), config.min_clients))
        for server_round in range(start, config.rounds + 1):
            log, aggregated = self._round(grid, strategy, server_round, tensors, base, fed.model_bytes)
            if aggregated is None:
                fed.status = f"failed: round {server_round}"
                write_card(plan.out, card)
                failures = "; ".join(f"{c.client}: {c.error}" for c in log.clients if not c.ok)
                raise FederationError(
                    f"round {server_round}: {log.finished} of {log.sampled} clients finished, fewer than "
                    f"min_clients {config.min_clients} ({failures or 'no reply'}); the global adapter of round "
                    f"{server_round - 1} is saved: continue with --resume {plan.out}"
                )
            tensors = aggregated
            log.eval = self._evaluate(server_round, tensors, state)
            fed.rounds.append(log)
            spend_privacy(fed, config)
            known = {client.name for client in fed.clients}
            fed.clients += [seen for seen in self._seen if seen.name not in known]
            count_data(card, fed.clients)
            card.wall_seconds += log.seconds
            card.tokens += sum(c.tokens for c in log.clients)
            card.train_seconds += max((c.seconds for c in log.clients if c.ok), default=0.0)
            save_round(plan.out, server_round, tensors, card, config.keep_rounds)
            self.log(
                f"round {server_round}/{config.rounds}: {log.finished}/{log.sampled} clients, "
                f"{describe(log.eval)}, {log.seconds:.1f} s"
                + (f", central DP ε {fed.dp_epsilon:.3g} at δ {fed.dp_delta:g}" if config.dp else "")
            )
        return self._finish(card, tensors, model)

    def _round(
        self,
        grid: Any,
        strategy: Any,
        server_round: int,
        tensors: dict[str, torch.Tensor],
        base: BaseModelInfo,
        full_bytes: int,
    ) -> tuple[RoundLog, dict[str, torch.Tensor] | None]:
        """One round: its record, and the aggregated adapter (None when fewer than ``min_clients`` finished)."""
        from flwr.app import ArrayRecord, ConfigRecord

        plan, config = self.plan, self.config
        lr = config.learning_rate(plan.train.learning_rate, server_round)
        settings = plan.train.model_copy(update={"threads": max(1, int(config.client_cpus))})
        record = ConfigRecord(
            {
                "lr": lr,
                "local-steps": config.local_steps,
                "medcouncil-round": server_round,
                "train": settings.model_dump_json(),
                "base-digest": base.digest,
            }
        )
        t0 = time.monotonic()
        messages = list(strategy.configure_train(server_round, ArrayRecord(tensors), record, grid))
        sent = {m.metadata.dst_node_id: record_bytes(m.content) for m in messages}
        replies = list(grid.send_and_receive(messages, timeout=config.round_timeout))
        clients: list[ClientRound] = []
        for reply in replies:
            node = reply.metadata.src_node_id
            if reply.has_error():
                reason = _reason(reply)
                if reply.error.code == DATA_ERROR:
                    raise FederationError(reason)
                clients.append(ClientRound(client=f"node {node}", node_id=node, ok=False, error=reason))
                continue
            metrics = reply.content["metrics"]
            self._seen.append(reply_data(reply, int(metrics["num-examples"])))
            clients.append(
                ClientRound(
                    client=client_name(reply),
                    node_id=node,
                    ok=True,
                    examples=int(metrics["num-examples"]),
                    loss=float(metrics["train-loss"]),
                    first_loss=float(metrics["first-loss"]),
                    steps=int(metrics["steps"]),
                    tokens=int(metrics["tokens"]),
                    seconds=float(metrics["seconds"]),
                    sent_bytes=sent.get(node, 0),
                    received_bytes=record_bytes(reply.content),
                )
            )
        answered = {c.node_id for c in clients}
        clients += [
            ClientRound(
                client=f"node {node}", node_id=node, ok=False, error=f"no reply in {config.round_timeout:.0f} s"
            )
            for node in sent
            if node not in answered
        ]
        finished = [c for c in clients if c.ok]
        aggregated, noise = None, None
        if config.dp:
            sample = int(strategy.num_sampled_clients)
            denominator = max(sample, len(messages))
            strategy.strategy.fixed = (tensors, denominator)
            noise = round_noise(float(config.dp_noise_multiplier or 0.0), denominator, sample)
        if len(finished) >= config.min_clients:
            # only the replies that carry an adapter: Flower's DP wrapper gives up on a round with an error reply
            arrays, _ = strategy.aggregate_train(server_round, [r for r in replies if not r.has_error()])
            if arrays is None:
                raise FederationError(f"round {server_round}: the strategy aggregated nothing from {len(finished)}")
            state = arrays.to_torch_state_dict()
            aggregated = {name: value.to(tensors[name].dtype) for name, value in state.items()}
        log = RoundLog(
            round=server_round,
            lr=lr,
            sampled=len(messages),
            finished=len(finished),
            seconds=time.monotonic() - t0,
            sent_bytes=sum(sent.values()),
            received_bytes=sum(c.received_bytes for c in clients),
            full_model_bytes=full_bytes * (len(messages) + len(finished)),
            clients=clients,
            dp_noise=noise,
        )
        return log, aggregated

    def _finish(self, card: RunCard, tensors: dict[str, torch.Tensor], model: Any) -> RunCard:
        out = self.plan.out
        checkpoint.apply(model, {"model": tensors})
        fed = card.federation
        assert fed is not None
        fed.status = "finished"
        card.finished = True
        try:
            model.save_pretrained(out)
        except OSError as error:
            raise ConfigError(f"cannot write the adapter to {out} ({error.strerror or error})") from error
        write_card(out, card)
        return card

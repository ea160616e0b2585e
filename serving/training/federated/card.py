"""What a federated run records: per round and per client, the bytes exchanged, the time, the local losses and the
global adapter's held-out loss and probe accuracy; saved in the run card's ``federation`` section and shown in the
report as a table and a plot."""

from __future__ import annotations

import html
from collections.abc import Sequence

from pydantic import BaseModel, Field

from medcouncil.serving.training.federated.config import ClientData


class ClientRound(BaseModel):
    client: str
    node_id: int
    ok: bool
    error: str = ""
    examples: int = 0
    loss: float | None = None
    """The client's mean training loss over its local steps this round."""
    first_loss: float | None = None
    steps: int = 0
    tokens: int = 0
    seconds: float = 0.0
    sent_bytes: int = 0
    """Server to client: the global adapter and the round's settings."""
    received_bytes: int = 0
    """Client to server: the trained adapter and its metrics."""


class GlobalEval(BaseModel):
    round: int
    """0: the initial adapter (before any round)."""
    loss: float | None = None
    """Held-out loss per labelled token."""
    accuracy: float | None = None
    """Probe accuracy (most probable option, complete probabilities)."""
    gold_probability: float | None = None
    items: int = 0
    seconds: float = 0.0
    """What scoring the held-out set and the probe took."""


class RoundLog(BaseModel):
    round: int
    lr: float
    sampled: int
    finished: int
    seconds: float
    sent_bytes: int
    received_bytes: int
    full_model_bytes: int
    """What the same round would have moved with whole models instead of adapters."""
    clients: list[ClientRound] = Field(default_factory=list)
    eval: GlobalEval | None = None
    dp_noise: float | None = None
    """Central DP: the noise multiplier of this round's release (σ x fixed denominator / sample size)."""


class FederationCard(BaseModel):
    """The ``federation`` section of a federated run's ``run.json``."""

    engine: str
    strategy: str
    settings: dict[str, object]
    clients: list[ClientData]
    """The clients' data sources and counts (never the data): ``bench``'s training-leak check reads them."""
    adapter_bytes: int
    model_bytes: int
    """The whole model's weights in the training dtype (what a full-model exchange would send)."""
    initial: GlobalEval | None = None
    rounds: list[RoundLog] = Field(default_factory=list)
    status: str = "running"
    """``running``, ``finished`` or ``failed: <reason>``."""
    dp_epsilon: float | None = None
    """Central DP: the client-level ε spent by the rounds so far, at ``dp_delta`` (inf: no noise)."""
    dp_delta: float | None = None

    @property
    def sent_bytes(self) -> int:
        return sum(r.sent_bytes for r in self.rounds)

    @property
    def received_bytes(self) -> int:
        return sum(r.received_bytes for r in self.rounds)

    @property
    def full_model_bytes(self) -> int:
        return sum(r.full_model_bytes for r in self.rounds)


def _mb(count: int) -> str:
    return f"{count / 1e6:.2f}"


def rounds_table(card: FederationCard) -> list[list[str]]:
    """Header and one row per round (initial evaluation first): the report's table, also printed by the CLI."""
    rows = [["round", "lr", "clients", "client loss", "held-out loss", "probe acc", "sent MB", "recv MB", "s"]]
    if card.initial is not None:
        rows.append(["0", "-", "-", "-", _fmt(card.initial.loss), _fmt(card.initial.accuracy), "-", "-", "-"])
    for log in card.rounds:
        losses = [c.loss for c in log.clients if c.ok and c.loss is not None]
        rows.append(
            [
                str(log.round),
                f"{log.lr:.2e}",
                f"{log.finished}/{log.sampled}",
                " ".join(f"{value:.3f}" for value in losses) or "-",
                _fmt(log.eval.loss if log.eval else None),
                _fmt(log.eval.accuracy if log.eval else None),
                _mb(log.sent_bytes),
                _mb(log.received_bytes),
                f"{log.seconds:.1f}",
            ]
        )
    return rows


def privacy_line(card: FederationCard) -> str:
    """`` Central DP: ε … at δ …`` for a run with central DP, else empty."""
    if card.dp_epsilon is None:
        return ""
    settings = card.settings
    return (
        f" Central DP (noise multiplier {settings.get('dp_noise_multiplier')}, clip norm "
        f"{settings.get('dp_clip_norm')}, fixed-denominator mean): client-level ε on the adapters "
        f"{card.dp_epsilon:.3g} at δ "
        f"{card.dp_delta:g} after {len(card.rounds)} rounds."
    )


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _curve(points: Sequence[tuple[float, float]], width: int, height: int, colour: str, label: str) -> str:
    if len(points) < 1:
        return ""
    xs, ys = [x for x, _ in points], [y for _, y in points]
    x0, x1 = min(xs), max(max(xs), min(xs) + 1)
    y0, y1 = min(ys), max(max(ys), min(ys) + 1e-6)
    left, top, inner_w, inner_h = 50, 20, width - 65, height - 55
    coords = " ".join(
        f"{left + (x - x0) / (x1 - x0) * inner_w:.1f},{top + (y1 - y) / (y1 - y0) * inner_h:.1f}" for x, y in points
    )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" aria-label="{label}">'
        f'<rect x="{left}" y="{top}" width="{inner_w}" height="{inner_h}" fill="none" stroke="#999"/>'
        f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{coords}"/>'
        f'<text x="{left - 5}" y="{top + 10}" font-size="11" text-anchor="end">{y1:.3g}</text>'
        f'<text x="{left - 5}" y="{top + inner_h}" font-size="11" text-anchor="end">{y0:.3g}</text>'
        f'<text x="{left}" y="{height - 12}" font-size="11">{html.escape(label)}: round {x0:g} to {x1:g}</text>'
        "</svg>"
    )


def federation_html(card: FederationCard) -> str:
    """The report's federated section: totals, the per-round table and the held-out loss / accuracy plots."""
    table = rounds_table(card)
    head = "".join(f"<th>{html.escape(cell)}</th>" for cell in table[0])
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in table[1:])
    ratio = card.full_model_bytes / max(1, card.sent_bytes + card.received_bytes)
    evals = ([card.initial] if card.initial else []) + [r.eval for r in card.rounds if r.eval]
    loss = [(float(e.round), e.loss) for e in evals if e.loss is not None]
    accuracy = [(float(e.round), e.accuracy) for e in evals if e.accuracy is not None]
    return (
        f"<h2>Federation</h2><p>{html.escape(card.engine)} engine, {html.escape(card.strategy)}, "
        f"{len(card.clients)} clients ({html.escape(', '.join(f'{c.name}: {c.examples}' for c in card.clients))}"
        f"); status {html.escape(card.status)}. Sent {_mb(card.sent_bytes)} MB and received "
        f"{_mb(card.received_bytes)} MB in all: whole models would have moved {_mb(card.full_model_bytes)} MB "
        f"({ratio:.0f}x).{html.escape(privacy_line(card))}</p>"
        f"<table border='1' cellpadding='3'><tr>{head}</tr>{body}</table>"
        f"{_curve(loss, 420, 240, '#ff7f0e', 'held-out loss')}{_curve(accuracy, 420, 240, '#2ca02c', 'probe accuracy')}"
    )

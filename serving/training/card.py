"""The run card of a fine-tuning run (``run.json``) and its small standalone report (``report.html``).

The card says what was trained from what: the base model and its digest (what a served model is checked
against), the data's fingerprint and counts, the full configuration, every step's loss, eval losses, throughput,
wall time, peak memory and the medcouncil version.
"""

from __future__ import annotations

import html
import os
import statistics
from collections.abc import Sequence
from importlib.metadata import version
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from medcouncil.serving.training.config import FinetuneConfig
from medcouncil.serving.training.data import Tokenized
from medcouncil.serving.training.federated.card import FederationCard, federation_html

CARD = "run.json"
REPORT = "report.html"


class StepLog(BaseModel):
    step: int
    loss: float
    """Mean loss per labelled token of the step."""
    lr: float
    tokens: int
    """Input tokens (padding excluded) processed so far."""
    seconds: float
    """Training time so far (eval and checkpoints excluded)."""


class EvalLog(BaseModel):
    step: int
    loss: float


class BaseCard(BaseModel):
    name: str
    kind: str
    source: str
    digest: str


class DataCard(BaseModel):
    source: str
    fingerprint: str
    examples: int
    train: int
    eval: int
    truncated: int
    """Examples longer than max_seq_len, cut from the start."""
    mean_tokens: float
    max_tokens: int


class RunCard(BaseModel):
    medcouncil_version: str
    method: str
    base: BaseCard
    data: DataCard
    config: dict[str, Any]
    config_fields: dict[str, Any]
    """The settings that decide the weights (a resume must match them)."""
    total_steps: int
    processes: int = 1
    """Processes that trained the last segment of the run (``torchrun`` / ``accelerate launch``)."""
    steps: list[StepLog] = Field(default_factory=list)
    evals: list[EvalLog] = Field(default_factory=list)
    tokens: int = 0
    labelled_tokens: int = 0
    train_seconds: float = 0.0
    wall_seconds: float = 0.0
    peak_rss_mb: float = 0.0
    finished: bool = False
    resumed_from: list[str] = Field(default_factory=list)
    merged: str | None = None
    federation: FederationCard | None = None
    """A federated run's rounds, clients and bytes (``medcouncil federate``)."""

    @classmethod
    def new(
        cls,
        config: FinetuneConfig,
        base: Any,
        data_source: str,
        data_fingerprint: str,
        tokenized: Sequence[Tokenized],
        split: tuple[int, int],
        total_steps: int,
        processes: int = 1,
    ) -> RunCard:
        """``split``: (training, held-out) examples."""
        train, held_out = split
        lengths = [len(t.input_ids) for t in tokenized]
        return cls(
            medcouncil_version=version("medcouncil"),
            method=config.method,
            base=BaseCard(name=base.name, kind=base.kind, source=base.source, digest=base.digest),
            data=DataCard(
                source=data_source,
                fingerprint=data_fingerprint,
                examples=len(tokenized),
                train=train,
                eval=held_out,
                truncated=sum(t.truncated for t in tokenized),
                mean_tokens=statistics.fmean(lengths) if lengths else 0.0,
                max_tokens=max(lengths, default=0),
            ),
            config=config.model_dump(mode="json"),
            config_fields=config.training_fields(processes),
            total_steps=total_steps,
            processes=processes,
        )

    def changed_settings(self, saved: RunCard) -> list[str]:
        """The weight-deciding settings in which ``saved`` (a checkpoint's card) differs from this run, by name."""
        before = dict(saved.config_fields)
        if saved.config.get("deepspeed") is not None:  # an older DeepSpeed run did not record its settings
            before.setdefault("deepspeed", self.config_fields.get("deepspeed"))
        keys = [*self.config_fields, "deepspeed"]  # a field retired since (data_dir) no longer decides anything
        return _changed({k: before.get(k) for k in keys}, {k: self.config_fields.get(k) for k in keys})

    def adopt(self, saved: RunCard, checkpoint: str) -> None:
        """Continue a resumed run's history from its checkpoint."""
        self.steps, self.evals = list(saved.steps), list(saved.evals)
        self.tokens, self.labelled_tokens = saved.tokens, saved.labelled_tokens
        self.train_seconds, self.wall_seconds = saved.train_seconds, saved.wall_seconds
        self.peak_rss_mb = saved.peak_rss_mb
        self.resumed_from = [*saved.resumed_from, checkpoint]

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.train_seconds if self.train_seconds else 0.0


def _polyline(points: Sequence[tuple[float, float]], sx: Any, sy: Any, colour: str) -> str:
    coords = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in points)
    return f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{coords}"/>'


def loss_svg(card: RunCard, width: int = 560, height: int = 300) -> str:
    """Training loss per step (blue) and eval loss (orange dots) on one plot."""
    train = [(s.step, s.loss) for s in card.steps]
    evals = [(e.step, e.loss) for e in card.evals]
    if not train:
        return "<p>No steps yet.</p>"
    left, right, top, bottom = 50, 15, 15, 35
    xs = [x for x, _ in train]
    ys = [y for _, y in train + evals]
    x0, x1 = min(xs), max(max(xs), min(xs) + 1)
    y0, y1 = min(ys), max(max(ys), min(ys) + 1e-6)

    def sx(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * (width - left - right)

    def sy(y: float) -> float:
        return top + (y1 - y) / (y1 - y0) * (height - top - bottom)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
        'aria-label="loss per step">',
        f'<rect x="{left}" y="{top}" width="{width - left - right}" height="{height - top - bottom}" '
        'fill="none" stroke="#999"/>',
        _polyline(train, sx, sy, "#1f77b4"),
    ]
    parts += [f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3.5" fill="#ff7f0e"/>' for x, y in evals]
    for value, anchor in ((y1, top + 10), (y0, height - bottom)):
        parts.append(f'<text x="{left - 5}" y="{anchor}" font-size="11" text-anchor="end">{value:.3g}</text>')
    parts.append(f'<text x="{left}" y="{height - 12}" font-size="11">step {x0}</text>')
    parts.append(f'<text x="{width - right}" y="{height - 12}" font-size="11" text-anchor="end">step {x1}</text>')
    parts.append("</svg>")
    return "".join(parts)


def report_html(card: RunCard) -> str:
    rows = [
        ("base", f"{card.base.name} ({card.base.kind}: {card.base.source}), digest {card.base.digest[:16]}"),
        (
            "data",
            f"{card.data.source}: {card.data.examples} examples ({card.data.train} train, {card.data.eval} "
            f"held out, {card.data.truncated} truncated), fingerprint {card.data.fingerprint[:16]}",
        ),
        (
            "method",
            f"{card.method}{' by DPO' if card.config.get('objective') == 'dpo' else ''}, {card.total_steps} steps, "
            f"lr {card.config['learning_rate']}, batch "
            f"{card.config['batch_size']} x {card.config_fields.get('grad_accum', card.config['grad_accum'])} "
            f"micro-batches per step on {card.processes} process{'es' if card.processes > 1 else ''}",
        ),
        (
            "throughput",
            f"{card.tokens_per_second:.1f} tokens/s ({card.tokens} tokens in {card.train_seconds:.1f} s "
            f"of training; wall {card.wall_seconds:.1f} s), peak RSS {card.peak_rss_mb:.0f} MB",
        ),
        (
            "loss",
            (f"first step {card.steps[0].loss:.4f}, last {card.steps[-1].loss:.4f}" if card.steps else "-")
            + (f"; eval {card.evals[0].loss:.4f} → {card.evals[-1].loss:.4f}" if card.evals else ""),
        ),
        ("status", "finished" if card.finished else "unfinished"),
    ]
    table = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows)
    style = (
        "body{font-family:system-ui,sans-serif;margin:2em auto;max-width:50em}"
        "th{text-align:left;padding-right:1em;vertical-align:top}"
    )
    return (
        f"<!doctype html><meta charset='utf-8'><title>medcouncil finetune</title><style>{style}</style>"
        f"<h1>Fine-tuning run</h1><table>{table}</table>"
        + (
            federation_html(card.federation)
            if card.federation is not None
            else f"<h2>Loss</h2>{loss_svg(card)}<p>Blue: training loss per step (mean per labelled token). "
            "Orange: eval loss on the held-out slice.</p>"
        )
    )


def write_card(out: Path, card: RunCard) -> None:
    """``run.json`` and ``report.html``, each written whole (temporary file, then rename)."""
    for name, text in ((CARD, card.model_dump_json(indent=2)), (REPORT, report_html(card))):
        tmp = out / f".{name}.tmp"
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, out / name)


def _changed(saved: dict[str, Any], now: dict[str, Any], prefix: str = "") -> list[str]:
    """The settings that differ between a checkpoint's run and this one, a DeepSpeed file's by their own keys."""
    changed: list[str] = []
    for key in sorted(saved.keys() | now.keys()):
        old, new = saved.get(key), now.get(key)
        if isinstance(old, dict) and isinstance(new, dict):
            changed += _changed(old, new, f"{prefix}{key}.")
        elif old != new:
            changed.append(prefix + key)
    return changed

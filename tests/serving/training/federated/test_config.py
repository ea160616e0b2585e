"""The federation's settings: the learning rate across rounds, and the combinations refused in one line."""

from __future__ import annotations

import itertools
import math

import pytest
from pydantic import ValidationError

from medcouncil.serving.training.federated.config import FederationConfig, FederationPlan


def test_the_learning_rate_schedules_across_rounds() -> None:
    # each round takes the schedule at its middle: round r of R at progress (r - 0.5) / R
    cosine = FederationConfig(rounds=5, lr_schedule="cosine", min_lr_ratio=0.1)
    rates = [cosine.learning_rate(1e-3, r) for r in range(1, 6)]
    assert rates[0] == pytest.approx(1e-4 + 0.9e-3 * 0.5 * (1 + math.cos(math.pi * 0.1)))
    assert rates[2] == pytest.approx(0.55e-3)  # the middle round: the mean of the two ends
    assert all(a > b for a, b in itertools.pairwise(rates)) and rates[-1] > 1e-4
    # linear down to 0 over 3 rounds, as finetune's per-step decay: 5/6, 3/6, 1/6; the last round still trains
    linear = FederationConfig(rounds=3, lr_schedule="linear", min_lr_ratio=0.0)
    assert [linear.learning_rate(2.0, r) for r in (1, 2, 3)] == pytest.approx([5 / 3, 1.0, 1 / 3])
    assert FederationConfig(rounds=4, lr_schedule="constant").learning_rate(0.5, 4) == 0.5
    assert FederationConfig(rounds=1, lr_schedule="linear", min_lr_ratio=0.0).learning_rate(0.5, 1) == 0.25


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"dp_noise_multiplier": 1.0}, "both dp_noise_multiplier and dp_clip_norm"),
        ({"secure_aggregation": True}, "SecAgg\\+ only for its legacy strategy API"),
        ({"superlink": "10.0.0.1:9093"}, "superlink is for engine: deployment"),
        ({"fraction": 0.0}, "greater than 0"),
        ({"strategy": "fedyogi"}, "fedavg"),
    ],
)
def test_impossible_settings_are_refused(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        FederationConfig(**fields)  # type: ignore[arg-type]


def test_a_plan_that_is_not_one_is_a_one_line_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from medcouncil.serving.common.errors import ConfigError

    bad = tmp_path / "federation.json"
    bad.write_text('{"out": 3', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"federation.json: cannot read the federation plan"):
        FederationPlan.load(bad)
    bad.write_text('{"out": "x"}', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"federation.json: not a federation plan"):
        FederationPlan.load(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        FederationPlan.load(tmp_path / "missing.json")

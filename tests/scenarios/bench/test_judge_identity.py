"""A resume keeps its judge model: the same served name, and the same weights where both sides know them, else a
URL in common (a pool that lost its first replica, a server restarted elsewhere with known weights)."""

from __future__ import annotations

from pathlib import Path

import pytest

from medcouncil.scenarios.bench.journal import check_judge, judged_by
from medcouncil.serving.common.errors import ConfigError

A, B, C = "http://127.0.0.1:8101/v1", "http://127.0.0.1:8102/v1", "http://127.0.0.1:8200/v1"
RUN = Path("runs/x")


def same(recorded: str, recorded_weights: str, identity: str, weights: str) -> bool:
    try:
        check_judge(recorded, recorded_weights, identity, weights, RUN)
    except ConfigError:
        return False
    return True


def test_a_pool_that_lost_or_gained_a_replica_is_the_same_judge() -> None:
    pool = judged_by(f"{A},{B}", "gemma")
    assert pool == f"{A},{B}#gemma"
    assert same(pool, "", judged_by(B, "gemma"), "")  # the first replica died
    assert same(judged_by(A, "gemma"), "", judged_by(f"{A},{B}", "gemma"), "")  # an older run, one URL
    assert not same(pool, "", judged_by(C, "gemma"), "")  # no URL in common, weights unknown
    assert not same(pool, "", judged_by(B, "medgemma"), "")  # another served model


def test_known_weights_decide_over_urls() -> None:
    assert same(judged_by(A, "gemma"), "w1", judged_by(C, "gemma"), "w1")  # restarted on another port
    assert not same(judged_by(A, "gemma"), "w1", judged_by(A, "gemma"), "w2")  # retrained, same port and name
    assert not same(judged_by(A, "gemma"), "w1", judged_by(C, "medgemma"), "w1")  # another served name
    assert same(judged_by(A, "gemma"), "w1", judged_by(A, "gemma"), "")  # the same URL given by hand


def test_a_run_with_a_judge_refuses_none_and_the_reverse_with_both_named() -> None:
    with pytest.raises(ConfigError, match=rf"runs/x was judged by {A}#gemma, not no judge model: resume it"):
        check_judge(judged_by(A, "gemma"), "", "", "", RUN)
    with pytest.raises(ConfigError, match=rf"judged by no judge model, not {A}#gemma"):
        check_judge("", "", judged_by(A, "gemma"), "", RUN)
    with pytest.raises(ConfigError, match=r"\(other weights\)"):
        check_judge(judged_by(A, "gemma"), "w1", judged_by(A, "gemma"), "w2", RUN)
    check_judge("", "", "", "", RUN)  # no judge, then and now

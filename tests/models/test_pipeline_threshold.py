"""The threshold rule and its optimizer agree on a hand-computed example."""

from __future__ import annotations

import math

import numpy as np
import pytest

from daemon.domain import Side
from strategies.threshold import decide, net_returns, optimize, positions, sharpe

PROBS = np.array([[0.2, 0.2, 0.6], [0.7, 0.2, 0.1], [0.3, 0.4, 0.3], [0.1, 0.35, 0.55]])
RETURNS = np.array([0.01, -0.02, 0.005, 0.003])


def test_decide_by_hand() -> None:
    assert decide(PROBS, 0.5).tolist() == [Side.LONG, Side.SHORT, Side.FLAT, Side.LONG]
    assert decide(PROBS, 0.6).tolist() == [Side.LONG, Side.SHORT, Side.FLAT, Side.FLAT]
    assert decide(PROBS, 0.65).tolist() == [Side.FLAT, Side.SHORT, Side.FLAT, Side.FLAT]
    assert int(decide(PROBS[0], 0.6)) == Side.LONG  # one bar, as the daemon calls it
    assert decide([0.004, -0.001, -0.006], 0.002, "regression").tolist() == [Side.LONG, Side.FLAT, Side.SHORT]
    with pytest.raises(ValueError, match="3 classes"):
        decide([0.5, 0.5], 0.5)


def test_net_returns_and_sharpe_by_hand() -> None:
    # threshold 0.5: positions +1, -1, 0, +1; turnover 1, 2, 1, 1; fee 0.001 per unit
    pos = positions(decide(PROBS, 0.5))
    np.testing.assert_allclose(net_returns(pos, RETURNS, 0.001), [0.009, 0.018, -0.001, 0.002])
    # mean 0.007, population variance (2^2 + 11^2 + 8^2 + 5^2) / 4 * 1e-6 = 53.5e-6
    assert sharpe(pos, RETURNS, 0.001, bars_per_year=1) == pytest.approx(0.007 / math.sqrt(53.5e-6))
    assert sharpe(pos, RETURNS, 0.001, bars_per_year=4) == pytest.approx(2 * 0.007 / math.sqrt(53.5e-6))
    assert sharpe(np.zeros(4), RETURNS) == 0.0


def test_optimizer_uses_the_rule_and_picks_the_hand_computed_best() -> None:
    res = optimize(PROBS, RETURNS, fee=0.001, bars_per_year=1, grid=np.array([0.5, 0.6, 0.65, 0.75]))
    by_hand = {
        0.5: 0.007 / math.sqrt(53.5e-6),  # net 0.009, 0.018, -0.001, 0.002
        0.6: 0.0065 / math.sqrt(59.25e-6),  # net 0.009, 0.018, -0.001, 0
        0.65: 0.0045 / math.sqrt(70.25e-6),  # net 0, 0.019, -0.001, 0
        0.75: 0.0,  # never trades
    }
    for thr, s in res.grid:
        assert s == pytest.approx(by_hand[thr])
    assert res.threshold == 0.5 and res.sharpe == pytest.approx(by_hand[0.5])
    assert res.trades == 4


def test_optimizer_prefers_flat_when_every_trade_loses() -> None:
    res = optimize(PROBS, -RETURNS, fee=0.001, bars_per_year=1, grid=np.array([0.5, 0.6, 0.75]))
    assert res.threshold == 0.75 and res.sharpe == 0.0


# Holding period: LONG, FLAT, LONG, FLAT, FLAT, FLAT at threshold 0.6.
HOLD_PROBS = np.array([[0.1, 0.2, 0.7], [0.3, 0.4, 0.3], [0.1, 0.2, 0.7]] + [[0.3, 0.4, 0.3]] * 3)
HOLD_RETURNS = np.array([0.002, 0.001, 0.003, -0.001, 0.0005, 0.002])


def test_hold_keeps_a_position_through_flat_decisions_by_hand() -> None:
    sides = decide(HOLD_PROBS, 0.6)
    assert positions(sides).tolist() == [1, 0, 1, 0, 0, 0]  # hold 1 = the every-bar rule
    # hold 3: entered at bar 0; FLAT at ages 1 and 2 keeps it, LONG at age 2 does not restart it,
    # FLAT at age 3 closes it.
    assert positions(sides, hold=3).tolist() == [1, 1, 1, 0, 0, 0]
    # an opposite side flips at once (a new entry), FLAT then waits for the new hold
    flip = np.array([Side.LONG, Side.SHORT, Side.FLAT, Side.FLAT, Side.FLAT])
    assert positions(flip, hold=3).tolist() == [1, -1, -1, -1, 0]
    with pytest.raises(ValueError, match="hold must be >= 1"):
        positions(sides, hold=0)


def test_hold_changes_turnover_and_sharpe_by_hand() -> None:
    grid = np.array([0.6])
    every_bar = optimize(HOLD_PROBS, HOLD_RETURNS, fee=0.001, bars_per_year=1, grid=grid)
    held = optimize(HOLD_PROBS, HOLD_RETURNS, fee=0.001, bars_per_year=1, grid=grid, hold=3)
    # hold 1: net 0.001, -0.001, 0.002, -0.001, 0, 0 -> mean 1/6 e-3, variance 41/36 e-6
    np.testing.assert_allclose(
        net_returns(positions(decide(HOLD_PROBS, 0.6)), HOLD_RETURNS), [0.001, -0.001, 0.002, -0.001, 0.0, 0.0], atol=1e-15
    )
    assert every_bar.trades == 4 and every_bar.sharpe == pytest.approx(1 / math.sqrt(41))
    # hold 3: net 0.001, 0.001, 0.003, -0.001, 0, 0 -> mean 2/3 e-3, variance 14/9 e-6
    np.testing.assert_allclose(
        net_returns(positions(decide(HOLD_PROBS, 0.6), 3), HOLD_RETURNS), [0.001, 0.001, 0.003, -0.001, 0.0, 0.0], atol=1e-15
    )
    assert held.trades == 2 and held.hold == 3 and held.sharpe == pytest.approx(2 / math.sqrt(14))

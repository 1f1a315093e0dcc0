"""The portfolio simulator: returns, costs on turnover and NaN closes, by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from daemon.research.portfolio_sim import simulate
from strategies.portfolio import Costs

NAN = float("nan")


def test_costs_are_charged_on_turnover_exactly() -> None:
    close = np.full((4, 2), 100.0)  # flat prices: no drift, only costs move equity
    w = np.array([[0.5, 0.25], [0.5, 0.25], [0.2, -0.3], [0.0, 0.0]])
    res = simulate(w, close, np.array([0.001, 0.002]), 8760)
    # entry: 0.5*0.001 + 0.25*0.002; no change; then |0.2-0.5|*0.001 + |-0.3-0.25|*0.002
    assert res.costs == pytest.approx([0.0005 + 0.0005, 0.0, 0.0003 + 0.0011])
    assert res.turnover == pytest.approx([0.75, 0.0, 0.85])
    assert res.equity[-1] == pytest.approx((1 - 0.001) * (1 - 0.0014))


def test_returns_and_drift_by_hand() -> None:
    close = np.array([[100.0, 50.0], [110.0, 50.0], [99.0, 55.0]])
    w = np.array([[0.5, 0.5], [0.5, 0.5], [0.0, 0.0]])
    res = simulate(w, close, np.zeros(2), 365)
    assert res.gross_returns[0] == pytest.approx(0.5 * 0.10)
    # after +10 % on A the held weights are 0.55/1.05 and 0.5/1.05; rebalancing to 0.5/0.5 trades
    drift = np.array([0.55, 0.5]) / 1.05
    assert res.turnover[1] == pytest.approx(np.abs(np.array([0.5, 0.5]) - drift).sum())
    assert res.gross_returns[1] == pytest.approx(0.5 * -0.1 + 0.5 * 0.1)
    assert res.equity[-1] == pytest.approx(1.05 * 1.0)


def test_buy_and_hold_that_drifts_pays_only_at_entry() -> None:
    rng = np.random.default_rng(0)
    close = 100 * np.cumprod(1 + rng.normal(0, 0.01, size=(50, 3)), axis=0)
    value = close / close[0] / 3  # a third in each, never rebalanced
    w = value / value.sum(axis=1, keepdims=True)
    res = simulate(w, close, np.full(3, 0.001), 365)
    assert res.costs[0] == pytest.approx(0.001)
    assert np.allclose(res.costs[1:], 0.0, atol=1e-12)
    assert res.equity[-1] == pytest.approx(0.999 * (close[-1] / close[0]).mean())


def test_a_nan_close_holds_the_position_and_earns_the_gap_later() -> None:
    close = np.array([[100.0], [NAN], [120.0], [120.0]])
    w = np.array([[1.0], [0.0], [0.0], [0.0]])  # the exit at row 1 cannot trade: held until row 2
    res = simulate(w, close, np.array([0.01]), 365)
    assert res.weights[:, 0].tolist() == [1.0, 1.0, 0.0, 0.0]
    assert res.gross_returns == pytest.approx([0.0, 0.2, 0.0])
    assert res.costs == pytest.approx([0.01, 0.0, 0.01 * 1.0])


def test_a_symbol_without_a_close_yet_cannot_be_held() -> None:
    close = np.array([[NAN, 10.0], [NAN, 10.0], [5.0, 10.0], [6.0, 10.0]])
    w = np.full((4, 2), 0.5)
    res = simulate(w, close, np.zeros(2), 365)
    assert res.weights[:2, 0].tolist() == [0.0, 0.0]
    assert res.gross_returns[2] == pytest.approx(0.5 * 0.2)


def test_short_earns_the_negative_and_metrics() -> None:
    close = np.array([[100.0], [90.0], [81.0]])
    res = simulate(np.array([[-1.0], [-1.0], [0.0]]), close, np.zeros(1), 2)
    assert res.gross_returns[0] == pytest.approx(0.1)
    m = res.metrics()
    assert m["max_drawdown"] == pytest.approx(0.0, abs=1e-12)
    assert m["cagr"] == pytest.approx(res.equity[-1] ** (2 / 2) - 1)
    assert m["net_exposure"] == pytest.approx(-1.0) and m["gross_exposure"] == pytest.approx(1.0)


def test_drawdown_sharpe_sortino() -> None:
    close = np.array([[100.0], [110.0], [88.0], [96.8]])
    res = simulate(np.ones((4, 1)), close, np.zeros(1), 4)
    assert res.returns == pytest.approx([0.1, -0.2, 0.1])
    assert res.metrics()["max_drawdown"] == pytest.approx(0.2)
    r = np.array([0.1, -0.2, 0.1])
    assert res.metrics()["sharpe"] == pytest.approx(r.mean() / r.std(ddof=1) * 2)
    assert res.metrics()["sortino"] == pytest.approx(r.mean() / math.sqrt(0.04 / 3) * 2)


@pytest.mark.parametrize("costs, match", [(np.array([0.001, -0.001]), r"costs\[1\]"), (np.array([0.1]), "one per symbol")])
def test_bad_costs_name_the_entry(costs: np.ndarray, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        simulate(np.zeros((3, 2)), np.ones((3, 2)), costs, 365)


def test_costs_objects_are_read_through_their_rate() -> None:
    costs = [Costs(fee_bps=10, spread_bps=4, slippage_bps=3)]  # 10 + 4/2 + 3 = 15 bp one way
    res = simulate(np.array([[1.0], [1.0]]), np.ones((2, 1)), costs, 365)
    assert res.costs[0] == pytest.approx(0.0015)


def test_report_rows_carry_turnover_cost_drag_and_exposure() -> None:
    from daemon.research.portfolio_sim import exposure_frame, report_table

    close = np.full((366, 1), 100.0)
    w = np.zeros((366, 1))
    w[::2] = 0.5  # in and out every other day: 0.5 traded each day
    res = simulate(w, close, np.array([0.001]), 365)
    m = res.metrics()
    assert m["turnover_per_year"] == pytest.approx(0.5 * 365)
    assert m["cost_drag_per_year"] == pytest.approx(0.5 * 365 * 0.001)
    assert m["gross_exposure"] == pytest.approx(0.5 * 183 / 365)  # held on 183 of the 365 periods
    rows = report_table({"strategy": res, "flat": simulate(np.zeros((366, 1)), close, np.zeros(1), 365)})
    assert rows[2].startswith("| strategy | ") and "18.25%" in rows[2] and rows[3].startswith("| flat | 0.00")
    frame = exposure_frame({"strategy": res}, np.arange(366))
    assert frame["strategy.gross"][:3].tolist() == [0.5, 0.0, 0.5] and len(frame["strategy.turnover"]) == 366

"""Backtest metrics on hand-built equity curves and fills, against values computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from daemon.domain import Fill
from daemon.research import baselines, performance

DAY = 86_400_000


def _fill(side: str, price: float, amount: float, fee: float, ts: int) -> Fill:
    return Fill("t", "X/USDT", side, price, amount, fee, ts)


def test_sharpe_sortino_drawdown_by_hand() -> None:
    # start 100 → 110 → 99 → 108.9 → 108.9: returns +10 %, -10 %, +10 %, 0 % on daily bars
    equity = np.array([110.0, 99.0, 108.9, 108.9])
    r = performance.bar_returns(equity, 100.0)
    assert r == pytest.approx([0.1, -0.1, 0.1, 0.0])
    mean = 0.025
    sd = math.sqrt((0.075**2 + 0.125**2 + 0.075**2 + 0.025**2) / 3)
    assert performance.sharpe(r, DAY) == pytest.approx(mean / sd * math.sqrt(365))
    downside = math.sqrt(0.1**2 / 4)  # one negative return out of four
    assert performance.sortino(r, DAY) == pytest.approx(mean / downside * math.sqrt(365))
    assert performance.max_drawdown(equity, 100.0) == pytest.approx(0.1)  # 110 → 99
    assert performance.drawdown_series(equity) == pytest.approx([0.0, -0.1, -0.01, -0.01])
    # hourly bars annualize with sqrt(24 × 365)
    assert performance.sharpe(r, 3_600_000) == pytest.approx(mean / sd * math.sqrt(365 * 24))


def test_flat_curve_has_zero_ratios_not_nan() -> None:
    r = performance.bar_returns(np.full(5, 100.0), 100.0)
    assert performance.sharpe(r, DAY) == 0.0 and performance.sortino(r, DAY) == 0.0
    assert performance.max_drawdown(np.full(5, 100.0), 100.0) == 0.0


def test_equity_and_trade_from_fills_by_hand() -> None:
    ts = np.arange(4) * DAY
    close = np.array([100.0, 110.0, 99.0, 108.9])
    # buy 1 during bar 0 at 100 (fee 0.1), sell 1 during bar 3 at 108.9 (fee 0.1089)
    fills = [_fill("buy", 100.0, 1.0, 0.1, 0), _fill("sell", 108.9, 1.0, 0.1089, 3 * DAY + 5)]
    equity, pos = performance.equity_curve(ts, close, fills, 1000.0)
    assert equity == pytest.approx([999.9, 1009.9, 998.9, 1008.6911])
    assert pos.tolist() == [1.0, 1.0, 1.0, 0.0]
    (trade,) = performance.round_trips(fills, DAY)
    assert trade.direction == "long" and trade.bars_held == 3
    assert trade.pnl == pytest.approx(8.9 - 0.2089)
    assert trade.ret == pytest.approx((8.9 - 0.2089) / 100.0)
    perf = performance.evaluate(equity, pos, fills, [trade], 1000.0, DAY)
    assert perf.total_return == pytest.approx(0.0086911)
    assert perf.exposure == pytest.approx(0.75)
    assert perf.turnover == pytest.approx((100.0 + 108.9) / 1000.0)
    assert perf.fees_paid == pytest.approx(0.2089)
    assert perf.win_rate == 1.0 and perf.profit_factor == math.inf


def test_flip_splits_the_fee_and_makes_two_trades() -> None:
    fills = [_fill("buy", 100.0, 1.0, 0.1, 1), _fill("sell", 110.0, 2.0, 0.4, 2), _fill("buy", 105.0, 1.0, 0.2, 3)]
    long, short = performance.round_trips(fills)
    assert (long.direction, short.direction) == ("long", "short")
    assert long.pnl == pytest.approx(10.0 - 0.1 - 0.2)  # half of the flip's fee
    assert short.pnl == pytest.approx(5.0 - 0.2 - 0.2)
    perf = performance.evaluate(np.array([1.0]), np.array([0.0]), fills, [long, short], 1.0, DAY)
    assert perf.win_rate == 1.0 and perf.avg_trade_pnl == pytest.approx((9.7 + 4.6) / 2)


def test_profit_factor_and_open_position_marked_at_end() -> None:
    fills = [_fill("buy", 100.0, 1.0, 0.0, 1), _fill("sell", 90.0, 1.0, 0.0, 2), _fill("sell", 90.0, 1.0, 0.0, 3)]
    lost, open_short = performance.round_trips(fills, mark=(4, 60.0))
    assert lost.pnl == pytest.approx(-10.0) and open_short.pnl == pytest.approx(30.0)
    perf = performance.evaluate(np.array([1.0]), np.array([0.0]), fills, [lost, open_short], 1.0, DAY)
    assert perf.profit_factor == pytest.approx(3.0) and perf.win_rate == 0.5
    assert performance.round_trips(fills) == [lost]  # without a mark the open trade is not counted


def test_classification_by_hand() -> None:
    truth = np.array([0, 1, 2, 2, 2, 1])
    pred = np.array([0, 2, 2, 2, 1, 1])
    c = performance.classification(truth, pred)
    assert c["confusion"] == [[1, 0, 0], [0, 1, 1], [0, 1, 2]]
    assert c["accuracy"] == pytest.approx(4 / 6)
    assert c["macro_f1"] == pytest.approx((1.0 + 0.5 + 2 / 3) / 3)
    assert c["majority_class"] == 2
    assert c["majority_baseline"]["accuracy"] == pytest.approx(0.5)
    assert c["majority_baseline"]["macro_f1"] == pytest.approx((2 * 0.5 * 1.0 / 1.5) / 3)


def test_buy_and_hold_baseline_fills_at_the_next_open_and_pays_one_fee() -> None:
    bars = np.array([[0, 100, 100, 100, 100, 1], [DAY, 100, 121, 99, 120, 1], [2 * DAY, 120, 120, 90, 90, 1]], float)
    fills = baselines.simulate_targets(bars, baselines.buy_and_hold_target(3), 1000.0, 0.001, 0.01)
    (fill,) = fills
    assert (fill.ts, fill.side, fill.price) == (DAY, "buy", pytest.approx(101.0))  # next open + 1 % slippage
    assert fill.amount == pytest.approx(1000.0 / (101.0 * 1.001))  # price, slippage and fee spend it all
    assert fill.fee == pytest.approx(fill.amount * 101.0 * 0.001)
    equity, _ = performance.equity_curve(bars[:, 0].astype(np.int64), bars[:, 4], fills, 1000.0)
    assert equity == pytest.approx([1000.0, fill.amount * 120.0, fill.amount * 90.0])


def test_momentum_baseline_follows_the_sign_of_the_daily_return_hourly() -> None:
    hour = 3_600_000
    ts = np.arange(60) * hour
    close = np.concatenate([np.linspace(100, 130, 30), np.linspace(129, 90, 30)])
    target = baselines.momentum_target(ts, close, hour)
    assert (target[:23] == 0).all()  # no decision before a day of history
    assert target[24] == 1.0 and target[-1] == -1.0


def test_model_table_shows_no_score_without_labelled_bars() -> None:
    # A period shorter than the target horizon labels nothing: "–", not an accuracy of 0.000.
    from daemon.research.report import model_table

    empty = {"samples": 0, "accuracy": 0.0, "macro_f1": 0.0, "majority_baseline": {"accuracy": 0.0, "macro_f1": 0.0}}
    some = {"samples": 9, "accuracy": 0.5, "macro_f1": 0.4, "majority_baseline": {"accuracy": 0.6, "macro_f1": 0.25}}
    rows = model_table({"models": {"a": {"argmax": empty}, "b": {"argmax": some}}})
    assert rows[2] == "| a | 0 | – | – | – | – |"
    assert rows[3] == "| b | 9 | 0.500 | 0.400 | 0.600 | 0.250 |"


def _bars(close: list[float], step: int = DAY) -> np.ndarray:
    c = np.asarray(close, float)
    return np.column_stack([np.arange(len(c)) * step, c, c, c, c, np.ones(len(c))])


def test_baselines_hold_the_strategys_position_size() -> None:
    from daemon.research.report import BacktestResult, summarize

    bars = _bars([100, 100, 150, 150])
    result = BacktestResult("ETH/USDT", "1d", bars, [], [], [], 1000.0, 0.0, 0.0, position_fraction=0.1)
    s = summarize(result)
    assert s["buy_and_hold"]["total_return"] == pytest.approx(0.1 * 0.5)  # 10 % of equity rode +50 %
    assert s["position_fraction"] == 0.1


def test_portfolio_total_adds_each_symbols_pnl_to_one_account() -> None:
    from daemon.research.report import (
        BacktestResult,
        portfolio_summary,
        portfolio_terminal,
    )

    a = BacktestResult("ETH/USDT", "1d", _bars([100, 100, 200, 200]), [], [], [], 1000.0, 0.0, 0.0, position_fraction=0.1)
    b = BacktestResult("SOL/USDT", "1d", _bars([10, 10, 5, 5]), [], [], [], 1000.0, 0.0, 0.0, position_fraction=0.2)
    fill = Fill("f", "ETH/USDT", "buy", 100.0, 1.0, 0.0, DAY)  # the strategy: 1 ETH bought at 100
    a.fills = [fill]
    total = portfolio_summary([a, b])
    assert total["strategy"]["total_return"] == pytest.approx(100 / 1000)
    # buy-and-hold at the same sizing: +100 % on 10 % and -50 % on 20 % of one account
    assert total["buy_and_hold"]["total_return"] == pytest.approx(0.1 * 1.0 - 0.2 * 0.5)
    assert "portfolio of 2 symbols" in portfolio_terminal(total)


def test_a_model_that_failed_the_gate_is_named_in_the_summary() -> None:
    from daemon.research.backtest import gate_notes
    from daemon.research.report import gate_lines

    class Loaded:  # a loaded predictor as far as the gate is concerned: its artifact's meta
        def __init__(self, meta: dict) -> None:
            self.meta = meta

    notes = gate_notes(
        {
            "good": Loaded({"validation": {"passed": True, "why": "ok"}}),
            "bad": Loaded({"validation": {"passed": False, "why": "PSR 0.41 < 0.95"}}),
            "new": Loaded({}),
        }
    )
    assert set(notes) == {"bad", "new"}
    lines = gate_lines({"gate": notes})
    assert any("would not trade bad" in line and "PSR 0.41" in line for line in lines)

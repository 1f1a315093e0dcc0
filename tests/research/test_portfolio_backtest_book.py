"""An hourly portfolio backtest of six symbols on the bundled 2021 tape reports its book beside
the portfolio baselines sized by the same PortfolioSpec and charged the same costs, and scores
the models' predictions stored under the 1h decision bars against their own 1m targets.
Every figure is checked against a computation written here, independently of the report code."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from daemon import config
from daemon.research import backtest, baselines, replay
from daemon.research.portfolio_report import write_exposure
from daemon.research.report import iso
from tests.engine_parts import MomentumPredictor
from tests.exchange_kit import DAY_2021, TAPE_2021
from tests.research.test_replay_derived import PORTFOLIO_1H, SIX

MIN, HOUR = 60_000, 3_600_000
CAPS = {"max_weight": 0.3, "gross_cap": 1.0, "net_cap": 0.4}  # PORTFOLIO_1H's, long/short top-2 of six
TARGET = {"mode": "classification", "horizon": 60, "threshold": 0.002, "neutral_zone": 0.001}
START, END = DAY_2021 + 6 * HOUR, DAY_2021 + 30 * HOUR  # 24 hours only the 1m tape covers for XRP..LTC


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory):
    path = tmp_path_factory.mktemp("book") / "hourly.toml"
    path.write_text(PORTFOLIO_1H)
    cfg = config.load(path)
    tape = replay.load_streams(TAPE_2021, backtest.live_order(cfg), (SIX[0], "1h"))
    plan = backtest.make_plan(cfg, tape, iso(START), iso(END))
    model = MomentumPredictor("momentum", key="1h", lookback=3, k=60.0)
    model.meta = {"target": TARGET}  # type: ignore[attr-defined]
    results = backtest.run_portfolio(plan, {"momentum": model}, batch=False)
    book, runs, closes = backtest.portfolio_book(plan, results)
    return plan, results, book, runs, closes


def _within_caps(w: np.ndarray, slack: float = 1e-9) -> None:
    assert np.abs(w).max(initial=0.0) <= CAPS["max_weight"] + slack
    assert np.abs(w).sum(axis=-1).max(initial=0.0) <= CAPS["gross_cap"] + slack
    assert np.abs(w.sum(axis=-1)).max(initial=0.0) <= CAPS["net_cap"] + slack


def test_every_baseline_and_the_strategy_are_sized_by_the_same_caps(run) -> None:
    plan, results, book, runs, closes = run
    assert book["spec"]["max_weight"] == CAPS["max_weight"] and book["spec"]["net_cap"] == CAPS["net_cap"]
    assert list(book["runs"]) == ["strategy", *baselines.BASELINE_NAMES]
    ts = closes - HOUR
    assert ts.tolist() == list(range(START, END, HOUR))  # one row per decision hour of the period
    for name, res in runs.items():
        assert res.weights.shape == (24, len(SIX)), name
        if name == "strategy":
            continue
        # the targets a baseline trades to (its rebalancing rows) obey the strategy's caps exactly
        period = {"xs_momentum": 7 * 86_400_000}.get(name, 86_400_000)
        rows = baselines.rebalance_rows(ts, period, 0) if name != "buy_and_hold" else ts == START  # bought once
        _within_caps(res.weights[rows])
    assert np.abs(runs["flat"].weights).sum() == 0.0
    assert (runs["buy_and_hold"].net_exposure[0], runs["buy_and_hold"].turnover[0]) == pytest.approx((0.4, 0.4))
    assert runs["ts_momentum"].turnover.sum() > 0 and runs["xs_momentum"].turnover.sum() > 0  # a month of history is read
    # the strategy's weights, from its fills, are the targets the engine signalled, within the caps
    signalled = np.full((24, len(SIX)), np.nan)
    for j, r in enumerate(results):
        for s in r.signals:
            m = re.match(r"target weight ([-+][0-9.]+)", s["reasons"])
            assert m, s["reasons"]
            signalled[(s["bar_ts"] - START) // HOUR, j] = float(m.group(1))
    held = runs["strategy"].weights[:-1]  # the last row is not traded
    seen = np.isfinite(signalled[:-1])
    assert seen.sum() >= 10 and len({j for _, j in zip(*np.nonzero(seen))}) >= 5
    np.testing.assert_allclose(held[seen], signalled[:-1][seen], atol=0.01)
    _within_caps(held, slack=0.01)  # fills at the next open, valued at the close: 1 % of drift


def _independent(weights: np.ndarray, close: np.ndarray, rate: float) -> tuple[float, float, float]:
    """(total return, turnover, cost) of trading to `weights` at each close, written out plainly."""
    equity, turnover, cost = 1.0, 0.0, 0.0
    held = np.zeros(weights.shape[1])
    for t in range(len(close) - 1):
        trade = np.abs(weights[t] - held).sum()
        r = close[t + 1] / close[t] - 1.0
        paid = trade * rate
        equity *= 1.0 + float(weights[t] @ r) - paid
        turnover, cost = turnover + trade, cost + paid
        grown = weights[t] * (1.0 + r)
        held = grown / (1.0 + float(weights[t] @ r))
    return equity - 1.0, turnover, cost


def test_the_figures_equal_an_independent_computation(run, tmp_path: Path) -> None:
    plan, results, book, runs, closes = run
    rate = plan.cfg.broker.fee + plan.cfg.broker.slippage
    assert book["cost_rate_one_way"] == pytest.approx(rate)
    close = np.column_stack([r.bars[:, 4] for r in results])  # every symbol has all 24 hours
    years = 23 / (365 * 24)
    for name, res in runs.items():
        total, turnover, cost = _independent(res.weights, close, rate)
        m = book["runs"][name]
        assert m["total_return"] == pytest.approx(total, abs=1e-12), name
        assert m["turnover_per_year"] == pytest.approx(turnover / years, rel=1e-9), name
        assert m["cost_drag_per_year"] == pytest.approx(cost / years, rel=1e-9), name
        assert m["gross_exposure"] == pytest.approx(np.abs(res.weights[:-1]).sum(axis=1).mean(), rel=1e-9), name
    # buy-and-hold at the period's first close: 0.4 of equity spread over the six, then drift
    first = close[0]
    w0 = np.full(len(SIX), 0.4 / len(SIX))
    growth = float(w0 @ (close[-1] / first))
    assert book["runs"]["buy_and_hold"]["total_return"] == pytest.approx(growth - 0.4 - 0.4 * rate, abs=2e-4)
    # the strategy's book, measured on closes, is near the engine's own accounting from its fills
    s = results[0].cash
    engine = sum(float(np.sum([(-1 if f.side == "buy" else 1) * f.amount * f.price - f.fee for f in r.fills])) for r in results)
    marks = sum(sum((1 if f.side == "buy" else -1) * f.amount for f in r.fills) * r.bars[-1, 4] for r in results)
    assert book["runs"]["strategy"]["total_return"] == pytest.approx((engine + marks) / s, abs=0.005)
    out = tmp_path / "exposure.csv"
    write_exposure(runs, closes, out)
    lines = out.read_text().splitlines()
    assert lines[0].startswith("time,strategy.gross,strategy.net,strategy.turnover") and len(lines) == 25
    assert lines[1].startswith(iso(START + HOUR))


def test_the_terminal_prints_the_book_beside_every_baseline(run, capsys: pytest.CaptureFixture[str]) -> None:
    plan, results, book, runs, closes = run
    assert backtest.print_portfolio(results, None, plan) == 0
    out = capsys.readouterr().out.split("== portfolio ==")[1]
    assert "max_weight 0.3, gross_cap 1, net_cap 0.4, top_k 2" in out
    for label in ("strategy", "always flat", "buy-and-hold (equal weight)", "buy-and-hold (vol target)"):
        assert f"\n{label} " in out
    assert "time-series momentum" in out and "cross-sectional momentum" in out and "one-day reversal" in out
    assert "turnover / yr" in out and "cost drag / yr" in out


def test_predictions_under_1h_decision_bars_are_scored_against_their_1m_target(run) -> None:
    plan, results, book, runs, closes = run
    for r in results:
        (m,) = r.models
        assert len(m.bar_ts) == 24
        minutes = plan.tape.streams[(r.symbol, "1m")]
        minutes = minutes[minutes[:, 0] + MIN <= END]
        idx = np.searchsorted(minutes[:, 0], m.bar_ts + HOUR - MIN)  # the 1m bar closing with the decision
        assert (minutes[idx, 0] == m.bar_ts + HOUR - MIN).all()
        ahead = idx + TARGET["horizon"]
        ok = ahead < len(minutes)
        ret = minutes[np.minimum(ahead, len(minutes) - 1), 4] / minutes[idx, 4] - 1.0
        want = np.full(len(idx), -1)
        want[ok & (ret >= TARGET["threshold"])] = 2
        want[ok & (ret <= -TARGET["threshold"])] = 0
        want[ok & (np.abs(ret) <= TARGET["neutral_zone"])] = 1
        np.testing.assert_array_equal(m.truth, want)
        assert (m.truth >= 0).sum() >= 15, r.symbol  # the last hour's target runs past --to
    summary = backtest_summary(results[0])
    assert summary["models"]["momentum"]["argmax"]["samples"] == int((results[0].models[0].truth >= 0).sum()) > 0


def backtest_summary(result):
    from daemon.research.report import summarize

    return summarize(result)

"""The book of a multi-symbol backtest beside its baselines, all sized by one PortfolioSpec.

`sigd backtest` of several symbols (the portfolio strategy, or `--symbols`) reports the engine's
own accounting from its fills (daemon/research/report.py `portfolio_summary`). This module adds
the comparison issue 15 asks for: the strategy and every portfolio baseline (always-flat,
equal-weight and volatility-targeted buy-and-hold, time-series and cross-sectional momentum,
one-day reversal; daemon/research/baselines.py) measured by one simulator
(daemon/research/portfolio_sim.py) on the same decision closes, with the same costs, their
weights built by the same portfolio construction (strategies/portfolio.py) under the config's
PortfolioSpec.

- The decision rows are the closes of the decision timeframe's bars inside the period. The
  baselines' signals (30-day momentum, 30-day volatility) read the tape's bars of that
  timeframe before the period too, so a short replay still has a month of history; the book
  they trade starts flat at the period's first close, like the strategy's.
- The strategy's weights are the ones its fills produced: after the orders of decision t (they
  fill at the next price, before close t+1), position × close t / equity at close t.
- Costs: one way, the paper broker's fee + slippage on every weight traded.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from daemon.domain import Fill
from daemon.research import baselines, portfolio_sim
from daemon.research.performance import YEAR_MS

STRATEGY = "strategy"
# The baselines' signals look back 30 days (momentum, volatility): a day more of history is all they read.
HISTORY_MS = (max(baselines.MOMENTUM_DAYS, baselines.VOL_WINDOW_DAYS) + 1) * baselines.DAY_MS
RUNS = (STRATEGY, *baselines.BASELINE_NAMES)
LABELS = {
    STRATEGY: "strategy",
    "flat": "always flat",
    "buy_and_hold": "buy-and-hold (equal weight)",
    "vol_target_buy_and_hold": "buy-and-hold (vol target)",
    "ts_momentum": "time-series momentum",
    "xs_momentum": "cross-sectional momentum",
    "reversal_1d": "one-day reversal",
}
COLUMNS = (
    ("total return", "total_return", "{:+.2%}"),
    ("Sharpe", "sharpe", "{:.2f}"),
    ("max DD", "max_drawdown", "{:.2%}"),
    ("turnover / yr", "turnover_per_year", "{:.1f}"),
    ("cost drag / yr", "cost_drag_per_year", "{:.2%}"),
    ("gross exp.", "gross_exposure", "{:.2f}"),
    ("net exp.", "net_exposure", "{:.2f}"),
)


def decision_closes(
    streams: Mapping[str, np.ndarray], symbols: Sequence[str], step_ms: int, start_ms: int, end_ms: int
) -> tuple[np.ndarray, np.ndarray]:
    """(ts [T], close [T, S]): every decision bar of any symbol closing in (start_ms - HISTORY_MS,
    end_ms] (its open time), each symbol's close on it (NaN where the symbol has no bar: a gap
    stays a gap)."""
    rows = {}
    for s in symbols:
        close_ts = streams[s][:, 0].astype(np.int64) + step_ms
        rows[s] = streams[s][(close_ts > start_ms - HISTORY_MS) & (close_ts <= end_ms)]
    ts = np.unique(np.concatenate([r[:, 0].astype(np.int64) for r in rows.values()] or [np.zeros(0, dtype=np.int64)]))
    close = np.full((len(ts), len(symbols)), np.nan)
    for j, s in enumerate(symbols):
        close[np.searchsorted(ts, rows[s][:, 0].astype(np.int64)), j] = rows[s][:, 4]
    return ts, close


def held_weights(ts: np.ndarray, close: np.ndarray, step_ms: int, fills: Sequence[Sequence[Fill]], cash: float) -> np.ndarray:
    """[T, S] the weights the strategy's fills gave it after each decision: fills before the
    close of the next decision bar, valued at this decision's close (a missing close: the last one)."""
    t_n, s_n = close.shape
    out = np.zeros((t_n, s_n))
    marks = np.full(s_n, np.nan)
    amount = np.zeros(s_n)
    ordered = sorted(((f.ts, j, f) for j, fs in enumerate(fills) for f in fs), key=lambda x: (x[0], x[1]))
    k = 0
    for t in range(t_n):
        until = int(ts[t]) + 2 * step_ms  # decision t's orders fill after close t, before close t+1
        while k < len(ordered) and ordered[k][0] < until:
            _, j, f = ordered[k]
            sign = 1.0 if f.side == "buy" else -1.0
            amount[j] += sign * f.amount
            cash -= sign * f.amount * f.price + f.fee
            k += 1
        marks = np.where(np.isfinite(close[t]), close[t], marks)
        value = amount * np.nan_to_num(marks)
        equity = cash + float(value.sum())
        out[t] = value / equity if equity > 0 else 0.0
    return out


def book_results(
    ts: np.ndarray,
    close: np.ndarray,
    first: int,
    strategy_weights: np.ndarray,
    spec: Any,
    cost_rate: float,
    step_ms: int,
) -> dict[str, portfolio_sim.PortfolioResult]:
    """{run: PortfolioResult} of the strategy's weights and of each baseline on rows `first`..
    (the period); the baselines' signals may read the rows before `first` (history)."""
    ppy = YEAR_MS / step_ms
    period = close[first:]
    costs = np.full(close.shape[1], float(cost_rate))
    out = {STRATEGY: portfolio_sim.simulate(strategy_weights, period, costs, ppy)}
    for name in baselines.BASELINE_NAMES:
        weights = baselines.baseline_weights(name, ts, close, spec, ppy, start=first)[first:]
        out[name] = portfolio_sim.simulate(weights, period, costs, ppy)
    return out


def book_summary(results: Mapping[str, portfolio_sim.PortfolioResult], spec: Any, cost_rate: float) -> dict[str, Any]:
    """The JSON of the comparison: the spec and costs every run shares, each run's metrics."""
    import dataclasses

    return {
        "spec": dataclasses.asdict(spec),
        "cost_rate_one_way": float(cost_rate),
        "runs": {name: res.metrics() for name, res in results.items()},
    }


def book_table(book: Mapping[str, Any]) -> list[str]:
    """Markdown rows: one run per row, the strategy first."""
    rows = ["| same sizing, same costs | " + " | ".join(c[0] for c in COLUMNS) + " |", "|---|" + "---:|" * len(COLUMNS)]
    for name, m in book["runs"].items():
        shown = {**m, "max_drawdown": 0.0 - m["max_drawdown"]}  # a loss, signed like the engine's line
        rows.append(f"| {LABELS.get(name, name)} | " + " | ".join(fmt.format(shown[key]) for _, key, fmt in COLUMNS) + " |")
    return rows


def write_exposure(results: Mapping[str, portfolio_sim.PortfolioResult], ts: np.ndarray, path: Path) -> None:
    """CSV of exposure over time: per decision close, each run's gross and net exposure,
    turnover and cost paid at that close."""
    from daemon.research.replay import iso

    frame = portfolio_sim.exposure_frame(dict(results), ts)
    for name, res in results.items():
        frame[f"{name}.cost"] = np.concatenate([res.costs, [0.0]])
    columns = list(frame)
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["time", *columns[1:]])
        for i in range(len(ts)):
            w.writerow([iso(int(ts[i])), *(f"{float(frame[c][i]):.6g}" for c in columns[1:])])

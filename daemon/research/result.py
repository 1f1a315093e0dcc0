"""What one backtest (or walk-forward fold) produced, and the equity curves derived from it.

The data the report (report.py), its plots (plots.py) and its HTML page (report_html.py) all
read; it imports none of them, so each of them imports it at the top.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from daemon.domain import Fill, timeframe_ms
from daemon.research import baselines, performance

CLASS_NAMES = ("SHORT", "FLAT", "LONG")


@dataclass
class ModelRun:
    """One model's predictions over the backtest period, beside the truth."""

    name: str
    version: str
    threshold: float
    bar_ts: np.ndarray  # [m] open time of each trigger bar predicted at
    probs: np.ndarray  # [m, 3] P(SHORT), P(FLAT), P(LONG)
    side: np.ndarray  # [m] side after the artifact's threshold rule
    confidence: np.ndarray  # [m]
    truth: np.ndarray  # [m] class from the artifact's target definition; -1 = unknown (horizon past the data)


@dataclass
class BacktestResult:
    """Everything one backtest (or one walk-forward fold) produced."""

    symbol: str
    timeframe: str  # the trigger timeframe; metrics are per bar of it
    bars: np.ndarray  # [n, 6] trigger bars of the period: ts, open, high, low, close, volume
    fills: list[Fill]
    signals: list[dict[str, Any]]  # rows: bar_ts, strategy, side, confidence, price, reasons
    models: list[ModelRun]
    cash: float
    fee: float
    slippage: float
    notes: dict[str, Any] = field(default_factory=dict)  # data checks, warm-up, degraded streams
    folds: list[dict[str, Any]] = field(default_factory=list)  # walk-forward fold summaries
    # the strategy's entry size (a fraction of equity): the baselines are sized the same
    position_fraction: float = 1.0
    gate: dict[str, str] = field(default_factory=dict)  # model -> why the daemon would not trade it (gate failed)

    @property
    def bar_ms(self) -> int:
        """Length of one trigger bar in ms."""
        return timeframe_ms(self.timeframe)


def curves(result: BacktestResult) -> dict[str, tuple[np.ndarray, np.ndarray, list[Fill]]]:
    """(equity, position, fills) of the strategy and of each baseline, per bar of the period.
    The baselines hold the strategy's own position size (`position_fraction` of equity), so
    their risk is the strategy's, not all equity."""
    ts, close = result.bars[:, 0].astype(np.int64), result.bars[:, 4]
    out = {"strategy": (*performance.equity_curve(ts, close, result.fills, result.cash), result.fills)}
    size = result.position_fraction
    targets = {
        "buy_and_hold": size * baselines.buy_and_hold_target(len(ts)),
        "momentum": size * baselines.momentum_target(ts, close, result.bar_ms),
    }
    for name, target in targets.items():
        fills = baselines.simulate_targets(result.bars, target, result.cash, result.fee, result.slippage)
        out[name] = (*performance.equity_curve(ts, close, fills, result.cash), fills)
    return out


def end_mark(result: BacktestResult) -> tuple[int, float] | None:
    """Where a position still open at the end is marked: the last bar's close."""
    if not len(result.bars):
        return None
    return int(result.bars[-1, 0]) + result.bar_ms, float(result.bars[-1, 4])

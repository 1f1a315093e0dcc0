"""Trading performance from fills and prices: equity curve, round-trip trades, metrics.

Everything here is a pure function of arrays and fills, so the strategy, buy-and-hold and
the momentum baseline are measured by the very same code. Returns are per bar of the
trigger timeframe; annualization uses 365 days (crypto trades every day).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from daemon.domain import Fill

YEAR_MS = 365 * 86_400_000


@dataclass(frozen=True, slots=True)
class Trade:
    """One round trip: from a flat position to a position and back to flat (or a flip)."""

    direction: str  # "long" | "short"
    entry_ts: int
    exit_ts: int
    entry_price: float  # average fill price of the entries
    exit_price: float  # average fill price of the exits
    amount: float  # largest absolute position held during the trade (base units)
    pnl: float  # net of fees, quote currency
    fees: float
    ret: float  # pnl / entry notional
    bars_held: int = 0


def equity_curve(ts: np.ndarray, close: np.ndarray, fills: Sequence[Fill], cash: float) -> tuple[np.ndarray, np.ndarray]:
    """Mark-to-market equity and position at each bar close.

    ts, close: [n] open time and close of each bar. A fill at time f belongs to the bar that
    is open at f (ts_i <= f < ts_{i+1}); the paper broker's fills carry the open time of the
    bar whose open price they fill at.
    Returns (equity [n], position [n] in base units after the bar).
    """
    n = len(ts)
    flow = np.zeros(n)  # quote cash change per bar
    delta = np.zeros(n)  # base position change per bar
    if fills:
        f_ts = np.array([f.ts for f in fills], dtype=np.int64)
        idx = np.clip(np.searchsorted(ts, f_ts, side="right") - 1, 0, n - 1)
        sign = np.array([1.0 if f.side == "buy" else -1.0 for f in fills])
        amount = np.array([f.amount for f in fills])
        price = np.array([f.price for f in fills])
        fee = np.array([f.fee for f in fills])
        np.add.at(delta, idx, sign * amount)
        np.add.at(flow, idx, -sign * amount * price - fee)
    position = np.cumsum(delta)
    equity = cash + np.cumsum(flow) + position * close
    return equity, position


def round_trips(fills: Sequence[Fill], bar_ms: int = 0, mark: tuple[int, float] | None = None) -> list[Trade]:
    """Pair fills into round trips; a fill that crosses zero closes one trade and opens the next.

    A fill's fee is split over the trades it touches in proportion to the amount each gets.
    `mark` = (ts, price): a position still open then is closed there without a fee (the
    trade is counted, as a backtest report conventionally does at its end).
    """
    trades: list[Trade] = []
    pos, cur = 0.0, None
    for f in sorted(fills, key=lambda f: f.ts):
        signed = f.amount if f.side == "buy" else -f.amount
        remaining = signed
        while abs(remaining) > 1e-12:
            if cur is None:
                cur = {
                    "dir": math.copysign(1.0, remaining),
                    "entry_ts": f.ts,
                    "in_q": 0.0,
                    "in_v": 0.0,
                    "out_q": 0.0,
                    "out_v": 0.0,
                    "fees": 0.0,
                    "max": 0.0,
                }
            adds = remaining * cur["dir"] > 0
            # an add takes the whole rest; a reduction stops at flat
            part = remaining if adds else math.copysign(min(abs(remaining), abs(pos)), remaining)
            key = "in" if adds else "out"
            cur[f"{key}_q"] += abs(part)
            cur[f"{key}_v"] += abs(part) * f.price
            cur["fees"] += f.fee * abs(part) / abs(signed)
            pos += part
            cur["max"] = max(cur["max"], abs(pos))
            remaining -= part
            if abs(pos) < 1e-12:
                trades.append(_close_trade(cur, f.ts, bar_ms))
                pos, cur = 0.0, None
    if cur is not None and mark is not None:
        cur["out_q"] += abs(pos)
        cur["out_v"] += abs(pos) * mark[1]
        trades.append(_close_trade(cur, mark[0], bar_ms))
    return trades


def _close_trade(cur: dict, exit_ts: int, bar_ms: int) -> Trade:
    d = cur["dir"]
    entry_px = cur["in_v"] / cur["in_q"]
    exit_px = cur["out_v"] / cur["out_q"]
    gross = d * (cur["out_v"] - cur["in_v"] * cur["out_q"] / cur["in_q"])
    pnl = gross - cur["fees"]
    return Trade(
        direction="long" if d > 0 else "short",
        entry_ts=cur["entry_ts"],
        exit_ts=exit_ts,
        entry_price=entry_px,
        exit_price=exit_px,
        amount=cur["max"],
        pnl=pnl,
        fees=cur["fees"],
        ret=pnl / cur["in_v"] if cur["in_v"] else 0.0,
        bars_held=(exit_ts - cur["entry_ts"]) // bar_ms if bar_ms else 0,
    )


def bar_returns(equity: np.ndarray, start: float) -> np.ndarray:
    """Simple returns per bar, the first bar measured against the starting equity."""
    prev = np.concatenate([[start], equity[:-1]])
    return equity / prev - 1.0


def sharpe(returns: np.ndarray, bar_ms: int) -> float:
    """Annualized Sharpe ratio of per-bar returns (risk-free rate 0, sample std)."""
    if len(returns) < 2:
        return 0.0
    sd = float(np.std(returns, ddof=1))
    if sd == 0.0:
        return 0.0
    return float(np.mean(returns)) / sd * math.sqrt(YEAR_MS / bar_ms)


def sortino(returns: np.ndarray, bar_ms: int) -> float:
    """Annualized Sortino ratio: mean over the root mean square of the negative returns."""
    if len(returns) < 2:
        return 0.0
    downside = math.sqrt(float(np.mean(np.minimum(returns, 0.0) ** 2)))
    if downside == 0.0:
        return 0.0
    return float(np.mean(returns)) / downside * math.sqrt(YEAR_MS / bar_ms)


def max_drawdown(equity: np.ndarray, start: float) -> float:
    """Largest peak-to-trough fall as a positive fraction of the peak (0.25 = -25 %)."""
    peak = np.maximum.accumulate(np.concatenate([[start], equity]))
    return float(np.max(1.0 - np.concatenate([[start], equity]) / peak))


def drawdown_series(equity: np.ndarray) -> np.ndarray:
    """Drawdown at each bar, as a non-positive fraction of the running peak."""
    return equity / np.maximum.accumulate(equity) - 1.0


@dataclass(frozen=True, slots=True)
class Performance:
    """The headline numbers of one equity curve and its trades."""

    bars: int
    trades: int
    exposure: float  # fraction of bars with a non-zero position
    total_return: float
    sharpe: float
    sortino: float
    max_drawdown: float
    win_rate: float | None
    profit_factor: float | None
    avg_trade: float | None  # mean net return per trade
    avg_trade_pnl: float | None  # mean net pnl per trade, quote currency
    turnover: float  # traded notional / starting equity
    fees_paid: float
    final_equity: float

    def as_dict(self) -> dict:
        """JSON-ready dict; inf becomes the string "inf"."""
        return {k: ("inf" if isinstance(v, float) and math.isinf(v) else v) for k, v in asdict(self).items()}


def evaluate(
    equity: np.ndarray, position: np.ndarray, fills: Sequence[Fill], trades: Sequence[Trade], start: float, bar_ms: int
) -> Performance:
    """All headline numbers of one run."""
    r = bar_returns(equity, start)
    pnls = np.array([t.pnl for t in trades])
    gains, losses = pnls[pnls > 0].sum(), -pnls[pnls < 0].sum()
    pf = None if not len(pnls) else (float(gains / losses) if losses > 0 else math.inf)
    return Performance(
        bars=len(equity),
        trades=len(trades),
        exposure=float(np.mean(np.abs(position) > 1e-12)) if len(position) else 0.0,
        total_return=float(equity[-1] / start - 1.0) if len(equity) else 0.0,
        sharpe=sharpe(r, bar_ms),
        sortino=sortino(r, bar_ms),
        max_drawdown=max_drawdown(equity, start),
        win_rate=float(np.mean(pnls > 0)) if len(pnls) else None,
        profit_factor=pf,
        avg_trade=float(np.mean([t.ret for t in trades])) if trades else None,
        avg_trade_pnl=float(pnls.mean()) if len(pnls) else None,
        turnover=float(sum(f.amount * f.price for f in fills) / start),
        fees_paid=float(sum(f.fee for f in fills)),
        final_equity=float(equity[-1]) if len(equity) else start,
    )


def trade_rows(trades: Iterable[Trade]) -> list[dict]:
    """Trades as dict rows for CSV."""
    return [asdict(t) for t in trades]


def classification(truth: np.ndarray, pred: np.ndarray, n_classes: int = 3) -> dict:
    """Accuracy, macro-F1 and confusion matrix (rows = truth, columns = prediction), beside
    the same numbers for always predicting the majority class of `truth`."""
    truth, pred = np.asarray(truth, dtype=np.int64), np.asarray(pred, dtype=np.int64)
    majority = int(np.bincount(truth, minlength=n_classes).argmax()) if len(truth) else 1
    return {
        "samples": int(len(truth)),
        **_scores(truth, pred, n_classes),
        "majority_class": majority,
        "majority_baseline": _scores(truth, np.full_like(truth, majority), n_classes),
    }


def _scores(truth: np.ndarray, pred: np.ndarray, n_classes: int) -> dict:
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(cm, (truth, pred), 1)
    tp = np.diag(cm).astype(float)
    precision = np.divide(tp, cm.sum(axis=0), out=np.zeros(n_classes), where=cm.sum(axis=0) > 0)
    recall = np.divide(tp, cm.sum(axis=1), out=np.zeros(n_classes), where=cm.sum(axis=1) > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros(n_classes), where=(precision + recall) > 0)
    present = (cm.sum(axis=0) + cm.sum(axis=1)) > 0
    return {
        "accuracy": float(tp.sum() / cm.sum()) if cm.sum() else 0.0,
        # like scikit-learn: the mean over the classes that occur in truth or prediction
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "confusion": cm.tolist(),
    }

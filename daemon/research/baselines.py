"""Baselines a strategy must beat on the same bars and the same costs.

- buy-and-hold: all equity long from the first bar, held to the end;
- momentum: every hour (of bars), go long when the close is above the close one day
  earlier, short when below; all equity, the same fee and slippage as the strategy.

Like the paper broker, a decision at a bar's close fills at the next bar's open, moved
against the order by the slippage, and pays the fee on its notional. Fills come out as `Fill`s so the baselines are measured by daemon/research/performance.py exactly
like the strategy.
"""

from __future__ import annotations

import numpy as np

from daemon.domain import Fill

DAY_MS = 86_400_000
HOUR_MS = 3_600_000


def simulate_targets(bars: np.ndarray, target: np.ndarray, cash: float, fee: float, slippage: float) -> list[Fill]:
    """Fills that move the position to `target` × equity wherever the target changes.

    bars: [n, 6] (ts, open, high, low, close, volume); target: [n] signed fraction of equity
    decided at each bar's close, filled at the next bar's open (a decision at the last bar
    has no next price and is not filled).
    """
    fills: list[Fill] = []
    pos = 0.0
    for i in np.flatnonzero(np.diff(np.concatenate([[0.0], target])) != 0):
        if i + 1 >= len(bars):
            break
        px = float(bars[i + 1, 1])
        buy = float(target[i]) * (cash + pos * px) / px > pos
        fill_px = px * (1 + slippage if buy else 1 - slippage)
        # sized so that price, slippage and fee together spend exactly the target share of equity
        qty = float(target[i]) * (cash + pos * px) / (fill_px * (1 + fee)) - pos
        if abs(qty) < 1e-12:
            continue
        fee_paid = abs(qty) * fill_px * fee
        cash -= qty * fill_px + fee_paid
        pos += qty
        fills.append(Fill(f"baseline-{i}", "", "buy" if qty > 0 else "sell", fill_px, abs(qty), fee_paid,
                          int(bars[i + 1, 0])))
    return fills


def buy_and_hold_target(n: int) -> np.ndarray:
    """Long from the first bar to the end."""
    return np.ones(n)


def momentum_target(ts: np.ndarray, close: np.ndarray, step_ms: int) -> np.ndarray:
    """Sign of the one-day return, re-decided at each full hour; flat until a day of history exists."""
    n = len(close)
    lookback = max(1, DAY_MS // step_ms)
    every = max(1, HOUR_MS // step_ms)
    target = np.zeros(n)
    held = 0.0
    for i in range(n):
        if i >= lookback and (int(ts[i]) + step_ms) % (every * step_ms) == 0:
            held = float(np.sign(close[i] - close[i - lookback]))
        target[i] = held
    return target

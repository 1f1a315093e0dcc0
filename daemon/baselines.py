"""Baselines a strategy must beat on the same bars and the same costs.

- buy-and-hold: all equity long at the first bar's close, held to the end;
- momentum: every hour (of bars), go long when the close is above the close one day
  earlier, short when below; all equity, the same fee and slippage as the strategy.

Fills come out as `Fill`s so the baselines are measured by daemon/performance.py exactly
like the strategy.
"""

from __future__ import annotations

import numpy as np

from daemon.domain import Fill

DAY_MS = 86_400_000
HOUR_MS = 3_600_000


def simulate_targets(ts: np.ndarray, close: np.ndarray, target: np.ndarray, cash: float, fee: float,
                     slippage: float, step_ms: int) -> list[Fill]:
    """Fills that move the position to `target` × equity at each bar's close where the target changes.

    ts, close, target: [n]; target in {-1, 0, 1} (fraction of equity, signed). A buy fills at
    close × (1 + slippage), a sell at close × (1 − slippage); the fee is `fee` × notional.
    """
    fills: list[Fill] = []
    pos = 0.0
    for i in np.flatnonzero(np.diff(np.concatenate([[0.0], target])) != 0):
        px = float(close[i])
        equity = cash + pos * px
        want = float(target[i]) * equity / px
        qty = want - pos
        if abs(qty) < 1e-12:
            continue
        side = "buy" if qty > 0 else "sell"
        fill_px = px * (1 + slippage if qty > 0 else 1 - slippage)
        fee_paid = abs(qty) * fill_px * fee
        cash -= qty * fill_px + fee_paid
        pos = want
        fills.append(Fill(f"baseline-{i}", "", side, fill_px, abs(qty), fee_paid, int(ts[i]) + step_ms))
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

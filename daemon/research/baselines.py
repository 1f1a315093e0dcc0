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
from daemon.trading import scoring

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


# --- baselines as decisions (0 = SHORT, 1 = FLAT, 2 = LONG) with class probabilities ------------
# Model selection (daemon/research/selection.py, leaderboard.py) compares a model with these at
# the same decision instants, the same holding period and the same unit position size.


def persistence_sides(trailing_ret: np.ndarray, neutral_zone: float) -> np.ndarray:
    """The last horizon's move repeats: the sign of the trailing horizon return (FLAT inside
    the labels' neutral zone)."""
    return scoring.sign_sides(trailing_ret, neutral_zone)


def momentum_sides(close_ts: np.ndarray, day_ret: np.ndarray) -> np.ndarray:
    """Sign of the one-day return, re-decided at each full hour (held in between)."""
    out = np.ones(len(close_ts), dtype=np.int64)
    held = 1
    for i, (ts, r) in enumerate(zip(close_ts.tolist(), day_ret.tolist())):
        if ts % HOUR_MS == 0 and np.isfinite(r):
            held = 2 if r > 0 else 0 if r < 0 else 1
        out[i] = held
    return out


def random_sides(n: int, shares: np.ndarray, seed: int) -> np.ndarray:
    """A guess drawn at the training class shares (seeded)."""
    p = np.asarray(shares, dtype=np.float64)
    return np.random.default_rng(seed).choice(3, size=n, p=p / p.sum()).astype(np.int64)

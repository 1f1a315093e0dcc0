"""The threshold rule: model output + threshold -> SHORT / FLAT / LONG, and its optimizer.

`decide()` is the one mapping from a model's output to a side. The daemon calls it live and
`optimize()` calls the very same function while it grid-searches the threshold that
maximizes the annualized Sharpe ratio net of fees on the validation split.

Classification: scores are class probabilities [..., 3] in the order SHORT, FLAT, LONG; the
side is the most probable class if that class is SHORT or LONG and its probability is at least
the threshold, FLAT otherwise. Regression: the score is a predicted return; LONG when it is
above +threshold, SHORT when below -threshold, FLAT otherwise.

Trading model used for the Sharpe ratio: the position decided at the close of bar t
(-1, 0, +1) is held over bar t+1 and earns `position * return[t]`, where `return[t]` is
close[t+1] / close[t] - 1; every change of position pays `fee` per unit of turnover (a flip
from SHORT to LONG is two sides). Positions start flat.

Holding period (`hold`, in bars; the artifact stores it as `hold_bars`, by default the target
horizon): the targets predict the return over `horizon` bars, so a position is held for at least
`hold` bars. `next_position()` is the one rule, used by `positions()` here and by the live
strategy (strategies/confidence.py):
- flat: a LONG / SHORT decision enters; `age` counts bars since the entry bar (1 at the next bar);
- in a position: the same side or FLAT keeps it while age < hold; FLAT closes it once
  age >= hold; the opposite side flips it at once (a flip is a new entry: age restarts).
`hold = 1` is the old every-bar rule (a FLAT decision closes after one bar).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from daemon.domain import Side

Mode = Literal["classification", "regression"]
DEFAULT_FEE = 0.001  # 0.1 % per side
MINUTES_PER_YEAR = 365 * 24 * 60


def decide(scores: np.ndarray | list[float] | float, threshold: float, mode: Mode = "classification") -> np.ndarray:
    """Map model output(s) and a threshold to sides (int array of 0/1/2; shape = batch shape)."""
    s = np.asarray(scores, dtype=np.float64)
    if mode == "classification":
        if s.shape[-1:] != (3,):
            raise ValueError(f"classification scores must end in 3 classes (SHORT, FLAT, LONG), got shape {s.shape}")
        best = s.argmax(axis=-1)
        confident = np.take_along_axis(s, best[..., None], axis=-1)[..., 0] >= threshold
        return np.where(confident & (best != Side.FLAT), best, int(Side.FLAT)).astype(np.int64)
    if mode == "regression":
        out = np.full(s.shape, int(Side.FLAT), dtype=np.int64)
        out[s > threshold] = int(Side.LONG)
        out[s < -threshold] = int(Side.SHORT)
        return out
    raise ValueError(f"unknown mode {mode!r}; expected 'classification' or 'regression'")


def confidence(scores: np.ndarray, mode: Mode = "classification") -> np.ndarray:
    """The number `decide` compares with the threshold: top probability, or |predicted return|."""
    s = np.asarray(scores, dtype=np.float64)
    return s.max(axis=-1) if mode == "classification" else np.abs(s)


def next_position(current: int, age: int, side: int, hold: int) -> int:
    """The position (-1/0/+1) after deciding `side` (0/1/2) on a position `age` bars old."""
    wanted = int(side) - 1
    if current == 0 or wanted == -current:
        return wanted  # enter from flat, or flip to the opposite side at once
    if wanted == 0 and age < hold:
        return current  # FLAT does not close a position younger than the holding period
    return wanted


def positions(sides: np.ndarray, hold: int = 1) -> np.ndarray:
    """Sides (0/1/2) decided bar by bar -> positions (-1/0/+1) under the holding period `hold`."""
    if hold < 1:
        raise ValueError(f"hold must be >= 1 bar, got {hold}")
    sides = np.asarray(sides, dtype=np.int64)
    if hold == 1:
        return sides - 1  # the rule reduces to "position = side" (fast path for the grid search)
    out = np.zeros(len(sides), dtype=np.int64)
    pos, entry = 0, 0
    for t, side in enumerate(sides.tolist()):
        # age = bars since the entry bar, as the live strategy counts it (ts - last_trade_ts)
        new = next_position(pos, t - entry, side, hold)
        if new != pos:
            entry = t
        pos = out[t] = new
    return out


def net_returns(pos: np.ndarray, returns: np.ndarray, fee: float = DEFAULT_FEE) -> np.ndarray:
    """Per-bar strategy returns net of fees for positions held over the next bar."""
    pos = np.asarray(pos, dtype=np.float64)
    turnover = np.abs(np.diff(pos, prepend=0.0))
    return pos * np.asarray(returns, dtype=np.float64) - fee * turnover


def sharpe(pos: np.ndarray, returns: np.ndarray, fee: float = DEFAULT_FEE, bars_per_year: float = MINUTES_PER_YEAR) -> float:
    """Annualized Sharpe ratio of holding `pos` (-1/0/+1) over `returns`, net of fees; 0 when flat."""
    r = net_returns(pos, returns, fee)
    sd = r.std()
    if len(r) < 2 or sd == 0.0 or not math.isfinite(sd):
        return 0.0
    return float(r.mean() / sd * math.sqrt(bars_per_year))


def buy_and_hold_sharpe(returns: np.ndarray, fee: float = DEFAULT_FEE, bars_per_year: float = MINUTES_PER_YEAR) -> float:
    """Sharpe of being long the whole period (one entry fee)."""
    return sharpe(np.ones(len(returns)), returns, fee, bars_per_year)


def default_grid(scores: np.ndarray, mode: Mode) -> np.ndarray:
    """Thresholds to try: confidences 0.34..0.95, or quantiles of |predicted return|."""
    if mode == "classification":
        return np.round(np.arange(0.34, 0.951, 0.01), 4)
    mags = np.abs(np.asarray(scores, dtype=np.float64))
    return np.unique(np.quantile(mags, np.linspace(0.0, 0.99, 34))) if mags.size else np.zeros(1)


@dataclass(frozen=True)
class ThresholdResult:
    """The chosen threshold, its Sharpe, and the whole grid for the record."""

    threshold: float
    sharpe: float
    grid: tuple[tuple[float, float], ...]  # (threshold, sharpe)
    trades: int  # position changes at the chosen threshold
    hold: int = 1  # holding period (bars) the Sharpe was measured with


def optimize(
    scores: np.ndarray,
    returns: np.ndarray,
    mode: Mode = "classification",
    *,
    fee: float = DEFAULT_FEE,
    bars_per_year: float = MINUTES_PER_YEAR,
    grid: np.ndarray | None = None,
    hold: int = 1,
) -> ThresholdResult:
    """Grid-search the threshold maximizing annualized Sharpe net of fees under holding period
    `hold` (ties: the higher threshold)."""
    scores = np.asarray(scores, dtype=np.float64)
    returns = np.asarray(returns, dtype=np.float64)
    if len(scores) != len(returns):
        raise ValueError(f"{len(scores)} scores but {len(returns)} returns")
    thresholds = default_grid(scores, mode) if grid is None else np.asarray(grid, dtype=np.float64)
    table = []
    for thr in thresholds:
        pos = positions(decide(scores, float(thr), mode), hold)
        table.append((float(thr), sharpe(pos, returns, fee, bars_per_year)))
    # Highest Sharpe; among equals the highest threshold (fewest trades).
    best_thr, best_sharpe = max(table, key=lambda row: (row[1], row[0]))
    trades = int(np.count_nonzero(np.diff(positions(decide(scores, best_thr, mode), hold), prepend=0)))
    return ThresholdResult(best_thr, best_sharpe, tuple(table), trades, hold)

"""Baselines a strategy must beat on the same bars and the same costs.

- buy-and-hold: all equity long from the first bar, held to the end;
- momentum: every hour (of bars), go long when the close is above the close one day
  earlier, short when below; the same fee and slippage as the strategy.

Portfolio baselines (`baseline_weights`, at the end): always-flat, equal-weight
buy-and-hold, volatility-targeted buy-and-hold, time-series momentum, cross-sectional
momentum (top-k by 30-day return, weekly) and one-day reversal, each a weights path through
the strategy's own PortfolioSpec (strategies/portfolio.py), measured by
daemon/research/portfolio_sim.py like the strategy.

Like the paper broker, a decision at a bar's close fills at the next bar's open, moved
against the order by the slippage, and pays the fee on its notional. Fills come out as `Fill`s so the baselines are measured by daemon/research/performance.py exactly
like the strategy.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

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
        fills.append(Fill(f"baseline-{i}", "", "buy" if qty > 0 else "sell", fill_px, abs(qty), fee_paid, int(bars[i + 1, 0])))
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


# --- baselines as portfolios: weights paths through the strategy's own PortfolioSpec ---------
# Each returns a [T, S] weights path on the same decision rows as the strategy (close[t] is the
# close of decision t), sized by the SAME PortfolioSpec (strategies/portfolio.py), so that
# `portfolio_sim.simulate` measures strategy and baselines with the same caps and costs.

VOL_WINDOW_DAYS = 30  # realised volatility for sizing: the last 30 days of period returns
MOMENTUM_DAYS = 30  # time-series and cross-sectional momentum look back 30 days
DEFAULT_VOL_TARGET = 0.5  # the vol-targeted buy-and-hold's aim when the strategy sets none (crypto: ~0.6-1.0 raw)
BASELINE_NAMES = ("flat", "buy_and_hold", "vol_target_buy_and_hold", "ts_momentum", "xs_momentum", "reversal_1d")


def period_returns(close: np.ndarray) -> np.ndarray:
    """[T, S] row t = close[t] / close[t-1] - 1 on prices carried over gaps (0 in a gap and
    before the first close; the move across a gap lands on the first close after it)."""
    import pandas as pd

    carried = pd.DataFrame(np.asarray(close, dtype=np.float64)).ffill().to_numpy()
    out = np.zeros_like(carried)
    with np.errstate(invalid="ignore", divide="ignore"):
        out[1:] = carried[1:] / carried[:-1] - 1.0
    return np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)


def realised_vol(close: np.ndarray, periods: int) -> np.ndarray:
    """[T, S] per-period standard deviation of the last `periods` returns up to and including
    row t (NaN until half a window of closes exists); only closes known at t are used."""
    import pandas as pd

    px = pd.DataFrame(np.asarray(close, dtype=np.float64))
    r = px / px.ffill().shift(1) - 1.0  # NaN where this close or the previous one is missing
    return r.rolling(periods, min_periods=max(2, periods // 2)).std().to_numpy()


def trailing_return(close: np.ndarray, periods: int) -> np.ndarray:
    """[T, S] close[t] / close[t - periods] - 1 (NaN where either is missing)."""
    px = np.asarray(close, dtype=np.float64)
    out = np.full_like(px, np.nan)
    if 0 < periods < len(px):
        with np.errstate(invalid="ignore", divide="ignore"):
            out[periods:] = px[periods:] / px[:-periods] - 1.0
    return out


def every(ts: np.ndarray, period_ms: int) -> np.ndarray:
    """[T] True at the first decision of each `period_ms` bucket (UTC day, week from epoch...)."""
    bucket = np.asarray(ts, dtype=np.int64) // period_ms
    return np.concatenate([[True], bucket[1:] != bucket[:-1]]) if len(bucket) else np.zeros(0, dtype=bool)


def _only_at(scores: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Scores at the rebalance rows, NaN elsewhere: the portfolio module keeps the held weights
    where a score is NaN, so the book is held between rebalances."""
    out = np.full_like(scores, np.nan)
    out[rows] = scores[rows]
    return out


def _cross_sectional_spec(spec: Any, n_symbols: int) -> Any:
    """The strategy's spec with a top-k: its own, else a quarter of the universe (at least
    enough names to fill gross_cap under max_weight)."""
    import dataclasses
    import math as _math

    k = spec.top_k or max(1, n_symbols // 4, _math.ceil(spec.gross_cap / spec.max_weight - 1e-9))
    return dataclasses.replace(spec, top_k=min(k, n_symbols // (2 if spec.long_short else 1) or 1))


def rebalance_rows(ts: np.ndarray, period_ms: int, start: int = 0) -> np.ndarray:
    """[T] the rows a baseline rebalances at: the first of each `period_ms` bucket from row
    `start` on, and row `start` itself (where the book starts trading)."""
    rows = every(ts, period_ms)
    rows[:start] = False
    if start < len(rows):
        rows[start] = True
    return rows


def baseline_weights(
    name: str, ts: np.ndarray, close: np.ndarray, spec: Any, periods_per_year: float, start: int = 0
) -> np.ndarray:
    """[T, S] weights of the baseline `name` (BASELINE_NAMES) under the strategy's spec. Rows
    before `start` are history: the signals read them, the book is flat there and enters at
    row `start` (a backtest's period on a tape with a month before it)."""
    import dataclasses

    from strategies.portfolio import target_weights, weights_path

    px = np.asarray(close, dtype=np.float64)
    s_n = px.shape[1]
    spec.validate(s_n)
    day = max(1, round(periods_per_year / 365))  # decisions per day
    rets = period_returns(px)
    priced = np.isfinite(px)
    vol = realised_vol(px, VOL_WINDOW_DAYS * day)
    if name == "flat":
        return np.zeros_like(px)
    if name == "buy_and_hold":
        out = np.zeros_like(px)
        out[start:] = _drifting_equal_weights(px[start:], rets[start:], spec, periods_per_year, target_weights)
        return out
    if name == "vol_target_buy_and_hold":
        vt = dataclasses.replace(spec, vol_target=spec.vol_target or DEFAULT_VOL_TARGET, long_short=False)
        scores = np.where(priced & np.isfinite(vol), 1.0, np.nan)
        return weights_path(_only_at(scores, rebalance_rows(ts, DAY_MS, start)), vol, vt, periods_per_year, rets)
    if name == "ts_momentum":
        # each symbol long when its own 30-day return is up (short when down, if the spec shorts)
        trend = np.sign(trailing_return(px, MOMENTUM_DAYS * day))
        scores = np.where(priced, trend, np.nan)
        return weights_path(_only_at(scores, rebalance_rows(ts, DAY_MS, start)), vol, spec, periods_per_year, rets)
    if name == "xs_momentum":
        scores = np.where(priced, trailing_return(px, MOMENTUM_DAYS * day), np.nan)
        xs = _cross_sectional_spec(spec, s_n)
        return weights_path(_only_at(_centre(scores), rebalance_rows(ts, 7 * DAY_MS, start)), vol, xs, periods_per_year, rets)
    if name == "reversal_1d":
        scores = np.where(priced, -trailing_return(px, day), np.nan)
        xs = _cross_sectional_spec(spec, s_n)
        return weights_path(_only_at(_centre(scores), rebalance_rows(ts, DAY_MS, start)), vol, xs, periods_per_year, rets)
    raise ValueError(f"baseline {name!r}: unknown (known: {', '.join(BASELINE_NAMES)})")


def _centre(scores: np.ndarray) -> np.ndarray:
    """Scores ranked across the symbols of each row into (0, 1], so a long-only top-k takes the
    k best even when all are negative (a cross-section ranks; it does not time the market)."""
    import pandas as pd

    return pd.DataFrame(scores).rank(axis=1, pct=True).to_numpy()


def _drifting_equal_weights(
    px: np.ndarray, rets: np.ndarray, spec: Any, periods_per_year: float, target_weights: Callable[..., np.ndarray]
) -> np.ndarray:
    """Equal weights (the spec's sizing of 'every symbol') bought once and left to drift; bought
    again only when the set of symbols with prices changes (a listing)."""
    from strategies.portfolio import drift

    out = np.zeros_like(px)
    held = np.zeros(px.shape[1])
    universe = np.zeros(px.shape[1], dtype=bool)
    ever = np.maximum.accumulate(np.isfinite(px), axis=0)
    long_only = _long_only(spec)
    for t in range(len(px)):
        if t:
            held = drift(held, rets[t])
        if (ever[t] != universe).any():
            universe = ever[t]
            held = target_weights(np.where(universe, 1.0, np.nan), np.zeros(px.shape[1]), None, long_only, periods_per_year)
        out[t] = held
    return out


def _long_only(spec: Any) -> Any:
    import dataclasses

    return dataclasses.replace(
        spec, long_short=False, top_k=None, vol_target=None, no_trade_band=0.0, turnover_penalty=0.0, min_score=0.0
    )


def baseline_results(
    ts: np.ndarray, close: np.ndarray, spec: Any, costs: Any, periods_per_year: float, names: Sequence[str] = BASELINE_NAMES
) -> dict[str, Any]:
    """{name: PortfolioResult} of each baseline, simulated with the strategy's costs."""
    from daemon.research.portfolio_sim import simulate

    return {n: simulate(baseline_weights(n, ts, close, spec, periods_per_year), close, costs, periods_per_year) for n in names}

"""Portfolio construction: per-symbol scores and the weights held now in, target weights out.

One module for research, backtest and the live daemon, so what was measured is what trades.
Pure numpy over arrays indexed by symbol (shape (S,)); no I/O, no clock.

Conventions:
- A weight is a signed fraction of portfolio equity (0.1 = a long worth 10 % of equity).
- A score is "bigger is more bullish", centred on 0: an expected return, or P(long) - P(short).
  A NaN score means the model has nothing to say about that symbol this cycle (no bar, a
  gap): its weight is kept as it is, since it cannot be traded on information it lacks.
- Volatility is the standard deviation of one period's return at the decision timeframe;
  `vol_target` is annualised with `periods_per_year`.

The steps, in order (each documented at its function):
  select (top-k / threshold) -> size (equal or volatility-targeted) -> per-symbol cap
  -> gross and net caps -> turnover penalty (partial move) -> no-trade band -> caps again.
Exits are never blocked: a symbol whose target is 0 is always taken to 0, band or not.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np

# Weights closer than this to each other are the same weight (float noise, not a trade).
WEIGHT_EPSILON = 1e-12


class PortfolioError(ValueError):
    """A portfolio setting that cannot work; `key` names it."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key


@dataclass(frozen=True)
class PortfolioSpec:
    """How scores become weights. Every field is a config key of the same name."""

    long_short: bool = False  # False: long-only; True: longs from the top, shorts from the bottom
    top_k: int | None = None  # symbols per side; None: every symbol whose score passes min_score
    max_weight: float = 0.25  # cap on |weight| of one symbol
    gross_cap: float = 1.0  # cap on sum |weight| (the book's size when fully invested)
    net_cap: float = 1.0  # cap on |sum weight| (above gross_cap it never binds)
    vol_target: float | None = None  # annualised volatility the book aims at; None: equal weights
    no_trade_band: float = 0.0  # a move smaller than this (in weight) is not made
    turnover_penalty: float = 0.0  # >= 0: move 1 / (1 + penalty) of the way to the target
    min_score: float = 0.0  # a long needs score > min_score, a short score < -min_score

    def validate(self, n_symbols: int | None = None) -> None:
        """Raise PortfolioError naming the key of the first setting that cannot work."""
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise PortfolioError(f.name, f"must be a finite number, got {value!r}")
        if not 0.0 < self.max_weight <= 1.0:
            raise PortfolioError("max_weight", f"must be in (0, 1], got {self.max_weight}")
        if self.gross_cap <= 0.0:
            raise PortfolioError("gross_cap", f"must be > 0, got {self.gross_cap}")
        if self.net_cap < 0.0:
            raise PortfolioError("net_cap", f"must be >= 0, got {self.net_cap}")
        if self.vol_target is not None and self.vol_target <= 0.0:
            raise PortfolioError("vol_target", f"must be > 0 (or unset), got {self.vol_target}")
        if self.no_trade_band < 0.0:
            raise PortfolioError("no_trade_band", f"must be >= 0, got {self.no_trade_band}")
        if self.turnover_penalty < 0.0:
            raise PortfolioError("turnover_penalty", f"must be >= 0, got {self.turnover_penalty}")
        if self.min_score < 0.0:
            raise PortfolioError("min_score", f"must be >= 0, got {self.min_score}")
        if self.top_k is not None:
            if self.top_k < 1:
                raise PortfolioError("top_k", f"must be >= 1 (or unset), got {self.top_k}")
            if n_symbols is not None and self.top_k * (2 if self.long_short else 1) > n_symbols:
                per = "2 x top_k" if self.long_short else "top_k"
                raise PortfolioError(
                    "top_k",
                    f"{per} = {self.top_k * (2 if self.long_short else 1)} is larger than the universe ({n_symbols} symbols)",
                )
        # Weights that cannot be met: the per-symbol caps of the most symbols that can be held
        # sum below the book's size, so the book could never be as large as gross_cap says.
        most = self.top_k * (2 if self.long_short else 1) if self.top_k is not None else n_symbols
        if most is not None and most * self.max_weight < self.gross_cap - WEIGHT_EPSILON:
            raise PortfolioError(
                "max_weight",
                f"{most} symbols x max_weight {self.max_weight} = {most * self.max_weight:g} is below gross_cap {self.gross_cap}: "
                "the target cannot be met (raise max_weight or top_k, or lower gross_cap)",
            )


@dataclass(frozen=True)
class Costs:
    """Trading costs of one symbol, in basis points of traded notional, one way."""

    fee_bps: float = 10.0  # exchange fee (Binance spot taker: 10 bp)
    spread_bps: float = 0.0  # full bid-ask spread; a market order pays half of it
    slippage_bps: float = 0.0  # impact beyond the touch

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not math.isfinite(value) or value < 0.0:
                raise PortfolioError(f.name, f"must be a finite number >= 0 (basis points), got {value!r}")

    @property
    def rate(self) -> float:
        """Cost as a fraction of the notional traded (one way)."""
        return (self.fee_bps + self.spread_bps / 2.0 + self.slippage_bps) / 10_000.0


def cost_rates(costs: list[Costs] | tuple[Costs, ...]) -> np.ndarray:
    """(S,) one-way cost fractions from per-symbol Costs."""
    return np.array([c.rate for c in costs], dtype=np.float64)


def turnover(current: np.ndarray, target: np.ndarray) -> float:
    """Sum of |weight change|: the fraction of equity traded by a rebalance."""
    return float(np.abs(np.nan_to_num(target) - np.nan_to_num(current)).sum())


def rebalance_cost(current: np.ndarray, target: np.ndarray, rates: np.ndarray) -> float:
    """Cost of moving from current to target weights, as a fraction of equity."""
    return float((np.abs(np.nan_to_num(target) - np.nan_to_num(current)) * rates).sum())


def drift(weights: np.ndarray, returns: np.ndarray) -> np.ndarray:
    """Weights after one period of returns (prices move, positions do not).

    A NaN return (no bar) counts as 0: the position is still there, its price unknown.
    """
    r = np.nan_to_num(returns)
    grown = weights * (1.0 + r)
    equity = 1.0 + float((weights * r).sum())
    if equity <= 0.0:
        # The book lost everything: nothing is left to hold.
        return np.zeros_like(weights)
    out: np.ndarray = grown / equity
    return out


def _select(scores: np.ndarray, spec: PortfolioSpec) -> tuple[np.ndarray, np.ndarray]:
    """Boolean masks (long, short) of the symbols the scores pick."""
    finite = np.isfinite(scores)
    longs = finite & (scores > spec.min_score)
    shorts = finite & (scores < -spec.min_score) if spec.long_short else np.zeros_like(finite)
    if spec.top_k is not None:
        longs = _top(scores, longs, spec.top_k)
        shorts = _top(-scores, shorts, spec.top_k)
    return longs, shorts


def _top(values: np.ndarray, mask: np.ndarray, k: int) -> np.ndarray:
    """The mask narrowed to its k largest values; ties broken by symbol order (stable)."""
    idx = np.flatnonzero(mask)
    if idx.size <= k:
        return mask
    order = idx[np.argsort(-values[idx], kind="stable")][:k]
    out = np.zeros_like(mask)
    out[order] = True
    return out


def _size(
    longs: np.ndarray, shorts: np.ndarray, vol: np.ndarray | None, spec: PortfolioSpec, periods_per_year: float
) -> np.ndarray:
    """Signed weights for the selected symbols, before caps.

    Without a volatility target each side shares its half (long/short) or all (long-only) of
    gross_cap equally. With one, each name gets weight proportional to 1 / vol, and the book is
    scaled so that its volatility, estimated as if every name were perfectly correlated
    (sum |w| vol: an upper bound, right for crypto where correlations run high), meets the target.
    """
    n = longs.size
    w = np.zeros(n, dtype=np.float64)
    sides = [(longs, 1.0), (shorts, -1.0)]
    budget = spec.gross_cap / 2.0 if spec.long_short and shorts.any() and longs.any() else spec.gross_cap
    if spec.vol_target is None or vol is None:
        for mask, sign in sides:
            if mask.any():
                w[mask] = sign * budget / int(mask.sum())
        return w
    period_vol = np.where(np.isfinite(vol) & (vol > 0.0), vol, np.nan)
    for mask, sign in sides:
        usable = mask & np.isfinite(period_vol)
        if usable.any():
            inv = 1.0 / period_vol[usable]
            w[usable] = sign * budget * inv / inv.sum()
    book_vol = float((np.abs(w) * np.nan_to_num(period_vol)).sum()) * math.sqrt(periods_per_year)
    if book_vol > 0.0:
        w *= spec.vol_target / book_vol
    return w


def _cap(w: np.ndarray, spec: PortfolioSpec) -> np.ndarray:
    """Per-symbol cap, then scale the whole book down to the gross and net caps."""
    w = np.clip(w, -spec.max_weight, spec.max_weight)
    gross = float(np.abs(w).sum())
    if gross > spec.gross_cap:
        w = w * (spec.gross_cap / gross)
    net = float(w.sum())
    if abs(net) > spec.net_cap + WEIGHT_EPSILON:
        # Shrink only the side in excess, so the book's other side keeps its size.
        heavy = w > 0 if net > 0 else w < 0
        side = float(np.abs(w[heavy]).sum())
        light = float(np.abs(w[~heavy]).sum())
        w = w.copy()
        w[heavy] *= (spec.net_cap + light) / side
    return w


def target_weights(
    scores: np.ndarray,
    current: np.ndarray,
    vol: np.ndarray | None,
    spec: PortfolioSpec,
    periods_per_year: float,
) -> np.ndarray:
    """(S,) target weights from (S,) scores, the (S,) weights held now and (S,) per-period vol."""
    scores = np.asarray(scores, dtype=np.float64)
    current = np.nan_to_num(np.asarray(current, dtype=np.float64))
    if scores.shape != current.shape or (vol is not None and np.shape(vol) != scores.shape):
        raise PortfolioError(
            "scores",
            f"shapes differ: scores {scores.shape}, current {current.shape}, vol {None if vol is None else np.shape(vol)}",
        )
    known = np.isfinite(scores)
    longs, shorts = _select(scores, spec)
    target = _cap(_size(longs, shorts, vol, spec, periods_per_year), spec)
    # No information: keep what is held (it still counts against the caps below).
    target[~known] = current[~known]
    if spec.turnover_penalty > 0.0:
        target = current + (target - current) / (1.0 + spec.turnover_penalty)
    if spec.no_trade_band > 0.0:
        small = np.abs(target - current) < spec.no_trade_band
        exiting = (np.abs(target) <= WEIGHT_EPSILON) & (np.abs(current) > WEIGHT_EPSILON)
        hold = small & ~exiting
        target[hold] = current[hold]
    # Held weights (band, unknown scores) may push the book over a cap: caps are hard limits.
    target = _cap(target, spec)
    target[np.abs(target) <= WEIGHT_EPSILON] = 0.0
    return target


def weights_path(
    scores: np.ndarray,
    vol: np.ndarray | None,
    spec: PortfolioSpec,
    periods_per_year: float,
    returns: np.ndarray | None = None,
) -> np.ndarray:
    """(T, S) target weights for (T, S) scores, decided one row after the other.

    Row t is decided at the close of bar t from the weights held then: the previous row's
    target, drifted by bar t's returns when `returns` (T, S) is given (row t's return is the
    move from close t-1 to close t). Sequential because the band and the penalty depend on
    what is held.
    """
    scores = np.asarray(scores, dtype=np.float64)
    out = np.zeros_like(scores)
    held = np.zeros(scores.shape[1], dtype=np.float64)
    for t in range(scores.shape[0]):
        if returns is not None and t > 0:
            held = drift(held, returns[t])
        held = target_weights(scores[t], held, None if vol is None else vol[t], spec, periods_per_year)
        out[t] = held
    return out

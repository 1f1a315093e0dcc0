"""A portfolio of target weights on close prices, with costs on turnover.

Conventions (one row t per decision instant, the close of bar t):

- `weights[t]` is the target decided at close t, traded at close t and held to close t+1: its
  return is Σ_s w[t, s] · r[t, s], r[t, s] = close[t+1, s] / close[t, s] - 1. A negative weight
  is a short (it earns -r); the rest of the equity (1 - Σ w) is cash at 0 %. The last row has
  no next close: it is not traded.
- Between two decisions the held weights drift with prices. Before trading at t the portfolio
  holds w⁻[t, s] = w[t-1, s] (1 + r[t-1, s]) / (1 + R_gross[t-1]); the trade is
  Δw = w[t] - w⁻[t] and costs Σ_s |Δw[t, s]| · rate_s (rate = fee + spread + slippage, one way,
  as a fraction), paid from equity in that period. So a buy-and-hold that lets its weights
  drift pays once, at entry.
- A NaN close means the symbol cannot trade at t: its weight stays at w⁻ (held, no cost), and
  its price is carried from the last close, so a gap earns 0 and the move across the gap is
  earned at the first close after it. A symbol with no close yet cannot be held at all.

Metrics: Sharpe and Sortino annualised with `periods_per_year`, maximum drawdown, CAGR,
turnover (Σ|Δw| per year), cost drag (costs per year, a fraction of equity), and gross (Σ|w|)
and net (Σ w) exposure over time.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from strategies.portfolio import drift


@dataclass(frozen=True)
class PortfolioResult:
    """Per period t (close t to close t+1, T-1 periods) and the headline numbers."""

    returns: np.ndarray  # net of costs
    gross_returns: np.ndarray  # before costs
    costs: np.ndarray  # fraction of equity paid at close t
    turnover: np.ndarray  # Σ |Δw| traded at close t
    equity: np.ndarray  # [T]: 1.0 at close 0, then after each period
    drawdown: np.ndarray  # [T]: equity / running peak - 1 (<= 0)
    weights: np.ndarray  # [T, S] the weights actually held (NaN-close symbols held, unpriced zeroed)
    gross_exposure: np.ndarray  # [T] Σ |w|
    net_exposure: np.ndarray  # [T] Σ w
    periods_per_year: float

    @property
    def years(self) -> float:
        """Length of the run in years."""
        return len(self.returns) / self.periods_per_year

    def metrics(self) -> dict[str, float]:
        """Sharpe, Sortino, max drawdown, CAGR, total return, turnover and cost drag per year,
        mean gross and net exposure."""
        r = self.returns
        years = self.years
        end = float(self.equity[-1])
        return {
            "sharpe": annualised_sharpe(r, self.periods_per_year),
            "sortino": annualised_sortino(r, self.periods_per_year),
            "max_drawdown": float(-self.drawdown.min()) if len(self.drawdown) else 0.0,
            "cagr": (end ** (1.0 / years) - 1.0) if years > 0 and end > 0 else (-1.0 if end <= 0 else 0.0),
            "total_return": end - 1.0,
            "turnover_per_year": float(self.turnover.sum() / years) if years > 0 else 0.0,
            "cost_drag_per_year": float(self.costs.sum() / years) if years > 0 else 0.0,
            "gross_exposure": float(self.gross_exposure[:-1].mean()) if len(self.gross_exposure) > 1 else 0.0,
            "net_exposure": float(self.net_exposure[:-1].mean()) if len(self.net_exposure) > 1 else 0.0,
            "periods": float(len(r)),
        }


def annualised_sharpe(r: np.ndarray, periods_per_year: float) -> float:
    """mean / sample std × sqrt(periods per year); 0 for a constant series."""
    if len(r) < 2:
        return 0.0
    sd = float(np.std(r, ddof=1))
    return float(np.mean(r)) / sd * math.sqrt(periods_per_year) if sd > 0 else 0.0


def annualised_sortino(r: np.ndarray, periods_per_year: float) -> float:
    """mean / root mean square of the negative returns × sqrt(periods per year)."""
    if len(r) < 2:
        return 0.0
    down = math.sqrt(float(np.mean(np.minimum(r, 0.0) ** 2)))
    return float(np.mean(r)) / down * math.sqrt(periods_per_year) if down > 0 else 0.0


def cost_rates(costs: Sequence[Any] | np.ndarray, n_symbols: int) -> np.ndarray:
    """(S,) one-way cost fractions from per-symbol `Costs` (their `.rate`), or rates as numbers."""
    items = list(costs) if not isinstance(costs, np.ndarray) else costs.tolist()
    if len(items) != n_symbols:
        raise ValueError(f"costs: {len(items)} entries for {n_symbols} symbols (one per symbol)")
    rates = np.array([float(c.rate) if hasattr(c, "rate") else float(c) for c in items], dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(rates) | (rates < 0))
    if len(bad):
        raise ValueError(f"costs[{int(bad[0])}]: a cost must be >= 0 (got {rates[bad[0]]})")
    return rates


def simulate(
    weights: np.ndarray, close: np.ndarray, costs: Sequence[Any] | np.ndarray, periods_per_year: float
) -> PortfolioResult:
    """The portfolio that trades to `weights` [T, S] at each close (see the module doc)."""
    w = np.asarray(weights, dtype=np.float64)
    px = np.asarray(close, dtype=np.float64)
    if w.ndim != 2 or w.shape != px.shape:
        raise ValueError(f"weights {w.shape} and close {px.shape} must both be [T, S]")
    if not np.isfinite(w).all():
        raise ValueError("weights contain NaN or inf")
    if periods_per_year <= 0:
        raise ValueError(f"periods_per_year {periods_per_year}: must be > 0")
    t_n, s_n = w.shape
    rates = cost_rates(costs, s_n)
    tradable = np.isfinite(px) & (px > 0)
    priced = np.maximum.accumulate(tradable, axis=0)  # a close seen at or before t
    carried = _ffill(np.where(tradable, px, np.nan))
    asset_r = np.zeros((max(t_n - 1, 0), s_n))
    if t_n > 1:
        with np.errstate(invalid="ignore", divide="ignore"):
            asset_r = np.where(priced[:-1], carried[1:] / carried[:-1] - 1.0, 0.0)
    held = np.zeros_like(w)
    net, gross, cost, turn = (np.zeros(max(t_n - 1, 0)) for _ in range(4))
    before = np.zeros(s_n)  # w⁻: what is held coming into close t
    for t in range(t_n - 1):
        target = np.where(tradable[t], w[t], before)  # no close: hold (cannot trade)
        target = np.where(priced[t], target, 0.0)  # never priced: cannot be held
        delta = np.abs(target - before)
        turn[t] = float(delta.sum())
        cost[t] = float(delta @ rates)
        gross[t] = float(target @ asset_r[t])
        net[t] = gross[t] - cost[t]
        held[t] = target
        before = drift(target, asset_r[t])
    if t_n:
        held[-1] = np.where(priced[-1], before, 0.0)  # the last row is not traded
    equity = np.concatenate([[1.0], np.cumprod(1.0 + net)])
    drawdown = equity / np.maximum.accumulate(equity) - 1.0
    return PortfolioResult(
        net, gross, cost, turn, equity, drawdown, held, np.abs(held).sum(axis=1), held.sum(axis=1), float(periods_per_year)
    )


def _ffill(a: np.ndarray) -> np.ndarray:
    """Forward-fill NaNs down each column (leading NaNs stay)."""
    idx = np.where(np.isfinite(a), np.arange(len(a))[:, None], 0)
    np.maximum.accumulate(idx, axis=0, out=idx)
    out = a[idx, np.arange(a.shape[1])[None, :]]
    return out


REPORT_COLUMNS = (
    ("Sharpe", "sharpe", "{:.2f}"),
    ("Sortino", "sortino", "{:.2f}"),
    ("max DD", "max_drawdown", "{:.1%}"),
    ("CAGR", "cagr", "{:+.1%}"),
    ("turnover / yr", "turnover_per_year", "{:.1f}"),
    ("cost drag / yr", "cost_drag_per_year", "{:.2%}"),
    ("gross exposure", "gross_exposure", "{:.2f}"),
    ("net exposure", "net_exposure", "{:.2f}"),
)


def report_table(results: dict[str, PortfolioResult]) -> list[str]:
    """Markdown rows: one run per row (the strategy first, then its baselines), the headline
    numbers with turnover, cost drag and mean exposure."""
    rows = ["| run | " + " | ".join(c[0] for c in REPORT_COLUMNS) + " |", "|---|" + "---:|" * len(REPORT_COLUMNS)]
    for name, res in results.items():
        m = res.metrics()
        rows.append(f"| {name} | " + " | ".join(fmt.format(m[key]) for _, key, fmt in REPORT_COLUMNS) + " |")
    return rows


def exposure_frame(results: dict[str, PortfolioResult], ts: np.ndarray) -> dict[str, np.ndarray]:
    """Columns for a CSV or a plot of exposure and turnover over time: ts, then per run its
    gross and net exposure and the turnover traded at each close (0 on the last row)."""
    out: dict[str, np.ndarray] = {"ts": np.asarray(ts, dtype=np.int64)}
    for name, res in results.items():
        out[f"{name}.gross"] = res.gross_exposure
        out[f"{name}.net"] = res.net_exposure
        out[f"{name}.turnover"] = np.concatenate([res.turnover, [0.0]])
    return out

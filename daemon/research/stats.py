"""Is a Sharpe ratio more than luck? PSR, DSR and the gate a model must pass to trade.

The Probabilistic and Deflated Sharpe Ratios (Bailey & López de Prado), their formulas and
units, live in strategies/sharpe.py, shared with the live gate; they are re-exported here.

The gate judges a CPCV distribution by the mean of its paths' returns (`pooled`): each path
trades the same T decisions with a model fitted on other data, so the mean is one tradable
book (the ensemble of the split models) observed over T decisions, not P × T. Its Sharpe under
the null has the same variance 1 / (T - 1) as one path's, so the deflation is unchanged, while
an edge gains from averaging out the split models' estimation noise. The previous rule, the
path of median Sharpe, used one path of the P and passed a planted edge less often
(docs/guides/evaluation.md, "Power calibration").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from strategies.sharpe import EULER_GAMMA, NORMAL, Moments, dsr, expected_max_sharpe, moments, psr

__all__ = ["EULER_GAMMA", "NORMAL", "Moments", "moments", "psr", "dsr", "expected_max_sharpe", "GateResult", "gate", "pooled"]
MIN_TRADES = 30  # fewer round trips than this is an anecdote, whatever its Sharpe
MIN_PSR = 0.95
MIN_DSR = 0.95


@dataclass(frozen=True)
class GateResult:
    """The verdict that travels with an artifact (its `validation` block)."""

    passed: bool
    sharpe: float  # per period
    psr: float
    dsr: float
    trades: int
    n_trials: int
    bars: int
    why: str  # what failed, or what it passed

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


def pooled(returns: Sequence[float] | np.ndarray) -> np.ndarray:
    """[T] the returns the gate judges: a 1-d series as it is; [P, T] CPCV paths as their mean
    over paths at each decision (NaN, a decision a path does not cover, left out of its mean)."""
    r = np.asarray(returns, dtype=np.float64)
    if r.ndim == 1:
        return r
    if r.ndim != 2 or r.shape[0] < 1:
        raise ValueError(f"returns: need a series [T] or CPCV paths [P, T], got shape {r.shape}")
    covered = np.isfinite(r).sum(axis=0)
    out: np.ndarray = np.where(np.isfinite(r), r, 0.0).sum(axis=0) / np.maximum(covered, 1)
    return out[covered > 0]


def gate(
    returns: Sequence[float] | np.ndarray,
    trades: int,
    n_trials: int,
    *,
    trial_sharpes: Sequence[float] | None = None,
    min_trades: int = MIN_TRADES,
    min_psr: float = MIN_PSR,
    min_dsr: float = MIN_DSR,
) -> GateResult:
    """Pass only with enough trades, PSR(0) >= min_psr and DSR >= min_dsr on out-of-sample
    returns: one series [T], or CPCV paths [P, T] judged by their mean (`pooled`, module doc).
    `trial_sharpes`: the per-period Sharpes of the configurations tried, each of the same
    statistic (for CPCV paths: the Sharpe of their mean)."""
    r = pooled(returns)
    m = moments(r) if len(r) >= 2 else Moments(0.0, 0.0, 3.0, len(r))
    p, d = psr(m), dsr(m, n_trials, trial_sharpes)
    failed = []
    if trades < min_trades:
        failed.append(f"{trades} trades < {min_trades}")
    if p < min_psr:
        failed.append(f"PSR {p:.3f} < {min_psr}")
    if d < min_dsr:
        failed.append(f"DSR {d:.3f} < {min_dsr} after {n_trials} configurations")
    why = "; ".join(failed) if failed else f"{trades} trades, PSR {p:.3f}, DSR {d:.3f} after {n_trials} configurations"
    return GateResult(not failed, m.sharpe, p, d, int(trades), int(n_trials), len(r), why)

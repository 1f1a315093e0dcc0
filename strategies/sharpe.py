"""Is a Sharpe ratio more than luck? the Probabilistic and the Deflated Sharpe Ratio.

Bailey & López de Prado:
- Probabilistic Sharpe Ratio (2012): the probability that the true Sharpe exceeds a
  benchmark SR*, given the estimate SR over T returns with skewness g3 and (non-excess)
  kurtosis g4:  PSR(SR*) = Phi( (SR - SR*) sqrt(T - 1) / sqrt(1 - g3 SR + (g4 - 1)/4 SR^2) ).
- Deflated Sharpe Ratio (2014): PSR against the Sharpe the best of N tries would reach by
  luck alone: SR0 = sqrt(V) ((1 - gamma) Phi^-1(1 - 1/N) + gamma Phi^-1(1 - 1/(N e))), gamma
  the Euler-Mascheroni constant, V the variance of the Sharpe estimates across the tries.
  Without the tries' Sharpes, V is the estimator's variance under the null (true SR = 0):
  1 / (T - 1).

Every Sharpe here is per period (per bar, not annualized): PSR and DSR are invariant to the
annualization only when both sides are in the same unit.

Shared by research (daemon/research/stats.py: the gate an artifact must pass) and the live
daemon (daemon/trading/verdict.py: the gate on a model's shadow ledger), so both judge a
record the same way. Pure: numpy and the standard library.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

EULER_GAMMA = 0.5772156649015329
NORMAL = NormalDist()


@dataclass(frozen=True)
class Moments:
    """Per-period Sharpe and the shape of the returns behind it."""

    sharpe: float
    skew: float
    kurtosis: float  # non-excess: 3 for a normal distribution
    n: int


def moments(returns: Sequence[float] | np.ndarray) -> Moments:
    """Per-period Sharpe (mean / population std), skewness and kurtosis of `returns`."""
    r = np.asarray(returns, dtype=np.float64)
    if r.ndim != 1 or len(r) < 2:
        raise ValueError(f"need at least 2 returns in a 1-d array, got shape {r.shape}")
    if not np.isfinite(r).all():
        raise ValueError("returns contain NaN or inf")
    sd = float(r.std())
    if sd == 0.0:
        return Moments(0.0, 0.0, 3.0, len(r))
    z = (r - r.mean()) / sd
    return Moments(float(r.mean()) / sd, float(np.mean(z**3)), float(np.mean(z**4)), len(r))


def psr(m: Moments, benchmark: float = 0.0) -> float:
    """Probabilistic Sharpe Ratio: P(true per-period Sharpe > benchmark)."""
    if m.n < 2:
        return 0.0
    var = 1.0 - m.skew * m.sharpe + (m.kurtosis - 1.0) / 4.0 * m.sharpe**2
    if var <= 0.0:  # extreme skew: the formula breaks down; no evidence either way
        return 0.5
    return NORMAL.cdf((m.sharpe - benchmark) * math.sqrt(m.n - 1) / math.sqrt(var))


def expected_max_sharpe(n_trials: int, variance: float) -> float:
    """The Sharpe the best of `n_trials` tries with zero true Sharpe reaches, in expectation."""
    if n_trials < 1:
        raise ValueError(f"n_trials must be >= 1, got {n_trials}")
    if n_trials == 1:
        return 0.0
    a = NORMAL.inv_cdf(1.0 - 1.0 / n_trials)
    b = NORMAL.inv_cdf(1.0 - 1.0 / (n_trials * math.e))
    return math.sqrt(variance) * ((1.0 - EULER_GAMMA) * a + EULER_GAMMA * b)


def dsr(m: Moments, n_trials: int, trial_sharpes: Sequence[float] | None = None) -> float:
    """Deflated Sharpe Ratio after `n_trials` configurations were tried.

    `trial_sharpes`: the per-period Sharpes of the tries (two or more) for their variance;
    otherwise the estimator's variance under the null, 1 / (T - 1).
    """
    if m.n < 2:
        return 0.0
    if trial_sharpes is not None and len(trial_sharpes) >= 2:
        variance = float(np.var(np.asarray(trial_sharpes, dtype=np.float64), ddof=1))
    else:
        variance = 1.0 / (m.n - 1)
    return psr(m, expected_max_sharpe(n_trials, variance))

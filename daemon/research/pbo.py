"""Probability of backtest overfitting (PBO) by combinatorially symmetric cross-validation
(CSCV; Bailey, Borwein, López de Prado & Zhu, "The Probability of Backtest Overfitting", 2015).

Input: the per-period returns of every configuration a run tried, on the same periods
(a [T, N] matrix; for CPCV results, a path's out-of-sample returns per configuration). The rows
are cut into `n_blocks` (even) contiguous blocks. For each of the C(S, S/2) ways to pick half
the blocks as in-sample (IS), the rest out-of-sample (OOS):

- the configuration with the best IS Sharpe is "the one a researcher would pick";
- its OOS Sharpe is ranked among all N configurations: relative rank w = rank / (N + 1);
- logit = ln(w / (1 - w)); below 0 means the IS winner did worse than the OOS median.

PBO is the share of splits whose logit is <= 0. All-noise configurations give about 0.5 (the
IS winner is a random draw OOS); one configuration with a real edge gives about 0.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

MAX_SPLITS = 20_000  # C(16, 8) = 12870; above this, a seeded sample of the splits


@dataclass(frozen=True)
class PBOResult:
    """PBO and what it is made of."""

    pbo: float  # share of splits where the IS winner ranks at or below the OOS median
    logits: np.ndarray  # one per split
    is_best_sharpe: np.ndarray  # per split: the IS winner's IS Sharpe (per period)
    oos_sharpe_of_best: np.ndarray  # per split: its OOS Sharpe (per period)
    degradation_slope: float  # least-squares slope of OOS on IS Sharpe of the winner (< 0: overfit)
    n_configs: int
    n_splits: int

    def to_dict(self) -> dict[str, float | int]:
        """JSON-ready summary (the arrays summarised)."""
        return {
            "pbo": self.pbo,
            "n_configs": self.n_configs,
            "n_splits": self.n_splits,
            "logit_median": float(np.median(self.logits)),
            "degradation_slope": self.degradation_slope,
            "oos_sharpe_of_best_median": float(np.median(self.oos_sharpe_of_best)),
        }


def _sharpe(total: np.ndarray, squares: np.ndarray, n: int) -> np.ndarray:
    """Per-period Sharpe from sums over n periods (population std; a constant series scores 0)."""
    mean = total / n
    var = np.maximum(squares / n - mean**2, 0.0)
    sd = np.sqrt(var)
    return np.divide(mean, sd, out=np.zeros_like(mean), where=sd > 1e-15)


def pbo(returns: np.ndarray, n_blocks: int = 16, seed: int = 0) -> PBOResult:
    """CSCV PBO of the configurations in the columns of `returns` [T, N]."""
    m = np.asarray(returns, dtype=np.float64)
    if m.ndim != 2:
        raise ValueError(f"returns must be [periods, configurations], got shape {m.shape}")
    t, n = m.shape
    if n < 2:
        raise ValueError(f"PBO needs at least 2 configurations, got {n}")
    if n_blocks < 2 or n_blocks % 2:
        raise ValueError(f"n_blocks {n_blocks}: must be even and >= 2")
    if t < 2 * n_blocks:
        raise ValueError(f"n_blocks {n_blocks}: {t} periods are too few (need >= {2 * n_blocks})")
    if not np.isfinite(m).all():
        raise ValueError("returns contain NaN or inf")
    blocks = np.array_split(np.arange(t), n_blocks)
    sums = np.stack([m[b].sum(axis=0) for b in blocks])  # [S, N]
    squares = np.stack([(m[b] ** 2).sum(axis=0) for b in blocks])
    sizes = np.array([len(b) for b in blocks])
    combos = _combinations(n_blocks, seed)
    logits, best_is, best_oos = [], [], []
    everything, everything_sq, total_n = sums.sum(axis=0), squares.sum(axis=0), int(sizes.sum())
    for chosen in combos:
        idx = list(chosen)
        is_n = int(sizes[idx].sum())
        is_sum, is_sq = sums[idx].sum(axis=0), squares[idx].sum(axis=0)
        is_sr = _sharpe(is_sum, is_sq, is_n)
        oos_sr = _sharpe(everything - is_sum, everything_sq - is_sq, total_n - is_n)
        best = int(np.argmax(is_sr))
        # rank 1 = worst OOS; ties share the mean rank
        rank = np.sum(oos_sr < oos_sr[best]) + (np.sum(oos_sr == oos_sr[best]) + 1) / 2.0
        w = rank / (n + 1)
        logits.append(math.log(w / (1.0 - w)))
        best_is.append(is_sr[best])
        best_oos.append(oos_sr[best])
    lg, bi, bo = np.array(logits), np.array(best_is), np.array(best_oos)
    slope = float(np.polyfit(bi, bo, 1)[0]) if np.ptp(bi) > 0 else 0.0
    return PBOResult(float(np.mean(lg <= 0)), lg, bi, bo, slope, n, len(lg))


def _combinations(n_blocks: int, seed: int) -> list[tuple[int, ...]]:
    """Every choice of half the blocks as IS (each split once: its complement is another
    split), or a seeded sample of MAX_SPLITS when there are more."""
    total = math.comb(n_blocks, n_blocks // 2)
    if total <= MAX_SPLITS:
        return list(itertools.combinations(range(n_blocks), n_blocks // 2))
    rng = np.random.default_rng(seed)
    return [tuple(sorted(rng.choice(n_blocks, n_blocks // 2, replace=False).tolist())) for _ in range(MAX_SPLITS)]

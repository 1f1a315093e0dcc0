"""Combinatorial purged cross-validation (CPCV, López de Prado, *Advances in Financial Machine
Learning*, ch. 12): many out-of-sample backtest paths from one history, so a configuration gets
a distribution of out-of-sample Sharpe ratios instead of one number.

The decisions (ts sorted ascending) are cut into `n_groups` contiguous groups of nearly equal
size. Every choice of `n_test_groups` of them is one split: those groups are tested, the others
train. C(N, k) splits; each group is tested in C(N-1, k-1) of them, so the test pieces assemble
into C(N-1, k-1) complete paths (`cpcv_paths`), each covering every decision exactly once.

Purge and embargo: a decision's label spans [ts, label_end_ts]. A training decision is dropped
when its label span meets the span of any tested group, widened at its end by `embargo_ms`:
test group g spans [a_g, b_g] (first decision time, last label end), and training keeps i only
if label_end_i < a_g or ts_i > b_g + embargo_ms. So no training label overlaps a test label
(purge) and no training decision starts within the embargo after a test block ends (serial
correlation across the boundary).

Why our own code and not skfolio's `CombinatorialPurgedCV`: skfolio is not installed here, and
its splitter purges by a fixed number of observations on a regular index, while our decisions
carry their own label end times (variable horizons, gaps in the tape); the rules above take
those times directly. The implementation is small (numpy only) and property-tested
(tests/research/test_cpcv.py).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Split:
    """One CPCV split: positions into the decision arrays."""

    train_idx: np.ndarray  # int64, ascending
    test_idx: np.ndarray  # int64, ascending: the union of the tested groups
    test_groups: tuple[int, ...]  # which groups are tested, ascending


def check_groups(n: int, n_groups: int, n_test_groups: int) -> None:
    """Reject a grid CPCV cannot cut (ValueError naming the setting)."""
    if n_groups < 2:
        raise ValueError(f"n_groups {n_groups}: need at least 2 groups")
    if not 1 <= n_test_groups < n_groups:
        raise ValueError(f"n_test_groups {n_test_groups}: must be >= 1 and < n_groups ({n_groups})")
    if n < n_groups:
        raise ValueError(f"n_groups {n_groups}: more groups than the {n} decisions")


def group_of(n: int, n_groups: int) -> np.ndarray:
    """The group of each of `n` decisions: contiguous, sizes differing by at most one."""
    return np.repeat(np.arange(n_groups), [len(a) for a in np.array_split(np.arange(n), n_groups)])


def cpcv_splits(ts: np.ndarray, n_groups: int, n_test_groups: int, label_end_ts: np.ndarray, embargo_ms: int) -> list[Split]:
    """Every C(n_groups, n_test_groups) split with purge and embargo (see the module doc)."""
    t = np.asarray(ts, dtype=np.int64)
    end = np.asarray(label_end_ts, dtype=np.int64)
    if t.ndim != 1 or end.shape != t.shape:
        raise ValueError(f"ts {t.shape} and label_end_ts {end.shape} must be 1-d and the same length")
    if embargo_ms < 0:
        raise ValueError(f"embargo_ms {embargo_ms}: must be >= 0")
    if len(t) > 1 and np.any(np.diff(t) < 0):
        raise ValueError("ts must be sorted ascending")
    if np.any(end < t):
        raise ValueError("label_end_ts must not be before ts")
    check_groups(len(t), n_groups, n_test_groups)
    group = group_of(len(t), n_groups)
    # span of each group: first decision to the last label end inside it
    first = np.array([t[group == g].min() for g in range(n_groups)])
    last = np.array([end[group == g].max() for g in range(n_groups)])
    out = []
    for chosen in itertools.combinations(range(n_groups), n_test_groups):
        tested = np.isin(group, chosen)
        keep = ~tested
        for g in chosen:
            keep &= (end < first[g]) | (t > last[g] + embargo_ms)
        out.append(Split(np.flatnonzero(keep), np.flatnonzero(tested), tuple(chosen)))
    return out


def n_paths(n_groups: int, n_test_groups: int) -> int:
    """How many complete backtest paths the splits assemble into: C(N-1, k-1)."""
    return math.comb(n_groups - 1, n_test_groups - 1)


def cpcv_paths(splits: list[Split], n_groups: int) -> np.ndarray:
    """[n_paths, n_groups] int: path p takes group g's out-of-sample values from split
    `paths[p, g]`: the p-th split (in split order) that tests g."""
    by_group: list[list[int]] = [[] for _ in range(n_groups)]
    for s, split in enumerate(splits):
        for g in split.test_groups:
            by_group[g].append(s)
    counts = {len(v) for v in by_group}
    if len(counts) != 1:
        raise ValueError(f"groups are tested unequally often {sorted(counts)}: not a full CPCV grid")
    return np.array(by_group, dtype=np.int64).T


def path_values(splits: list[Split], paths: np.ndarray, oos: list[np.ndarray], n: int) -> np.ndarray:
    """[n_paths, n] values per decision along each path; `oos[s]` holds split s's values at its
    `test_idx` positions (a model's out-of-sample returns, predictions, ...)."""
    n_groups = paths.shape[1]
    group = group_of(n, n_groups)
    out = np.full((len(paths), n), np.nan)
    for p, row in enumerate(paths):
        for g, s in enumerate(row.tolist()):
            idx = splits[s].test_idx
            values = np.asarray(oos[s], dtype=np.float64)
            if values.shape != idx.shape:
                raise ValueError(f"split {s}: {values.shape[0]} values for {len(idx)} test decisions")
            mine = group[idx] == g
            out[p, idx[mine]] = values[mine]
    return out


def path_sharpes(path_returns: np.ndarray, periods_per_year: float) -> np.ndarray:
    """Annualised Sharpe (mean / sample std) of each path's returns; NaNs (uncovered) left out."""
    out = []
    for r in np.atleast_2d(path_returns):
        r = r[np.isfinite(r)]
        sd = float(r.std(ddof=1)) if len(r) > 1 else 0.0
        out.append(float(r.mean()) / sd * math.sqrt(periods_per_year) if sd > 0 else 0.0)
    return np.array(out)

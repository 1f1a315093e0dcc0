"""One run's verdict: each configuration's CPCV Sharpe distribution, the gate with N counted
over every run on the data set, and the PBO across the run's configurations.

Input per configuration: its CPCV path returns, [n_paths, T] per-period returns net of costs
(daemon/research/cpcv.py: `path_values` of the split-by-split out-of-sample returns), and its
trade count. The leaderboard calls `evaluate_configs`; the pieces:

- distribution: annualised Sharpe of every path (median, 5th and 95th percentiles, min, max);
- trials: every configuration is recorded in the data set's registry
  (daemon/research/registry.py) first, so N = the distinct configurations ever tried on it,
  this run's included;
- gate (daemon/research/stats.py:gate): PSR and DSR on the mean of the configuration's CPCV
  paths, the DSR's variance taken from the same statistic over this run's configurations;
- PBO (daemon/research/pbo.py): CSCV over the configurations' mean-over-paths returns.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from daemon.research import stats
from daemon.research.cpcv import path_sharpes
from daemon.research.pbo import pbo


@dataclass
class ConfigVerdict:
    """One configuration's figures."""

    name: str
    path_sharpes: list[float]  # annualised, one per CPCV path
    median_sharpe: float
    p05: float
    p95: float
    gate: dict[str, Any]


@dataclass
class RunVerdict:
    """Every configuration, the PBO across them and the N the DSR used."""

    configs: list[ConfigVerdict]
    n_trials: int
    pbo: dict[str, Any] | None  # None with fewer than 2 configurations
    dataset: str | None
    notes: list[str] = field(default_factory=list)


def _clean(r: np.ndarray) -> np.ndarray:
    return np.nan_to_num(np.asarray(r, dtype=np.float64), nan=0.0)


def evaluate_configs(
    path_returns: Mapping[str, np.ndarray],
    trades: Mapping[str, int],
    periods_per_year: float,
    *,
    configs: Mapping[str, Mapping[str, Any]] | None = None,
    dataset: str | None = None,
    registry: Any = None,
    group: str = "",
    pbo_blocks: int = 16,
    gate: Mapping[str, Any] | None = None,
) -> RunVerdict:
    """The verdict of a run (see the module doc). Without a registry, N is this run's count."""
    if not path_returns:
        raise ValueError("no configuration to evaluate")
    names = list(path_returns)
    paths = {n: np.atleast_2d(_clean(path_returns[n])) for n in names}
    lengths = {p.shape[1] for p in paths.values()}
    if len(lengths) != 1:
        raise ValueError(f"configurations cover different periods ({sorted(lengths)} decisions): compare on the same")
    sharpes = {n: path_sharpes(paths[n], periods_per_year) for n in names}
    notes = []
    if registry is not None and dataset:
        for n in names:
            registry.record_trial(
                dataset,
                dict((configs or {}).get(n, {"name": n})),
                {"median_sharpe": float(np.median(sharpes[n])), "trades": float(trades.get(n, 0))},
                group=group,
            )
        n_trials = max(registry.trials_count(dataset), len(names))
        notes.append(f"N = {n_trials}: every configuration ever tried on data set {dataset}")
    else:
        n_trials = len(names)
        notes.append(f"N = {n_trials}: this run's configurations only (no registry)")
    per_period = [stats.moments(stats.pooled(paths[n])).sharpe for n in names]
    out = []
    for n in names:
        s = sharpes[n]
        verdict = stats.gate(
            paths[n],
            int(trades.get(n, 0)),
            n_trials,
            trial_sharpes=per_period if len(names) >= 2 else None,
            **(gate or {}),
        )
        out.append(
            ConfigVerdict(
                n,
                [float(x) for x in s],
                float(np.median(s)),
                float(np.percentile(s, 5)),
                float(np.percentile(s, 95)),
                verdict.to_dict(),
            )
        )
    overfit = None
    if len(names) >= 2:
        matrix = np.column_stack([paths[n].mean(axis=0) for n in names])
        blocks = min(pbo_blocks, 2 * (matrix.shape[0] // 4))
        if blocks >= 2:
            overfit = pbo(matrix, n_blocks=blocks - blocks % 2).to_dict()
    return RunVerdict(out, n_trials, overfit, dataset, notes)


def markdown(verdict: RunVerdict) -> list[str]:
    """Rows: one configuration each (Sharpe distribution, gate), then PBO and N."""
    rows = [
        "| configuration | CPCV paths | Sharpe median | 5 % | 95 % | PSR | DSR | gate |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for c in verdict.configs:
        g = c.gate
        rows.append(
            f"| {c.name} | {len(c.path_sharpes)} | {c.median_sharpe:.2f} | {c.p05:.2f} | {c.p95:.2f} | "
            f"{g['psr']:.3f} | {g['dsr']:.3f} | {'PASS' if g['passed'] else 'fail'} |"
        )
    rows.append("")
    if verdict.pbo is not None:
        rows.append(
            f"PBO across the {verdict.pbo['n_configs']} configurations: {verdict.pbo['pbo']:.2f} "
            f"({verdict.pbo['n_splits']} CSCV splits)."
        )
    rows += verdict.notes
    return rows

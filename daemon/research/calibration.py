"""Power calibration of the gate: plant an edge of known strength into real prices and measure
how often the gate finds it, and how often it passes noise.

The question: what is the smallest edge this data and this gate can see? The answer is a
curve (detection rate against planted annualised Sharpe) and one false-pass rate.

Recipe, per planted level and seed:
1. Real data: the hourly closes of every pair (`--data`), y[t, s] = close[t+1] / close[t] - 1,
   the next bar's return after the decision at close t.
2. Plant: a feature x = ic · y / sd_s(y) + sqrt(1 - ic²) · noise, a noisy copy of the future
   return with information coefficient ic (NaN where y is unknown). Beside it, distractors the
   model must learn to ignore: `noise_features` pure-noise columns and two real momentum
   features (1-day and 30-day return over their realised volatility) moved in time so that
   they carry no edge (`distractors`).
3. ic is chosen so that trading the planted feature itself with the model's book (the oracle)
   earns the planted annualised Sharpe on this data, net of `cost_bps` (bisection on pilot
   seeds kept apart from the seeds measured).
4. Model: ridge regression pooled over all pairs, fitted to the label over its trailing
   realised vol, trained and tested in CPCV (daemon/research/cpcv.py, purge of the one-bar
   labels, an embargo of `embargo_bars`). Its out-of-sample predictions, less their
   cross-sectional mean at each bar (a dollar-neutral book), become weights by the portfolio
   rule (long/short, the sign of the score, equal weights per side: strategies/portfolio.py
   with long_short, gross_cap 1, max_weight 1, no band), and returns net of costs on turnover.
5. The gate (daemon/research/stats.py:gate, the one every command uses: PSR and DSR >= 0.95
   after `n_trials` configurations, at least 30 trades) judges the CPCV paths: the mean of
   their returns, over the T decisions. Detected = the gate passes. The same gate on the
   oracle's returns gives the ceiling: what a model that found the plant perfectly would score.
6. Noise: planted 0 (nothing to find), and the strongest feature against the labels shuffled
   in time, so it carries nothing about what is traded. A pass there is a false pass.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from daemon import log as logging
from daemon.research import cpcv, stats
from daemon.research.baselines import realised_vol, trailing_return
from daemon.retrain import cli_args

log = logging.get("calibration")
HOUR_MS = 3_600_000
# Seeds that set ic; never measured (those are 0..seeds-1). Sixteen: one seed's oracle Sharpe
# is off by about 1 / sqrt(years); the mean of sixteen by a quarter of that.
PILOT_SEEDS = tuple(range(10_000, 10_016))


@dataclass(frozen=True)
class CalibrationSpec:
    """What a calibration run measures; every field is a flag of `sigd calibrate`."""

    sharpes: tuple[float, ...] = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0)  # planted annualised Sharpe levels
    seeds: int = 20
    n_groups: int = 6
    n_test_groups: int = 2
    embargo_bars: int = 24
    n_trials: int = 10  # the DSR's N: configurations a typical run tries
    noise_features: int = 4
    ridge: float = 1.0
    cost_bps: float = 0.0  # one-way cost on turnover (the oracle's Sharpe is net of it too)

    def validate(self) -> None:
        """ValueError naming the flag of the first setting that cannot work."""
        if not self.sharpes or any(not math.isfinite(s) or s < 0 for s in self.sharpes):
            raise ValueError(f"--sharpes {list(self.sharpes)}: need one or more planted Sharpes >= 0")
        if self.seeds < 1:
            raise ValueError(f"--seeds {self.seeds}: must be >= 1")
        if self.n_groups < 2:
            raise ValueError(f"--groups {self.n_groups}: must be >= 2")
        if not 1 <= self.n_test_groups < self.n_groups:
            raise ValueError(f"--test-groups {self.n_test_groups}: must be >= 1 and < --groups ({self.n_groups})")
        if self.embargo_bars < 0:
            raise ValueError(f"--embargo-bars {self.embargo_bars}: must be >= 0")
        if self.n_trials < 1:
            raise ValueError(f"--trials {self.n_trials}: must be >= 1")
        if self.noise_features < 0:
            raise ValueError(f"--noise-features {self.noise_features}: must be >= 0")
        if self.ridge < 0:
            raise ValueError(f"--ridge {self.ridge}: must be >= 0")
        if not math.isfinite(self.cost_bps) or self.cost_bps < 0:
            raise ValueError(f"--cost-bps {self.cost_bps}: a cost must be >= 0")


@dataclass
class Level:
    """One planted level over all seeds."""

    planted_sharpe: float  # the target
    ic: float
    oracle_sharpe: list[float] = field(default_factory=list)  # per seed: the planted feature traded itself
    model_sharpe: list[float] = field(default_factory=list)  # per seed: the mean over the CPCV paths
    passed: list[bool] = field(default_factory=list)
    oracle_passed: list[bool] = field(default_factory=list)  # the gate on the oracle's own returns: the ceiling
    psr: list[float] = field(default_factory=list)
    dsr: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        """Share of seeds the gate passed."""
        return float(np.mean(self.passed)) if self.passed else 0.0

    @property
    def oracle_rate(self) -> float:
        """Share of seeds the gate passed the oracle's own returns (no model in the way)."""
        return float(np.mean(self.oracle_passed)) if self.oracle_passed else 0.0


@dataclass
class CalibrationResult:
    """The curve, the noise row and how it was made."""

    spec: CalibrationSpec
    symbols: list[str]
    periods: int
    periods_per_year: float
    levels: list[Level]
    shuffled: Level  # the strongest feature against shuffled labels
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        lv = [{**asdict(x), "rate": x.rate, "oracle_rate": x.oracle_rate} for x in self.levels]
        return {
            "spec": asdict(self.spec),
            "symbols": self.symbols,
            "periods": self.periods,
            "periods_per_year": self.periods_per_year,
            "levels": lv,
            "shuffled": {**asdict(self.shuffled), "rate": self.shuffled.rate, "oracle_rate": self.shuffled.oracle_rate},
            "seconds": self.seconds,
        }


def forward_returns(close: np.ndarray) -> np.ndarray:
    """[T, S] close[t+1] / close[t] - 1; NaN where either close is missing (and on the last row)."""
    px = np.asarray(close, dtype=np.float64)
    y = np.full_like(px, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        y[:-1] = px[1:] / px[:-1] - 1.0
    return y


def plant(y: np.ndarray, ic: float, rng: np.random.Generator) -> np.ndarray:
    """A noisy copy of y with correlation `ic` per symbol (NaN where y is NaN)."""
    sd = np.nanstd(y, axis=0)
    z = (y - np.nanmean(y, axis=0)) / np.where(sd > 0, sd, 1.0)
    out: np.ndarray = ic * z + math.sqrt(max(0.0, 1.0 - ic * ic)) * rng.standard_normal(y.shape)
    return out


def dollar_neutral(score: np.ndarray) -> np.ndarray:
    """[T, S] each row's scores less their cross-sectional mean (NaN stays NaN). A constant shift
    of every score (a regression intercept, the market's drift) then moves no weight, so the book
    always holds both sides and never turns into a bet on the market."""
    s = np.asarray(score, dtype=np.float64)
    ok = np.isfinite(s)
    n = ok.sum(axis=1, keepdims=True)
    mean = np.where(ok, s, 0.0).sum(axis=1, keepdims=True) / np.maximum(n, 1)
    out: np.ndarray = s - mean
    return out


def long_short_weights(score: np.ndarray) -> np.ndarray:
    """[T, S] the portfolio module's long/short weights for these scores with gross_cap 1,
    max_weight 1, min_score 0 and no band: each side gets half the book in equal weights (all
    of it when the other side is empty); a NaN or 0 score holds nothing."""
    s = np.nan_to_num(score, nan=0.0)
    longs, shorts = s > 0, s < 0
    nl, ns = longs.sum(axis=1, keepdims=True), shorts.sum(axis=1, keepdims=True)
    budget = np.where((nl > 0) & (ns > 0), 0.5, 1.0)
    return np.where(longs, budget / np.maximum(nl, 1), 0.0) - np.where(shorts, budget / np.maximum(ns, 1), 0.0)


def portfolio_returns(w: np.ndarray, y: np.ndarray, rate: float) -> np.ndarray:
    """[T] Σ w y minus `rate` Σ |Δw| (weights rebalanced to target each bar)."""
    gross = np.nansum(w * np.nan_to_num(y), axis=1)
    turn = np.abs(np.diff(w, axis=0, prepend=np.zeros((1, w.shape[1])))).sum(axis=1)
    out: np.ndarray = gross - rate * turn
    return out


def annual_sharpe(r: np.ndarray, periods_per_year: float) -> float:
    """mean / sample std × sqrt(periods per year)."""
    sd = float(np.std(r, ddof=1)) if len(r) > 1 else 0.0
    return float(np.mean(r)) / sd * math.sqrt(periods_per_year) if sd > 0 else 0.0


def distractors(close: np.ndarray, day: int) -> np.ndarray:
    """[T, S, 2] the 1-day and 30-day return over realised vol × sqrt(horizon), each moved in
    time by half its pair's span (`shifted_in_time`): real features, fat tails and slow regimes
    included, that carry nothing about the labels. As of t they hold real cross-sectional
    information (reversal, momentum, listing age): a dollar-neutral ridge earned an annualised
    Sharpe of about 1 from them at planted 0 on pilot seeds, which would count as 'planted'
    edge. Shifted, the planted feature is the only edge and the curve measures it alone."""
    vol = realised_vol(close, 30 * day)
    out = []
    for h in (day, 30 * day):
        with np.errstate(invalid="ignore", divide="ignore"):
            out.append(shifted_in_time(trailing_return(close, h) / (vol * math.sqrt(h))))
    return np.stack(out, axis=-1)


def shifted_in_time(x: np.ndarray) -> np.ndarray:
    """[T, S] each column's finite values rolled by half their count, within the rows where the
    column is finite (so the gaps and listing dates stay where they are)."""
    out = np.array(x, dtype=np.float64)
    for j in range(out.shape[1]):
        rows = np.flatnonzero(np.isfinite(out[:, j]))
        out[rows, j] = np.roll(out[rows, j], len(rows) // 2)
    return out


def standardised(y: np.ndarray, close: np.ndarray, day: int) -> np.ndarray:
    """[T, S] the label over the trailing 30-day realised vol (known at t): the model's target.
    The plant is a copy of y / sd, so a fit in these units weights every pair and every regime
    alike, where a fit on raw returns is ruled by the most volatile pairs and months."""
    vol = realised_vol(close, 30 * day)
    with np.errstate(invalid="ignore", divide="ignore"):
        out: np.ndarray = np.where(vol > 0, y / vol, np.nan)
    return out


def design(planted: np.ndarray, extra: np.ndarray, n_noise: int, rng: np.random.Generator) -> np.ndarray:
    """[T, S, F] the model's inputs: the planted feature, noise columns, the distractors."""
    noise = rng.standard_normal((*planted.shape, n_noise))
    return np.concatenate([planted[..., None], noise, extra], axis=-1)


def ridge_fit(x: np.ndarray, y: np.ndarray, alpha: float) -> np.ndarray:
    """Coefficients (intercept last) of ridge regression; rows with any NaN are left out."""
    ok = np.isfinite(y) & np.isfinite(x).all(axis=1)
    xa = np.column_stack([x[ok], np.ones(int(ok.sum()))])
    reg = alpha * np.eye(xa.shape[1])
    reg[-1, -1] = 0.0  # the intercept is not shrunk
    return np.linalg.solve(xa.T @ xa + reg, xa.T @ y[ok])


def ridge_predict(x: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """Predictions (NaN where an input is NaN)."""
    out: np.ndarray = x @ beta[:-1] + beta[-1]
    return out


def cpcv_model(
    features: np.ndarray,
    y: np.ndarray,
    target: np.ndarray,
    splits: list[cpcv.Split],
    paths: np.ndarray,
    spec: CalibrationSpec,
    periods_per_year: float,
) -> tuple[list[np.ndarray], np.ndarray, list[np.ndarray], np.ndarray]:
    """(predictions per split, path Sharpes, path returns, path trade counts) of the ridge model
    in CPCV: fitted on `target`, traded (dollar-neutral, long/short) on the returns `y`."""
    t_n, s_n, f_n = features.shape
    rate = spec.cost_bps / 10_000.0
    preds = []
    for split in splits:
        tr = split.train_idx
        beta = ridge_fit(features[tr].reshape(-1, f_n), target[tr].reshape(-1), spec.ridge)
        preds.append(ridge_predict(features[split.test_idx].reshape(-1, f_n), beta).reshape(-1, s_n))
    # assemble each path's predictions per decision, then trade the path as one series
    out_sharpe, out_returns, out_trades = [], [], []
    group = cpcv.group_of(t_n, paths.shape[1])
    for p in range(len(paths)):
        score = np.full((t_n, s_n), np.nan)
        for g, s in enumerate(paths[p].tolist()):
            idx = splits[s].test_idx
            mine = group[idx] == g
            score[idx[mine]] = preds[s][mine]
        w = long_short_weights(dollar_neutral(score))
        r = portfolio_returns(w, y, rate)
        sign = np.sign(w)
        out_trades.append(int(((sign != np.vstack([np.zeros((1, s_n)), sign[:-1]])) & (sign != 0)).sum()))
        out_returns.append(r)
        out_sharpe.append(annual_sharpe(r, periods_per_year))
    return preds, np.array(out_sharpe), out_returns, np.array(out_trades)


def oracle_returns(planted: np.ndarray, y: np.ndarray, rate: float) -> np.ndarray:
    """[T] the planted feature traded itself: the model's book (dollar-neutral long/short, equal
    weights per side) on the planted feature instead of the model's predictions."""
    return portfolio_returns(long_short_weights(dollar_neutral(planted)), y, rate)


def oracle_sharpe(planted: np.ndarray, y: np.ndarray, rate: float, periods_per_year: float) -> float:
    """The annualised Sharpe of `oracle_returns`."""
    return annual_sharpe(oracle_returns(planted, y, rate), periods_per_year)


def ic_for(target: float, y: np.ndarray, rate: float, periods_per_year: float) -> float:
    """The ic whose oracle earns `target` on average over the pilot seeds (bisection; 0 for a
    target of 0)."""
    if target <= 0:
        return 0.0
    noises = [np.random.default_rng(s).standard_normal(y.shape) for s in PILOT_SEEDS]
    sd = np.nanstd(y, axis=0)
    z = (y - np.nanmean(y, axis=0)) / np.where(sd > 0, sd, 1.0)

    def sharpe_at(ic: float) -> float:
        return float(
            np.mean(
                [
                    oracle_sharpe(
                        np.where(np.isfinite(y), ic * z + math.sqrt(1 - ic * ic) * n, np.nan), y, rate, periods_per_year
                    )
                    for n in noises
                ]
            )
        )

    lo, hi = 0.0, 0.5
    if sharpe_at(hi) < target:
        raise ValueError(f"--sharpes {target}: no information coefficient up to 0.5 earns it on this data")
    for _ in range(20):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if sharpe_at(mid) < target else (lo, mid)
    return (lo + hi) / 2


@dataclass(frozen=True)
class Trial:
    """One configuration of the calibration grid: a planted level (or the shuffled labels) and
    a seed; run whole (every CPCV split) by `run_trial`, here or on a Ray worker."""

    seed: int
    level: int  # index into spec.sharpes; len(spec.sharpes) for the shuffled labels
    ic: float
    shuffled: bool
    spec: CalibrationSpec
    step_ms: int = HOUR_MS


@dataclass
class TrialResult:
    """What a trial returns: its out-of-sample predictions split by split, and the verdict."""

    trial: Trial
    split_predictions: list[np.ndarray]  # per CPCV split: [len(test_idx), S] predictions
    path_sharpes: np.ndarray
    oracle_sharpe: float
    model_sharpe: float  # of the mean over the CPCV paths (what the gate judges)
    passed: bool
    oracle_passed: bool
    psr: float
    dsr: float


def run_trial(trial: Trial, data: dict[str, np.ndarray]) -> TrialResult:
    """Plant, fit in CPCV, trade each path, gate the paths (stats.gate: their mean). `data`:
    {"ts", "close"} (shipped once to every worker by the runner)."""
    spec = trial.spec
    px = np.asarray(data["close"], dtype=np.float64)
    ppy = 365 * 86_400_000 / trial.step_ms
    y = forward_returns(px)
    decisions = np.asarray(data["ts"], dtype=np.int64) + trial.step_ms  # decided at the bar's close
    splits = cpcv.cpcv_splits(
        decisions, spec.n_groups, spec.n_test_groups, decisions + trial.step_ms, spec.embargo_bars * trial.step_ms
    )
    paths = cpcv.cpcv_paths(splits, spec.n_groups)
    rng = np.random.default_rng([trial.seed, trial.level])
    planted = np.where(np.isfinite(y), plant(y, trial.ic, rng), np.nan)
    if trial.shuffled:  # the strong feature of the real labels, traded against labels shuffled in time
        y = y[rng.permutation(len(y))]
    rate = spec.cost_bps / 10_000.0
    day = max(1, 86_400_000 // trial.step_ms)
    features = design(planted, distractors(px, day), spec.noise_features, rng)
    preds, sharpes, returns, trades = cpcv_model(features, y, standardised(y, px, day), splits, paths, spec, ppy)
    trade_count = int(np.median(trades))
    verdict = stats.gate(np.vstack(returns), trade_count, spec.n_trials)
    oracle = oracle_returns(planted, y, rate)
    return TrialResult(
        trial,
        preds,
        sharpes,
        annual_sharpe(oracle, ppy),
        annual_sharpe(np.mean(returns, axis=0), ppy),
        bool(verdict.passed),
        bool(stats.gate(oracle, trade_count, spec.n_trials).passed),
        float(verdict.psr),
        float(verdict.dsr),
    )


def calibrate(
    ts: np.ndarray,
    close: np.ndarray,
    spec: CalibrationSpec,
    step_ms: int = HOUR_MS,
    progress: Callable[[int, int, float], None] = lambda done, total, elapsed: None,
    runner: Any = None,
    chunk: int = 4,
) -> CalibrationResult:
    """The detection curve and the shuffled-label false-pass rate on these closes [T, S].
    Trials run on `runner` (daemon/retrain/runners.py; default: here, one after another),
    `chunk` at a time so that progress moves; the data reaches the workers once."""
    from daemon.retrain.runners import LocalRunner

    spec.validate()
    t0 = time.perf_counter()
    data = {"ts": np.asarray(ts, dtype=np.int64), "close": np.asarray(close, dtype=np.float64)}
    ppy = 365 * 86_400_000 / step_ms
    y = forward_returns(data["close"])
    levels = [Level(s, ic_for(s, y, spec.cost_bps / 10_000.0, ppy)) for s in spec.sharpes]
    strongest = max(levels, key=lambda lv: lv.ic)
    shuffled = Level(strongest.planted_sharpe, strongest.ic)
    trials = [Trial(seed, k, lv.ic, False, spec, step_ms) for seed in range(spec.seeds) for k, lv in enumerate(levels)]
    trials += [Trial(seed, len(levels), shuffled.ic, True, spec, step_ms) for seed in range(spec.seeds)]
    runner = runner or LocalRunner()
    for i in range(0, len(trials), chunk):
        for r in runner.map(run_trial, trials[i : i + chunk], shared=data):
            level = shuffled if r.trial.shuffled else levels[r.trial.level]
            level.oracle_sharpe.append(r.oracle_sharpe)
            level.model_sharpe.append(r.model_sharpe)
            level.passed.append(r.passed)
            level.oracle_passed.append(r.oracle_passed)
            level.psr.append(r.psr)
            level.dsr.append(r.dsr)
        progress(min(i + chunk, len(trials)), len(trials), time.perf_counter() - t0)
    log.info("calibration_done", rates=[round(lv.rate, 2) for lv in levels], false_pass=shuffled.rate)
    return CalibrationResult(spec, [], len(data["close"]), ppy, levels, shuffled, time.perf_counter() - t0)


# --- the command ---------------------------------------------------------------------------------


def table(result: CalibrationResult) -> list[str]:
    """Markdown rows: one planted level per row, then the shuffled labels."""
    rows = [
        "| planted Sharpe (ann.) | ic | oracle Sharpe (mean) | model Sharpe, mean of paths (mean) | median DSR "
        "| gate passes | gate passes on the oracle |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for lv in [*result.levels, result.shuffled]:
        name = f"{lv.planted_sharpe:.2f}" if lv is not result.shuffled else f"shuffled labels ({lv.planted_sharpe:.2f} feature)"
        rows.append(
            f"| {name} | {lv.ic:.4f} | {np.mean(lv.oracle_sharpe):.2f} | {np.mean(lv.model_sharpe):.2f} | "
            f"{np.median(lv.dsr):.3f} | {sum(lv.passed)}/{len(lv.passed)} ({lv.rate * 100:.0f} %) | "
            f"{sum(lv.oracle_passed)}/{len(lv.oracle_passed)} ({lv.oracle_rate * 100:.0f} %) |"
        )
    return rows


def plot(result: CalibrationResult, path: Path) -> Path:
    """The detection curve as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    xs = [lv.planted_sharpe for lv in result.levels]
    ax.plot(xs, [lv.rate for lv in result.levels], "o-", label="planted edge: gate passes (model)")
    ax.plot(
        xs,
        [lv.oracle_rate for lv in result.levels],
        "s--",
        ms=4,
        color="C1",
        alpha=0.8,
        label="the oracle's own returns (ceiling)",
    )
    ax.plot(
        [result.shuffled.planted_sharpe], [result.shuffled.rate], "x", ms=10, color="C3", label="shuffled labels: false passes"
    )
    ax.axhline(0.9, ls="--", lw=0.8, color="grey")
    ax.axhline(0.05, ls=":", lw=0.8, color="grey")
    ax.axvline(1.5, ls="--", lw=0.8, color="C2")
    ax.set_xlabel("planted annualised Sharpe (oracle, net of costs)")
    ax.set_ylabel("share of seeds the gate passes")
    ax.set_ylim(-0.03, 1.03)
    s = result.spec
    ax.set_title(
        f"Gate power: {len(result.symbols)} pairs, {result.periods} bars, CPCV {s.n_groups}/{s.n_test_groups}, "
        f"DSR N={s.n_trials}, {s.seeds} seeds",
        fontsize=9,
    )
    ax.legend(loc="center right", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def add_arguments(p: argparse.ArgumentParser) -> None:
    """`sigd calibrate` flags."""
    d = CalibrationSpec()
    p.add_argument("--data", required=True, help="folder of <BASE>_<QUOTE>-1h.csv.gz files (e.g. ../shared/data/hourly)")
    p.add_argument("--symbols", default="", help="comma-separated pairs (default: every pair in --data)")
    p.add_argument(
        "--from",
        dest="start",
        default=None,
        type=cli_args.iso_instant,
        help="first bar, ISO 8601 UTC (default: the data's first)",
    )
    p.add_argument(
        "--to", dest="end", default=None, type=cli_args.iso_instant, help="end, ISO 8601 UTC, exclusive (default: the data's end)"
    )
    p.add_argument("--sharpes", default=",".join(f"{s:g}" for s in d.sharpes), help="planted annualised Sharpes")
    p.add_argument("--seeds", type=int, default=d.seeds)
    p.add_argument("--groups", type=int, default=d.n_groups, help="CPCV groups")
    p.add_argument("--test-groups", type=int, default=d.n_test_groups, help="CPCV groups tested per split")
    p.add_argument("--embargo-bars", type=int, default=d.embargo_bars)
    p.add_argument("--trials", type=int, default=d.n_trials, help="the DSR's N")
    p.add_argument("--noise-features", type=int, default=d.noise_features)
    p.add_argument("--ridge", type=float, default=d.ridge)
    p.add_argument("--cost-bps", type=float, default=d.cost_bps, help="one-way cost on turnover, basis points")
    p.add_argument(
        "--runner",
        choices=("local", "ray"),
        default="local",
        help="ray: the trials as Ray tasks, the data shipped once through the object store",
    )
    p.add_argument("--address", default=None, help="a Ray cluster to join (ray://head:10001 or host:port)")
    p.add_argument("--num-cpus", type=int, default=None, help="a local Ray's CPUs")
    p.add_argument("--png", default=None, help="write the curve here (PNG)")
    p.add_argument("--json", default=None, help="write every figure here (JSON)")


def load_closes(
    data: Path, symbols: Sequence[str], start_ms: int | None, end_ms: int | None
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(ts, close [T, S], symbols) at 1h from the data set layer (daemon/research/dataset.py),
    or from the tape files directly where that layer is not installed."""
    try:
        from daemon.research.dataset import load_panel
    except ImportError:
        return _load_closes_from_tapes(data, symbols, start_ms, end_ms)
    panel = load_panel(data, "1h", list(symbols) or None, start_ms, end_ms)
    return panel.ts, panel.close, list(panel.symbols)


def _load_closes_from_tapes(
    data: Path, symbols: Sequence[str], start_ms: int | None, end_ms: int | None
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    from daemon.research.replay import discover, load_tape, tape_path

    if not data.is_dir():
        raise ValueError(f"--data: {data} is not a folder")
    have = sorted(s for s, tf in discover(data) if tf == "1h")
    wanted = list(symbols) or have
    if missing := [s for s in wanted if s not in have]:
        raise ValueError(f"--symbols: {', '.join(missing)} has no 1h file in {data}")
    if not wanted:
        raise ValueError(f"--data: {data} holds no 1h tape file")
    paths = {s: tape_path(data, s, "1h") for s in wanted}  # every one found: discover listed it
    rows = {s: load_tape(p, "1h") for s, p in paths.items() if p is not None}
    lo = min(int(r[0, 0]) for r in rows.values()) if start_ms is None else start_ms
    hi = max(int(r[-1, 0]) for r in rows.values()) + HOUR_MS if end_ms is None else end_ms
    ts = np.arange(lo - lo % HOUR_MS, hi, HOUR_MS, dtype=np.int64)
    close = np.full((len(ts), len(wanted)), np.nan)
    for j, s in enumerate(wanted):
        r = rows[s]
        i = np.searchsorted(ts, r[:, 0].astype(np.int64))
        ok = (i < len(ts)) & (ts[np.clip(i, 0, len(ts) - 1)] == r[:, 0].astype(np.int64))
        close[i[ok], j] = r[ok, 4]
    if symbols and (empty := [s for j, s in enumerate(wanted) if not np.isfinite(close[:, j]).any()]):
        raise ValueError(f"--symbols: {', '.join(empty)} has no 1h bar in the span")
    return ts, close, wanted


def calibrate_command(args: argparse.Namespace) -> int:
    """`sigd calibrate`: the detection curve on real hourly data; bad input is one line, exit 2."""
    from daemon.research.backtest import parse_iso

    logging.setup("warning", "auto")  # per-seed info lines would break the progress line
    try:
        sharpes = tuple(float(x) for x in str(args.sharpes).split(",") if x.strip())
    except ValueError:
        print(f"sigd calibrate: --sharpes {args.sharpes!r}: expected numbers separated by commas", file=sys.stderr)
        return 2
    spec = CalibrationSpec(
        sharpes,
        args.seeds,
        args.groups,
        args.test_groups,
        args.embargo_bars,
        args.trials,
        args.noise_features,
        args.ridge,
        args.cost_bps,
    )
    try:
        spec.validate()
        start = parse_iso(args.start, "--from") if args.start else None
        end = parse_iso(args.end, "--to") if args.end else None
        symbols = [s.strip() for s in args.symbols.split(",") if s.strip()]
        ts, close, names = load_closes(Path(args.data), symbols, start, end)
        if len(ts) < 10 * spec.n_groups:
            raise ValueError(f"--from/--to: {len(ts)} bars are too few for {spec.n_groups} CPCV groups")
        if np.isfinite(close).any(axis=0).sum() < 2:
            raise ValueError("--from/--to: fewer than 2 pairs have bars in the span (a long/short book needs 2)")
    except (ValueError, OSError) as exc:
        print(f"sigd calibrate: {exc}", file=sys.stderr)
        return 2

    def show(done: int, total: int, elapsed: float) -> None:
        eta = elapsed / done * (total - done)
        print(f"\r{done}/{total} configurations, {elapsed:.0f} s elapsed, ETA {eta:.0f} s", end="", file=sys.stderr, flush=True)

    try:
        from daemon.retrain.runners import make_runner

        runner = make_runner("ray" if args.address else args.runner, address=args.address, num_cpus=args.num_cpus)
        chunk = 4 if not args.address and args.runner == "local" else max(4, 2 * int(args.num_cpus or 2))
        result = calibrate(ts, close, spec, progress=show, runner=runner, chunk=chunk)
    except (ValueError, RuntimeError) as exc:
        print(f"\nsigd calibrate: {exc}", file=sys.stderr)
        return 2
    print(file=sys.stderr)
    result.symbols = names
    print(
        f"calibration: {len(names)} pairs, {result.periods} hourly bars, CPCV {spec.n_groups} groups / "
        f"{spec.n_test_groups} tested, DSR N={spec.n_trials}, cost {spec.cost_bps:g} bp, {spec.seeds} seeds, "
        f"{result.seconds:.0f} s\n"
    )
    print("\n".join(table(result)))
    if args.png:
        print(f"\nplot: {plot(result, Path(args.png))}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result.to_dict(), indent=1) + "\n")
        print(f"figures: {args.json}")
    return 0

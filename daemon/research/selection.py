"""Purged walk-forward for model selection: folds, jobs, and the scores each job returns.

A fold trains on [train_start, train_end) and is tested on [test_start, test_end), with
test_start - train_end = purge + embargo: the purge is one label horizon (no training label
can look into the test window; the tapes are cut at train_end besides), the embargo a
further pause against serial correlation. The test windows tile the end of the period.

Inside a fold, training is `pipeline.train.train` with a TrainSpec (`train_fold`): it splits its own window 70/15/15
into train / early-stopping validation / a last slice it never learns from. That last slice
is the INNER VALIDATION SLICE where the threshold is chosen (early stopping did not use it);
the test window is only ever scored with that threshold. Nothing is tuned on a test fold.

A `Job` is a frozen, picklable description of one (family, setup, fold); `run_job` runs it
anywhere (this process, a subprocess, a Ray worker) and returns plain arrays, so the fold
loop is `run_jobs(jobs, runner)` on any runner of daemon/retrain/runners.py (`runner.map`).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from daemon import log as logging
from daemon.domain import timeframe_ms
from daemon.research import baselines
from daemon.retrain.progress import Progress
from daemon.retrain.runners import LocalRunner
from daemon.trading import scoring

log = logging.get("selection")
MINUTE_MS = 60_000
HOUR_MS = 3_600_000
DAY_MS = 86_400_000
BASE_HORIZON = 15  # minutes at which the label threshold below is the training default
BASE_THRESHOLD, BASE_NEUTRAL = 0.002, 0.001
if TYPE_CHECKING:
    from daemon.research.walkforward import Fold


class Runner(Protocol):
    """What `run_jobs` needs of a runner (daemon/retrain/runners.py: LocalRunner, RayRunner)."""

    name: str

    def map(self, fn: Callable[[Job], FoldScores], items: Sequence[Job], *, progress: Progress | None = None) -> list[FoldScores]:
        """`fn` over the items, results in item order; model fits report to `progress`."""
        ...


@dataclass(frozen=True)
class Setup:
    """Where a decision is made and what it predicts: trigger timeframe and label horizon.

    `bar` is the models' sample timeframe, the unit of the horizon: 1m (the 1m files; a 1h
    trigger then decides at every 60th 1m sample) or the trigger itself (1h/4h/1d samples built
    straight from 1h files, `sigd compare --timeframe`)."""

    trigger: str  # "1m", "1h", "4h" or "1d"
    horizon: int  # label horizon in `bar` bars
    bar: str = "1m"

    def __post_init__(self) -> None:
        if self.bar != "1m" and self.bar != self.trigger:
            raise ValueError(f"setup {self.trigger}:{self.horizon}: models sampled at {self.bar} decide at {self.bar} only")
        step = self.step
        if self.horizon < step or self.horizon % step:
            raise ValueError(f"setup {self.name}: the horizon must be a multiple of the {self.trigger} trigger")

    @property
    def name(self) -> str:
        """e.g. "1h/4h"."""
        h = self.horizon_ms // MINUTE_MS
        return f"{self.trigger}/" + (f"{h // 1440}d" if h % 1440 == 0 else f"{h // 60}h" if h % 60 == 0 else f"{h}m")

    @property
    def bar_ms(self) -> int:
        """Length of one sample bar (the horizon's unit)."""
        return timeframe_ms(self.bar)

    @property
    def horizon_ms(self) -> int:
        """How far ahead the label looks."""
        return self.horizon * self.bar_ms

    @property
    def step(self) -> int:
        """Sample bars between two decisions."""
        return timeframe_ms(self.trigger) // self.bar_ms

    @property
    def step_minutes(self) -> int:
        """Minutes between two decisions."""
        return timeframe_ms(self.trigger) // MINUTE_MS

    @property
    def hold(self) -> int:
        """Holding period in decisions: a position lives at least one horizon."""
        return self.horizon // self.step

    @property
    def bars_per_year(self) -> float:
        """Decisions per year (annualizes the Sharpe)."""
        return 365 * DAY_MS / timeframe_ms(self.trigger)

    def label_thresholds(self) -> tuple[float, float]:
        """(threshold, neutral zone): the training defaults at 15 minutes, scaled by sqrt(time)."""
        scale = math.sqrt(self.horizon_ms / (BASE_HORIZON * MINUTE_MS))
        return round(BASE_THRESHOLD * scale, 6), round(BASE_NEUTRAL * scale, 6)


def parse_setups(text: Sequence[str], timeframe: str | None = None) -> list[Setup]:
    """["1m:15", "1h:240"] -> Setups (horizons in minutes, models on 1m samples); with a
    `timeframe` (--timeframe 1h|4h|1d): ["24", "72"] -> horizons in bars of it, models sampled at it.
    A clear error naming the bad item."""
    out = []
    for item in text:
        if timeframe is not None:
            try:
                out.append(Setup(timeframe, int(item), timeframe))
            except ValueError:
                raise ValueError(
                    f"--setups {item!r}: with --timeframe {timeframe} a setup is a horizon in {timeframe} bars, e.g. 24"
                ) from None
            continue
        trig, _, hor = item.partition(":")
        try:
            out.append(Setup(trig, int(hor)))
        except ValueError as exc:
            raise ValueError(f"--setups {item!r}: expected TRIGGER:HORIZON_MINUTES, e.g. 1h:240 ({exc})") from None
    return out


def plan_folds(
    start_ms: int, end_ms: int, *, folds: int, train_days: float, test_days: float, purge_ms: int, embargo_ms: int = 0
) -> list[Fold]:
    """`folds` test windows of `test_days` tiling the end of [start, end); each trains on the
    `train_days` that end purge + embargo before its test starts."""
    from daemon.research.walkforward import Fold  # the backtest's train/test window pair (imports pandas)

    if folds < 1 or train_days <= 0 or test_days <= 0 or purge_ms < 0 or embargo_ms < 0:
        raise ValueError("folds >= 1, train and test days > 0, purge and embargo >= 0")
    test_ms, train_ms, gap = int(test_days * DAY_MS), int(train_days * DAY_MS), purge_ms + embargo_ms
    first_test = end_ms - folds * test_ms
    if first_test - gap - train_ms < start_ms:
        need = (folds * test_ms + gap + train_ms) / DAY_MS
        raise ValueError(
            f"{folds} folds of {test_days} test days after {train_days} training days need "
            f"{need:.2f} days of data; the period has {(end_ms - start_ms) / DAY_MS:.2f}"
        )
    out = []
    for k in range(folds):
        test_start = first_test + k * test_ms
        train_end = test_start - gap
        out.append(Fold(k, train_end - train_ms, train_end, test_start, test_start + test_ms))
    return out


@dataclass(frozen=True)
class Job:
    """One family trained and scored on one fold for one setup: everything a worker needs."""

    family: str
    preset: str
    setup: Setup
    fold: Fold
    data_dirs: tuple[str, ...]
    symbols: tuple[str, ...]
    work_dir: str
    epochs: int = 1
    max_batches: int = 0
    max_val: int = 2000
    seed: int = 0
    fee: float = 0.001
    threads: int = 1  # torch CPU threads: the same count on every runner gives the same floats (sums' order)

    @property
    def out_dir(self) -> Path:
        """Where the fold's artifact goes."""
        return Path(self.work_dir) / self.setup.name.replace("/", "_") / f"fold{self.fold.index}" / self.family


@dataclass
class Scored:
    """Decisions of one window: close time, model scores, label, forward returns (one decision apart)."""

    close_ts: np.ndarray  # int64 [n]
    probs: np.ndarray  # float [n, 3]
    y: np.ndarray  # int64 [n] label at the setup's horizon (-1 = ambiguous)
    step_ret: np.ndarray  # float [n] close one decision later / close - 1 (0 unknown)
    trailing_ret: np.ndarray  # float [n] close / close one horizon earlier - 1 (NaN unknown)
    day_ret: np.ndarray  # float [n] close / close one day earlier - 1 (NaN unknown)


@dataclass
class FoldScores:
    """What a job returns: the threshold from the inner slice and the scored test window."""

    job: Job
    threshold: float
    inner_sharpe: float
    inner: Scored
    test: Scored
    train_classes: list[int] = field(default_factory=list)
    version: str = ""


def iso(ms: int) -> str:
    """UTC ISO time of an epoch-ms instant (train_pipeline takes ISO bounds)."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _close_lookup(bars: np.ndarray, when: np.ndarray, bar_ms: int = MINUTE_MS) -> np.ndarray:
    """The close of the bar (of length `bar_ms`) closing exactly at `when` (NaN where there is none)."""
    closes = bars[:, 0].astype(np.int64) + bar_ms
    i = np.clip(np.searchsorted(closes, when), 0, len(closes) - 1)
    return np.where(closes[i] == when, bars[i, 4], np.nan)


def _decisions(setup: Setup, close_ts: np.ndarray, probs: np.ndarray, y: np.ndarray, prim: np.ndarray) -> Scored:
    """Decisions (samples at the setup's decision instants) with the returns the baselines use."""
    ms = setup.bar_ms
    now = _close_lookup(prim, close_ts, ms)
    ahead = _close_lookup(prim, close_ts + setup.step_minutes * MINUTE_MS, ms)
    step = np.where(np.isfinite(ahead) & np.isfinite(now), ahead / now - 1.0, 0.0)
    trailing = now / _close_lookup(prim, close_ts - setup.horizon_ms, ms) - 1.0
    day = now / _close_lookup(prim, close_ts - DAY_MS, ms) - 1.0
    return Scored(close_ts, probs, y.astype(np.int64), step, trailing, day)


def baseline_sides(name: str, s: Scored, setup: Setup, shares: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(sides, probabilities) of one baseline on one fold's decisions."""
    n = len(s.close_ts)
    if name == "random":
        return baselines.random_sides(n, shares, seed), np.tile(shares / shares.sum(), (n, 1))
    sides = {
        "always_flat": lambda: np.ones(n, dtype=np.int64),
        "persistence": lambda: baselines.persistence_sides(s.trailing_ret, setup.label_thresholds()[1]),
        "buy_and_hold": lambda: np.full(n, 2, dtype=np.int64),
        "momentum": lambda: baselines.momentum_sides(s.close_ts, s.day_ret),
    }[name]()
    return sides, scoring.one_hot(sides)


def train_fold(job: Job) -> tuple[Path, str, list[int]]:
    """Train the job's family on its fold's training window (the one training path,
    pipeline.train). Returns (artifact dir, version, train class counts)."""
    from models.targets import TargetSpec
    from pipeline.spec import TrainSpec
    from pipeline.train import train

    thr_, neutral = job.setup.label_thresholds()
    spec = TrainSpec(
        job.family,
        preset=job.preset,
        data_dirs=job.data_dirs,
        symbols=job.symbols,
        start=iso(job.fold.train_start),
        end=iso(job.fold.train_end),
        target=TargetSpec("classification", job.setup.horizon, thr_, neutral),
        epochs=job.epochs,
        max_batches=job.max_batches,
        max_val=job.max_val,
        seed=job.seed,
        device="cpu",
        fee=job.fee,
        hold=job.setup.horizon,
        decision_timeframe=job.setup.trigger,
        trigger_timeframe=job.setup.bar,
    )
    res = train(spec, job.out_dir)
    return res.artifact_dir, res.version, list(res.samples.get("train_classes") or [])


def score_window(
    art_dir: Path, setup: Setup, data_dirs: Sequence[str], symbol: str, start_ms: int, end_ms: int, inner: bool
) -> Scored:
    """The artifact's class probabilities on the primary symbol: the training window's last
    (inner) slice when `inner`, else every decision in [start_ms, end_ms)."""
    from models import registry
    from models.artifacts import load_artifact
    from models.datasets import RATIOS, TEST, assemble, build_symbol_samples
    from models.targets import TargetSpec
    from pipeline.train import load_symbol, predict_scores

    model, meta, spec = load_artifact(art_dir, "cpu")
    io = registry.family(meta["model"]["name"]).make_io("classification", spec.trigger)
    io.restore(meta["training"].get("trend_tau"))
    target = TargetSpec.from_dict(meta["target"])
    # history before the window: the model's input window, and a day for the baselines' lookbacks
    warm = max(spec.required_windows[spec.trigger] * setup.bar_ms, DAY_MS + setup.horizon_ms) + HOUR_MS + setup.bar_ms
    lo, hi = (start_ms, end_ms) if inner else (start_ms - warm, end_ms + target.span * setup.bar_ms)
    series = load_symbol([Path(d) for d in data_dirs], symbol, spec.inputs, lo, hi, lambda s: None, spec.trigger)
    # Outside training one block holds the whole window: every sample with its label is a decision.
    ratios = RATIOS if inner else (1e-9, 1e-9, 1.0 - 2e-9)
    samples = build_symbol_samples(symbol, series, spec, target, ratios, aux_targets=io.aux_targets)
    ss = assemble([(samples, series)], spec, scalers=spec.scalers)
    idx = ss.indices(TEST)
    close_ts = ss.extra["close_ts"][idx]
    # only the decision instants are asked (a 1h trigger: one sample in sixty)
    sel = close_ts % timeframe_ms(setup.trigger) == 0
    if not inner:
        sel &= (close_ts > start_ms) & (close_ts <= end_ms)
    idx, close_ts = idx[sel], close_ts[sel]
    probs = predict_scores(io, model, ss, idx, next(model.parameters()).device)
    return _decisions(setup, close_ts, probs, ss.y[idx], series[spec.trigger])


def run_job(job: Job) -> FoldScores:
    """Train, choose the threshold on the inner slice, score the test window with it, with
    `job.threads` torch threads: a Ray worker (OMP_NUM_THREADS=1) and this process then compute
    bit-identical weights, versions and scores on the same machine."""
    from daemon.retrain.jobs import _threads as torch_threads  # the retrain jobs' own pinning

    with torch_threads(job.threads):
        return _run_job(job)


def _run_job(job: Job) -> FoldScores:
    import strategies.threshold as thr

    art, version, classes = train_fold(job)
    inner = score_window(art, job.setup, job.data_dirs, job.symbols[0], job.fold.train_start, job.fold.train_end, True)
    if len(inner.close_ts) < 2:
        raise ValueError(
            f"{job.family} {job.setup.name} fold {job.fold.index}: the inner validation slice (the last "
            f"15 % of {iso(job.fold.train_start)}..{iso(job.fold.train_end)}) holds "
            f"{len(inner.close_ts)} decisions; train on more days"
        )
    chosen = thr.optimize(
        inner.probs, inner.step_ret, "classification", fee=job.fee, bars_per_year=job.setup.bars_per_year, hold=job.setup.hold
    )
    test = score_window(art, job.setup, job.data_dirs, job.symbols[0], job.fold.test_start, job.fold.test_end, False)
    log.info(
        "fold_scored",
        family=job.family,
        setup=job.setup.name,
        fold=job.fold.index,
        version=version,
        threshold=chosen.threshold,
        inner_sharpe=round(chosen.sharpe, 3),
        test_decisions=len(test.close_ts),
    )
    return FoldScores(job, chosen.threshold, chosen.sharpe, inner, test, classes, version)


def run_jobs(jobs: Sequence[Job], runner: Runner | None = None) -> list[FoldScores]:
    """Every job through `runner` (default: one after the other here), results in job order,
    with a live progress line that moves as each fold's model trains."""
    runner = runner if runner is not None else LocalRunner()
    progress = Progress(len(jobs), f"compare folds ({runner.name})")
    try:
        return runner.map(run_job, jobs, progress=progress)
    finally:
        progress.close()


def concat(parts: Sequence[Scored]) -> Scored:
    """Test windows of consecutive folds as one out-of-sample series."""
    return Scored(
        *(
            np.concatenate([getattr(p, name) for p in parts])
            for name in ("close_ts", "probs", "y", "step_ret", "trailing_ret", "day_ret")
        )
    )


def validate_artifact(
    art_dir: Path,
    data_dirs: Sequence[str],
    symbol: str,
    start_ms: int,
    end_ms: int,
    *,
    n_trials: int = 1,
    fee: float | None = None,
    gate: Mapping[str, Any] | None = None,
    write: bool = False,
) -> dict[str, Any]:
    """Trade a served artifact (its threshold, its holding period) on a window it never saw and
    apply the gate; the verdict block. Only with `write` does the block go into the artifact's
    artifact.json as `validation` (a shipped, git-tracked artifact is not rewritten by a look at it)."""
    import strategies.threshold as thr
    from daemon.research import stats
    from daemon.trading.scoring import trading_scores
    from models.artifacts import hold_bars, read_meta

    meta = read_meta(art_dir)
    if meta["target"].get("mode", "classification") != "classification":
        raise ValueError(f"{art_dir}: a {meta['target']['mode']} artifact; the gate scores classifiers only")
    horizon = int(meta["target"]["horizon"])
    from pipeline.spec import spec_of_meta

    trained = spec_of_meta(meta)
    setup = Setup(trained.decision_timeframe, horizon, trained.trigger_timeframe)
    seen = int(meta["data"]["last_close_ts"]) + setup.horizon_ms  # its last label's end
    if start_ms < seen:
        raise ValueError(
            f"{art_dir}: the window starts {iso(start_ms)}, inside what it was trained on "
            f"(labels up to {iso(seen)}); validate on later data"
        )
    fee = float(meta["threshold"]["fee"]) if fee is None else fee
    # Decide where the model decides (an artifact trained for 1h decisions is not traded on
    # every 1m bar); its holding period, kept in sample bars, becomes a count of those decisions.
    hold = max(1, hold_bars(meta) // setup.step)
    s = score_window(Path(art_dir), setup, data_dirs, symbol, start_ms, end_ms, False)
    sides = thr.decide(s.probs, float(meta["threshold"]["value"]))
    trade, net = trading_scores(sides, s.step_ret, hold, fee, setup.bars_per_year)
    thresholds = {"min_trades": stats.MIN_TRADES, "min_psr": stats.MIN_PSR, "min_dsr": stats.MIN_DSR, **(gate or {})}
    verdict = stats.gate(net, int(trade["trades"]), n_trials, **thresholds)
    # the baselines on the same decisions, the same holding period and the same unit position
    base = {}
    for name in ("always_flat", "buy_and_hold", "momentum", "persistence"):
        b_sides, _ = baseline_sides(name, s, setup, np.ones(3), 0)
        b_trade, _ = trading_scores(b_sides, s.step_ret, hold, fee, setup.bars_per_year)
        base[name] = {k: b_trade[k] for k in ("sharpe", "total_return", "trades")}
    block = {
        **verdict.to_dict(),
        "gate": thresholds,
        "window": [iso(start_ms), iso(end_ms)],
        "symbol": symbol,
        "decisions": len(net),
        "decision_timeframe": setup.trigger,
        "hold_decisions": hold,
        "sharpe_annualized": trade["sharpe"],
        "total_return": trade["total_return"],
        "fee": fee,
        "baselines": base,
        "data": list(data_dirs),
        "validated_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    if write:
        write_validation(Path(art_dir), block)
    return block


def write_validation(art_dir: Path, block: Mapping[str, Any]) -> None:
    """Put the gate's verdict into the artifact's JSON (atomically; the weights and their hash,
    hence the version, are untouched)."""
    path = art_dir / "artifact.json"
    doc = json.loads(path.read_text())
    doc["validation"] = dict(block)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(doc, indent=1, sort_keys=True, allow_nan=False))
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)

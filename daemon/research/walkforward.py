"""Walk-forward evaluation: retrain on a window, trade the window after it, roll forward.

Fold k trains on trigger bars opening in [start + k·test, start + k·test + train) and trades
the following `test` days. The training data is cut at the train window's end before the
training code ever sees it (tape files written for that window only), so no label, scaler
or threshold of a fold can see its test window. Training is the nightly retrain's code path
(`pipeline.train.train`: fit, threshold optimized on its own validation split).
The test windows are traded by ONE engine run that swaps predictors at each fold boundary,
as the live daemon swaps a retrained model between decisions, so the concatenated
out-of-sample result is one continuous equity curve.
"""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from daemon import log as logging
from daemon.domain import timeframe_ms
from daemon.research.replay import Stream, Tape, TapeError, write_tape

if TYPE_CHECKING:
    from daemon.research.backtest import Plan
    from daemon.research.report import BacktestResult

log = logging.get("walkforward")
DAY_MS = 86_400_000
CONTEXT_BARS = 2_000  # history kept before a training window for every non-trigger stream


@dataclass(frozen=True)
class Fold:
    """One walk-forward step: train on [train_start, train_end), trade [test_start, test_end)."""

    index: int
    train_start: int
    train_end: int
    test_start: int
    test_end: int


def parse_spec(spec: str) -> tuple[int, int]:
    """"TRAIN_DAYS:TEST_DAYS" → (train_days, test_days); a clear error otherwise."""
    parts = spec.split(":")
    try:
        train, test = (int(p) for p in parts)
    except ValueError:
        raise ValueError(f"--walk-forward {spec!r}: expected TRAIN_DAYS:TEST_DAYS, e.g. 30:7") from None
    if train < 1 or test < 1:
        raise ValueError(f"--walk-forward {spec!r}: both day counts must be >= 1")
    return train, test


def plan_folds(start_ms: int, end_ms: int, train_days: int, test_days: int) -> list[Fold]:
    """Folds whose test windows tile [start + train, end); the last one may be shorter (≥ 1 day)."""
    folds: list[Fold] = []
    train_start = start_ms
    while True:
        test_start = train_start + train_days * DAY_MS
        test_end = min(test_start + test_days * DAY_MS, end_ms)
        if test_end - test_start < min(DAY_MS, test_days * DAY_MS):
            break
        folds.append(Fold(len(folds), train_start, test_start, test_start, test_end))
        train_start += test_days * DAY_MS
    if not folds:
        raise ValueError(f"walk-forward {train_days}:{test_days} days needs at least {train_days + 1} days of "
                         f"data from the start; the period has {(end_ms - start_ms) / DAY_MS:.1f}")
    return folds


def write_training_tape(tape: Tape, trigger: Stream, fold: Fold, out: Path, context_bars: int) -> Path:
    """Tape files of what fold `fold` may train on: bars closed by train_end, nothing later.

    The trigger stream starts at train_start; every other stream keeps `context_bars` bars
    of history before train_start, the context the first training windows need.
    """
    for stream, rows in tape.streams.items():
        close = rows[:, 0].astype(np.int64) + timeframe_ms(stream[1])
        keep = close <= fold.train_end
        if stream == trigger:
            keep &= rows[:, 0] >= fold.train_start
        else:
            first = int(np.searchsorted(rows[:, 0], fold.train_start)) - context_bars
            keep[: max(first, 0)] = False
        if not keep.any():
            if stream == trigger:
                raise TapeError(f"fold {fold.index}: no {stream[0]} {stream[1]} bars in its training window")
            continue
        write_tape(out, stream[0], stream[1], rows[keep])
    return out


def train_fold(fold: Fold, tape: Tape, trigger: Stream, dirs: dict[str, Path], work: Path,
                train_kwargs: dict) -> dict[str, Any]:
    """Train every served model on the fold's window (nightly retrain path); load the results."""
    from daemon.research.backtest import load_predictors
    from models.artifacts import read_meta
    from models.targets import TargetSpec
    from pipeline.spec import TrainSpec
    from pipeline.train import train

    data = write_training_tape(tape, trigger, fold, work / f"fold{fold.index}" / "data", CONTEXT_BARS)
    out = {}
    for name, served in dirs.items():
        # the served model's target definition; the rest as the nightly retrain trains
        fields = {"target": TargetSpec.from_dict(read_meta(served)["target"]), **train_kwargs}
        res = train(TrainSpec(name, data_dirs=(str(data),), **fields), work / f"fold{fold.index}" / name)
        out[name] = res.artifact_dir
        log.info("fold_trained", fold=fold.index, model=name, version=res.version,
                 train_from=fold.train_start, train_to=fold.train_end)
    return load_predictors(out)


def nightly_kwargs(cfg: Any) -> dict[str, Any]:
    """TrainSpec fields of the nightly retrain ([retrain] preset, epochs, batches, device)."""
    r = getattr(cfg, "retrain", None)
    if r is None:
        return {"device": "cpu"}
    return {"preset": r.preset, "epochs": r.epochs or 0, "max_batches": r.max_batches, "device": r.device}


def run_walk_forward(plan: "Plan", data_dir: Path, spec: str, dirs: dict[str, Path], *,
                     train_kwargs: dict | None = None, work: Path | None = None) -> "BacktestResult":
    """Train on each fold's window, trade its test window in one engine run, report every fold."""
    import tempfile

    from daemon.research.backtest import Plan, Progress, batched, collect, replay, truth_function
    from daemon.research.replay import discover, load_streams, replay_order
    from daemon.research.report import fold_summaries
    from daemon.store import Store

    train_days, test_days = parse_spec(spec)
    folds = plan_folds(plan.start_ms, plan.end_ms, train_days, test_days)
    every = load_streams(data_dir, discover(data_dir), plan.trigger)  # training may use every file
    with tempfile.TemporaryDirectory(prefix="sigd-wf-") as tmp:
        root = work or Path(tmp)
        test = Plan(plan.cfg, plan.tape, plan.order, plan.trigger, folds[0].test_start, folds[-1].test_end)
        trigger_ts = test.trigger_ts()
        predictors, tables = {}, []
        bar = Progress(len(folds), "walk-forward folds", sys.stderr.isatty())
        for fold in folds:
            kwargs = {**nightly_kwargs(plan.cfg), **(train_kwargs or {})}
            predictors = train_fold(fold, every, plan.trigger, dirs, root, kwargs)
            in_fold = trigger_ts[(trigger_ts >= fold.test_start) & (trigger_ts < fold.test_end)]
            tables.append((fold.test_start, batched(test, predictors, in_fold)))
            bar(1)
        bar.close()
        test.swaps = tables[1:]
        store = Store(":memory:")
        try:
            counts = asyncio.run(replay(test, tables[0][1], store))
            result = collect(test, store, truth_function(test, predictors), counts)
        finally:
            store.close()
    result.folds = fold_summaries(result, folds)
    return result

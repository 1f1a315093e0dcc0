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
from daemon.research.replay import Stream, Tape, TapeError, iso, write_tape

if TYPE_CHECKING:
    from daemon.research.backtest import Plan
    from daemon.research.result import BacktestResult
    from daemon.retrain.jobs import ArtifactRef, TrainJob
    from daemon.retrain.runners import Runner

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


def parse_spec(spec: str, flag: str = "--walk-forward") -> tuple[int, int]:
    """ "TRAIN_DAYS:TEST_DAYS" → (train_days, test_days); a clear error naming `flag` otherwise."""
    from daemon.retrain.cli_args import parse_days

    return parse_days(spec, flag)


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
        raise ValueError(
            f"walk-forward {train_days}:{test_days} days needs at least {train_days + 1} days of "
            f"data from the start; the period has {(end_ms - start_ms) / DAY_MS:.1f}"
        )
    return folds


def fold_samples(bars: int, input_bars: int, label_bars: int) -> tuple[int, int, int]:
    """Samples a training window of `bars` trigger bars gives its train / validation / test splits
    (models.datasets: a sample's input window and label span lie inside its split's block)."""
    from itertools import pairwise

    from models.datasets import RATIOS

    cuts = [0, int(bars * RATIOS[0]), int(bars * (RATIOS[0] + RATIOS[1])), bars]
    train, val, test = (max(0, hi - lo - input_bars - label_bars + 1) for lo, hi in pairwise(cuts))
    return train, val, test


def _family_samples(io: Any, seq_len: int, label_bars: int, days: int) -> tuple[int, tuple[int, int, int]]:
    """(input bars, split samples) of a family's IO on a `days`-day training window of its trigger bars."""
    bars = days * DAY_MS // timeframe_ms(io.trigger)
    window = io.feature_spec(seq_len, bars, (io.trigger,), lambda _msg: None).required_windows[io.trigger]
    return window, fold_samples(bars, window, label_bars)


def sample_timeframe(served: Path, timeframe: str | None) -> str:
    """The bars a fold's model samples: the served model's (1m models keep 1m, deciding at a
    coarser close as served), or `timeframe` (--timeframe) when it is given or the model is hourly."""
    from models.artifacts import read_meta
    from pipeline.spec import spec_of_meta

    own = spec_of_meta(read_meta(served)).trigger_timeframe
    return own if timeframe is None or (own == "1m" and timeframe == "1m") else timeframe


def fold_target(served: Path, timeframe: str | None, flag: str = "--timeframe") -> tuple[str, Any]:
    """(sample timeframe, target) of a fold's model: the served model's target, its horizon
    counted in the fold's sample bars (a 1-day horizon is 24 bars at 1h, 6 at 4h); ValueError
    naming `flag` when the horizon is not a whole number of them."""
    import dataclasses

    from models.artifacts import read_meta
    from models.targets import TargetSpec
    from pipeline.spec import spec_of_meta

    meta = read_meta(served)
    own = spec_of_meta(meta).trigger_timeframe
    target = TargetSpec.from_dict(meta["target"])
    tf = sample_timeframe(served, timeframe)
    if tf == own:
        return tf, target
    horizon_ms = target.horizon * timeframe_ms(own)
    if horizon_ms % timeframe_ms(tf) or horizon_ms < timeframe_ms(tf):
        raise ValueError(
            f"{flag} {tf}: {served.name}'s label horizon ({target.horizon} {own} bars) is not a whole number of {tf} bars"
        )
    return tf, dataclasses.replace(target, horizon=horizon_ms // timeframe_ms(tf))


def check_fold_sizes(
    train_days: int, dirs: dict[str, Path], train_kwargs: dict, spec: str, flag: str, timeframe: str | None = None
) -> None:
    """Before any training: a fold's training window must give every family samples in each
    split (input window + label horizon per sample, in its trigger bars); ValueError naming
    `flag` and the days it needs."""
    from models import registry
    from models.datasets import MIN_SAMPLES

    def enough(split: tuple[int, int, int]) -> bool:
        return min(split) >= 1 and sum(split) >= MIN_SAMPLES

    for name, served in dirs.items():
        fam = registry.family(name)
        tf, target = fold_target(served, timeframe)
        io = fam.make_io(target.mode, tf)
        seq_len = fam.make_config(dict(io.config_overrides_base()), train_kwargs.get("preset", "small")).seq_len
        window, split = _family_samples(io, seq_len, target.span, train_days)
        if enough(split):
            continue
        days = next((d for d in range(train_days + 1, 3660) if enough(_family_samples(io, seq_len, target.span, d)[1])), None)
        raise ValueError(
            f"{flag} {spec}: a {train_days}-day training window gives {name} {split[0]} training, {split[1]} "
            f"validation and {split[2]} test samples (a sample needs {window} input bars and its {target.span}-bar "
            f"label inside one split of the window, cut 70/15/15 %): train on at least {days} days, "
            f"e.g. {flag} {days}:{spec.split(':')[1]}"
        )


def write_training_tape(tape: Tape, trigger: Stream, fold: Fold, out: Path, context_bars: int) -> Path:
    """Tape files of what fold `fold` may train on: bars closed by train_end, nothing later.

    A 1m trigger stream starts at train_start; every other stream (and a 1h/4h/1d trigger,
    whose 1h file is also the source of its 4h/1d context; the fold's TrainSpec starts its
    samples at train_start) keeps `context_bars` bars of history before train_start, the
    context the first training windows need.
    """
    for stream, rows in tape.streams.items():
        close = rows[:, 0].astype(np.int64) + timeframe_ms(stream[1])
        keep = close <= fold.train_end
        if stream == trigger and trigger[1] == "1m":
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


def fold_jobs(
    fold: Fold, tape: Tape, trigger: Stream, dirs: dict[str, Path], work: Path, train_kwargs: dict, timeframe: str | None = None
) -> list[TrainJob]:
    """The fold's training tape written to storage, and one TrainJob per served family on it.

    Each family keeps the served model's target definition (its horizon in the fold's trigger
    bars, `fold_target`) and samples the served model's bars, or `timeframe`'s; the rest as the
    nightly retrain."""
    from daemon.retrain.jobs import TrainJob
    from daemon.retrain.storage import to_uri
    from pipeline.spec import TrainSpec

    data = write_training_tape(tape, trigger, fold, work / f"fold{fold.index}" / "data", CONTEXT_BARS)
    fields = {"symbols": (trigger[0],), **train_kwargs}
    jobs = []
    for name, served in dirs.items():
        tf, target = fold_target(served, timeframe)
        # an hourly trigger's file keeps history before the window (context); its samples start at train_start
        window = {"trigger_timeframe": tf, "start": iso(fold.train_start)} if tf != "1m" else {}
        spec = TrainSpec(name, data_dirs=(to_uri(data),), target=target, **window, **fields)
        jobs.append(TrainJob(spec, to_uri(data), to_uri(work / f"fold{fold.index}" / name), fold.index))
    return jobs


def run_fold_jobs(jobs: list[TrainJob], runner: Runner | None = None) -> list[ArtifactRef]:
    """Every job through the runner (local when none), with progress; ValueError naming a failed job."""
    from daemon.retrain.jobs import JobFailed
    from daemon.retrain.progress import Progress
    from daemon.retrain.runners import LocalRunner

    runner = runner or LocalRunner()
    progress = Progress(len(jobs), f"walk-forward jobs ({runner.name})")
    results = runner.run(jobs, progress=progress)
    progress.close()
    for job, res in zip(jobs, results):
        if isinstance(res, JobFailed):
            raise ValueError(f"walk-forward fold {job.fold} {job.family}: {res.error}")
        log.info("fold_trained", fold=job.fold, model=job.family, version=res.version, train_to=res.train_end_ms)
    return results  # type: ignore[return-value]


def train_fold(
    fold: Fold, tape: Tape, trigger: Stream, dirs: dict[str, Path], work: Path, train_kwargs: dict, runner: Runner | None = None
) -> dict[str, Any]:
    """Train every served model on the fold's window (nightly retrain path); load the results."""
    refs = run_fold_jobs(fold_jobs(fold, tape, trigger, dirs, work, train_kwargs), runner)
    return _load(refs)


def _load(refs: list[ArtifactRef]) -> dict[str, Any]:
    from daemon.research.backtest import load_predictors

    return load_predictors({r.family: _local(r.uri) for r in refs})


def _local(uri: str) -> Path:
    from daemon.retrain.storage import local_path

    path = local_path(uri)
    if path is None:
        raise ValueError(f"{uri}: walk-forward replays need the fold artifacts on this machine (a file:// work dir)")
    return path


def nightly_kwargs(cfg: Any) -> dict[str, Any]:
    """TrainSpec fields of the nightly retrain ([retrain] preset, epochs, batches, device)."""
    r = getattr(cfg, "retrain", None)
    if r is None:
        return {"device": "cpu"}
    return {"preset": r.preset, "epochs": r.epochs or 0, "max_batches": r.max_batches, "device": r.device}


def run_walk_forward(
    plan: Plan,
    data_dir: Path,
    spec: str,
    dirs: dict[str, Path],
    *,
    train_kwargs: dict | None = None,
    work: Path | None = None,
    runner: Runner | None = None,
    flag: str = "--walk-forward",
    timeframe: str | None = None,
) -> BacktestResult:
    """Train every fold x family as jobs on the runner (all at once on Ray), then trade each fold's
    test window with its fold's models in one engine run, and report every fold."""
    import tempfile

    from daemon.research.backtest import Plan, batched, collect, replay, truth_function
    from daemon.research.replay import discover, load_streams
    from daemon.research.report import fold_summaries
    from daemon.store import Store

    train_days, test_days = parse_spec(spec, flag)
    kwargs = {**nightly_kwargs(plan.cfg), **(train_kwargs or {})}
    check_fold_sizes(train_days, dirs, kwargs, spec, flag, timeframe)  # minutes, not after a family has trained
    folds = plan_folds(plan.start_ms, plan.end_ms, train_days, test_days)
    # training may use every file, and the trigger (4h/1d derived from 1h files)
    every = load_streams(data_dir, list(dict.fromkeys([*discover(data_dir), plan.trigger])), plan.trigger)
    with tempfile.TemporaryDirectory(prefix="sigd-wf-") as tmp:
        root = work or Path(tmp)
        jobs = [j for fold in folds for j in fold_jobs(fold, every, plan.trigger, dirs, root, kwargs, timeframe)]
        refs = run_fold_jobs(jobs, runner)
        test = Plan(plan.cfg, plan.tape, plan.order, plan.trigger, folds[0].test_start, folds[-1].test_end)
        trigger_ts = test.trigger_ts()
        predictors, tables = {}, []
        for fold in folds:
            predictors = _load([r for r in refs if r.fold == fold.index])
            in_fold = trigger_ts[(trigger_ts >= fold.test_start) & (trigger_ts < fold.test_end)]
            tables.append((fold.test_start, batched(test, predictors, in_fold)))
        test.swaps = tables[1:]
        store = Store(":memory:")
        try:
            counts = asyncio.run(replay(test, tables[0][1], store))
            result = collect(test, store, truth_function(test, predictors), counts)
        finally:
            store.close()
    result.folds = fold_summaries(result, folds)
    result.notes["fold_models"] = [
        {
            "fold": r.fold,
            "family": r.family,
            "version": r.version,
            "train_end_ms": r.train_end_ms,
            "validation_sharpe": r.metrics.get("validation", {}).get("sharpe"),
        }
        for r in refs
    ]
    return result


def at_timeframe(cfg: Any, timeframe: str) -> Any:
    """The config deciding at `timeframe` (--timeframe): the portfolio's decision timeframe, or
    the engine's trigger, streamed (added to exchange.timeframes) so the replay feeds it."""
    import dataclasses

    exchange = cfg.exchange
    if timeframe not in exchange.timeframes:
        exchange = dataclasses.replace(exchange, symbol="", timeframes=(*exchange.timeframes, timeframe))
    if cfg.engine.portfolio:
        return dataclasses.replace(
            cfg, exchange=exchange, portfolio=dataclasses.replace(cfg.portfolio, decision_timeframe=timeframe)
        )
    return dataclasses.replace(cfg, exchange=exchange, engine=dataclasses.replace(cfg.engine, trigger_timeframe=timeframe))


def walk_forward_command(args: Any) -> int:
    """`sigd walk-forward`: folds x served families as jobs on the runner, then one engine run."""
    from daemon import config as config_mod
    from daemon.research.backtest import artifact_dirs, live_order, make_plan, report_dir
    from daemon.research.replay import load_streams
    from daemon.research.report import summarize, terminal_summary, write_report
    from daemon.retrain.runners import runner_from_config

    cfg = config_mod.load(args.config)
    logging.setup(cfg.log.level, cfg.log.format)  # progress lines off a terminal are info events
    timeframe = getattr(args, "timeframe", None)
    if timeframe:
        cfg = at_timeframe(cfg, timeframe)
    try:
        # before a Ray start-up: a typo or a window too short for the models fails at once
        dirs = artifact_dirs(cfg, args.model_dir)
        check_fold_sizes(parse_spec(args.folds, "--folds")[0], dirs, nightly_kwargs(cfg), args.folds, "--folds", timeframe)
        report_dir(args.report)
        runner = runner_from_config(cfg.research, kind=args.runner, address=args.address, num_cpus=args.num_cpus)
        trigger = (cfg.exchange.symbol, cfg.decision_timeframe()[1])
        try:
            tape = load_streams(Path(args.data), live_order(cfg), trigger)
        except TapeError as exc:
            if timeframe:  # the data cannot give the asked timeframe: the flag's fault
                print(f"sigd walk-forward: --timeframe {timeframe}: {exc}", file=sys.stderr)
                return 2
            raise
        plan = make_plan(cfg, tape, args.start, args.end)
        result = run_walk_forward(plan, Path(args.data), args.folds, dirs, runner=runner, flag="--folds", timeframe=timeframe)
    except (OSError, ValueError, RuntimeError) as exc:
        print(f"sigd walk-forward: {exc}", file=sys.stderr)
        return 1
    summary = write_report(result, Path(args.report)) if args.report else summarize(result)
    print(terminal_summary(summary))
    for m in result.notes["fold_models"]:
        print(f"fold {m['fold']}  {m['family']:<16} {m['version']}  validation Sharpe {m['validation_sharpe']:.2f}")
    return 0

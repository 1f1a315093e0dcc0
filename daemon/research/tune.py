"""`sigd tune`: a hyperparameter and threshold search per family with Ray Tune + Optuna.

Objective: the purged walk-forward score. The period is cut into walk-forward folds
(`--folds TRAIN_DAYS:TEST_DAYS`); the LAST fold is the test fold and no trial ever sees it
(every tape a trial gets ends where the test fold begins). A trial trains its configuration
on each remaining fold's training window (the window's bars only: labels cannot reach past
it) and scores the model on the window after it, skipping the first `horizon` bars (the
purge: bars whose label overlaps the training data's last labels); the objective is the
mean of those Sharpe ratios net of fees. The threshold itself is optimized on each model's
own validation split, inside training, as always; the search covers the target definition
(horizon, label_threshold, neutral_zone), the threshold rule's holding period, the model
size preset and epochs — `[research] search`, per family `[research.family_search.NAME]`.

Ray Tune runs the trials (local Ray with `num_cpus`, or the cluster at `ray_address`), Optuna
(TPE) proposes them. A trial whose worker dies is retried (FailureConfig); an error raised
inside a trial (a bad configuration, too little data) is deterministic: it is that trial's
result (`error`), never retried, and when every trial failed the command fails. Everything
that can be checked without Ray (flags, families, the search space, the data and its folds)
is checked before Ray starts. The experiment state lives under `--out/--name`, so rerunning
the same command after the driver died resumes the study. The leaderboard
(`leaderboard.json`, `leaderboard.csv`) is written at the end.
"""

from __future__ import annotations

import csv
import json
import math
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from daemon import log as logging
from daemon.research.walkforward import Fold, plan_folds, write_training_tape
from daemon.retrain import storage
from daemon.retrain.jobs import ScoreJob, TrainJob, score, train
from daemon.retrain.progress import Progress
from models import registry
from models.targets import TargetSpec
from pipeline.spec import TrainSpec

log = logging.get("sigd.tune")
METRIC = "score"
ERROR = "error"  # a trial's own deterministic failure, reported as its result (never retried)
WHOLE = 10**9  # context bars: "everything before"


@dataclass(frozen=True)
class Window:
    """One tuning fold: train on the tape in `data/<name>`, score on [score_from, score_to)."""

    name: str
    score_from: int
    score_to: int


@dataclass(frozen=True)
class Study:
    """What every trial of one family needs besides its sampled configuration."""

    family: str
    base: TrainSpec
    windows: tuple[Window, ...]
    symbol: str


def tuning_windows(tape: Any, trigger: tuple[str, str], folds: Sequence[Fold], out: Path, purge_bars: int) -> tuple[Window, ...]:
    """Training tapes of every fold but the last (the test fold) and one scoring tape, all ending
    where the test fold begins."""
    if len(folds) < 2:
        raise ValueError(f"tuning needs at least 2 walk-forward folds (the last is the test fold); got {len(folds)}")
    tuning, test = folds[:-1], folds[-1]
    first = int(tape.streams[trigger][0, 0])
    write_training_tape(tape, trigger, Fold(-1, first, test.test_start, test.test_start, test.test_start), out / "score", WHOLE)
    step = 60_000 if trigger[1] == "1m" else 0
    windows = []
    for f in tuning:
        write_training_tape(tape, trigger, f, out / f"fold{f.index}", 2_000)
        windows.append(Window(f"fold{f.index}", f.test_start + purge_bars * step, f.test_end))
    return tuple(windows)


def param_space(space: Mapping[str, Sequence[Any]]) -> dict[str, Any]:
    """Tune's distributions from `[research] search`: [low, high] a range, else a choice."""
    from ray import tune

    out: dict[str, Any] = {}
    for name, values in space.items():
        v = list(values)
        if len(v) == 2 and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v):
            lo, hi = sorted(v)
            out[name] = tune.randint(int(lo), int(hi) + 1) if all(isinstance(x, int) for x in v) else tune.uniform(lo, hi)
        else:
            out[name] = tune.choice(v)
    return out


def trial_args(base: TrainSpec, config: Mapping[str, Any]) -> TrainSpec:
    """The base TrainSpec with a trial's sampled values; neutral_zone never above the label threshold."""
    target = base.target.to_dict()
    for key, field in (("horizon", "horizon"), ("label_threshold", "threshold"), ("neutral_zone", "neutral_zone")):
        if key in config:
            target[field] = config[key]
    if "label_threshold" in config and "neutral_zone" not in config:
        target["neutral_zone"] = target["threshold"] / 2  # the default's proportion
    target["neutral_zone"] = min(target["neutral_zone"], target["threshold"])
    changes = {k: config[k] for k in ("preset", "epochs", "hold") if k in config}
    return base.replace(target=TargetSpec.from_dict(target), **changes)


def run_trial(config: dict[str, Any], study: Study, data: Path) -> float:
    """Train and score one configuration on every tuning window; the mean Sharpe (reported as it
    grows, with the trades it took: a model that never trades scores 0)."""
    from ray import tune

    args = trial_args(study.base, config)
    scores: list[float] = []
    trades = 0
    with tempfile.TemporaryDirectory(prefix="sigd-trial-") as tmp:
        for w in study.windows:
            out = Path(tmp) / w.name
            uri = storage.to_uri(data / w.name)
            job = TrainJob(args.replace(data_dirs=(uri,)), uri, storage.to_uri(out))
            ref = train(job, data / w.name, out)
            sj = ScoreJob((ref.uri,), storage.to_uri(data / "score"), study.symbol, w.score_from, w.score_to, args.fee)
            scored = score(sj, data / "score", {ref.uri: out}).by_artifact[ref.uri]
            scores.append(scored["score"] if math.isfinite(scored["score"]) else 0.0)
            trades += int(scored.get("trades", 0))
            tune.report({METRIC: sum(scores) / len(scores), "folds": len(scores), "trades": trades})
    return sum(scores) / len(scores)


def _trainable(config: dict[str, Any], study: Study, blob: bytes) -> None:
    from ray import tune

    with tempfile.TemporaryDirectory(prefix="sigd-study-") as tmp:
        try:
            run_trial(config, study, storage.unpack(blob, Path(tmp)))
        except Exception as exc:
            # Only a dead worker (no exception here) is retried by FailureConfig.
            log.error("tune_trial_failed", family=study.family, config=config, error=f"{type(exc).__name__}: {exc}")
            tune.report({METRIC: float("nan"), "folds": 0, "trades": 0, ERROR: f"{type(exc).__name__}: {exc}"})


def tune_family(
    study: Study,
    data: Path,
    space: Mapping[str, Sequence[Any]],
    trials: int,
    out: Path,
    name: str,
    seed: int,
    concurrent: int,
    failures: list[str],
) -> list[dict[str, Any]]:
    """Run (or resume) one family's study; its leaderboard rows, best first. A failed trial is
    no row: its error goes into `failures`."""
    from ray import tune
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.optuna import OptunaSearch

    trainable = tune.with_resources(tune.with_parameters(_trainable, study=study, blob=storage.pack(data)), {"cpu": 1})
    path = (out / f"{name}-{study.family}").resolve()
    progress = Progress(trials, f"tune {study.family}")
    callbacks = [progress_callback(progress)]
    if tune.Tuner.can_restore(str(path)):
        log.info("tune_resumed", family=study.family, path=str(path))
        tuner = tune.Tuner.restore(str(path), trainable, resume_errored=True)
        run_config = getattr(getattr(tuner, "_local_tuner", None), "_run_config", None)
        if run_config is not None:  # callbacks are not part of the saved state: progress of the rest too
            run_config.callbacks = callbacks
        progress.done = finished_trials(tuner, len(study.windows))
    else:
        search = ConcurrencyLimiter(OptunaSearch(metric=METRIC, mode="max", seed=seed), max_concurrent=concurrent)
        tuner = tune.Tuner(
            trainable,
            param_space=param_space(space),
            tune_config=tune.TuneConfig(search_alg=search, num_samples=trials, metric=METRIC, mode="max"),
            run_config=tune.RunConfig(
                name=path.name,
                storage_path=str(path.parent),
                verbose=0,
                callbacks=callbacks,
                failure_config=tune.FailureConfig(max_failures=3),
            ),
        )
    grid = tuner.fit()
    progress.close()
    rows = []
    for r in grid:
        metrics = r.metrics or {}
        error = metrics.get(ERROR) or (f"worker lost: {type(r.error).__name__}" if r.error is not None else None)
        if error or METRIC not in metrics:
            failures.append(f"{study.family}: {error or 'no score reported'}")
            continue
        rows.append(
            {
                "family": study.family,
                METRIC: float(metrics[METRIC]),
                "folds": metrics.get("folds"),
                "trades": metrics.get("trades"),
                **{k: v for k, v in (r.config or {}).items()},
            }
        )
    return sorted(rows, key=lambda row: -row[METRIC])


def finished_trials(tuner: Any, folds: int) -> int:
    """Trials of a restored study that already scored every fold (0 when Tune cannot tell)."""
    try:
        return sum(1 for r in tuner.get_results() if r.error is None and (r.metrics or {}).get("folds") == folds)
    except Exception:
        return 0


def progress_callback(progress: Progress) -> Any:
    """A Tune Callback feeding trials started / completed / failed into a Progress."""
    from ray.tune import Callback

    class _Trials(Callback):
        def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            progress.start()

        def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            result = trial.last_result or {}
            progress.finish(ERROR not in result, None if ERROR in result else result.get(METRIC))

        def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            progress.finish(False)

    return _Trials()


def write_leaderboard(rows: list[dict[str, Any]], out: Path) -> Path:
    """leaderboard.json and leaderboard.csv, best first; the JSON path."""
    out.mkdir(parents=True, exist_ok=True)
    rows = sorted(rows, key=lambda row: -row[METRIC])
    (out / "leaderboard.json").write_text(json.dumps(rows, indent=1, default=str))
    keys = list(dict.fromkeys(k for row in rows for k in row))
    with (out / "leaderboard.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
    return out / "leaderboard.json"


def tune_command(args: Any) -> int:
    """`sigd tune`: one study per family, then the leaderboard."""
    from daemon import config as config_mod

    cfg = config_mod.load(args.config)
    logging.setup(cfg.log.level, cfg.log.format)
    try:
        board = run_tune(cfg, args)
    except (OSError, ValueError, RuntimeError) as exc:
        print(f"sigd tune: {exc}", file=sys.stderr)
        return 1
    note = no_trades_note(board)
    if note:
        print(f"sigd tune: {note}", file=sys.stderr)
    for row in board[:10]:
        print(json.dumps(row, default=str))
    print(f"leaderboard: {Path(args.out) / args.name / 'leaderboard.json'}")
    return 0


def no_trades_note(board: Sequence[Mapping[str, Any]]) -> str | None:
    """A plain sentence when every trial scored 0 because no trial's model ever traded (None otherwise)."""
    if not board or any(row.get("trades") for row in board):
        return None
    return (
        f"every trial scored 0 because none traded: no model of the {len(board)} trials took a position on "
        "any scored window (no probability reached its threshold), so the leaderboard ranks nothing; "
        "try more data (--folds), more --epochs or a larger --preset"
    )


def run_tune(cfg: Any, args: Any) -> list[dict[str, Any]]:
    """Every family's study on the local Ray or the cluster; the merged leaderboard (written)."""
    from daemon.research.replay import discover, load_streams
    from daemon.research.walkforward import nightly_kwargs, parse_spec
    from daemon.retrain.runners import init_ray

    r = cfg.research
    address = args.address if args.address is not None else (r.ray_address or None)
    if args.runner == "local":
        raise ValueError("sigd tune runs on Ray Tune: drop --runner local (a local single-node Ray is the default)")
    # Everything that can be wrong is checked before Ray starts (seconds, and a page of its logs).
    fold_days = parse_spec(args.folds, "--folds")
    families = args.families or sorted(cfg.models.paths)
    for fam in families:
        registry.family(fam)  # an unknown name is a ValueError listing the known ones
    check_space(r, families)
    start_ms = None if args.start is None else _ms(args.start, "--from")
    end_ms = None if args.end is None else _ms(args.end, "--to")
    trigger = (cfg.exchange.symbol, cfg.engine.trigger_timeframe)
    tape = load_streams(Path(args.data), discover(Path(args.data)), trigger)  # every file, as walk-forward
    ts = tape.streams[trigger][:, 0]
    start = int(ts[0]) if start_ms is None else start_ms
    end = int(ts[-1]) + 60_000 if end_ms is None else end_ms
    folds = plan_folds(start, end, *fold_days)
    if len(folds) < 2:
        raise ValueError(
            f"--folds {args.folds}: {len(folds)} walk-forward fold(s) in the data; tuning needs at least 2 "
            "(the last is the test fold, never tuned on): more data or shorter folds"
        )
    init_ray(address, args.num_cpus or r.num_cpus or None)
    out = Path(args.out) / args.name
    kw = nightly_kwargs(cfg)
    base = {
        "preset": args.preset or kw["preset"],
        "epochs": cfg.retrain.epochs if args.epochs is None else args.epochs,
        "max_batches": kw["max_batches"] if args.max_batches is None else args.max_batches,
        "seed": args.seed,
        "fee": cfg.broker.fee,
        "symbols": (trigger[0],),
        "device": kw["device"],
    }
    with tempfile.TemporaryDirectory(prefix="sigd-tune-") as tmp:
        windows = tuning_windows(tape, trigger, folds, Path(tmp), purge_bars(r, families))
        board: list[dict[str, Any]] = []
        failures: list[str] = []
        for fam in families:
            study = Study(fam, TrainSpec(fam, data_dirs=(storage.to_uri(tmp),), **base), windows, trigger[0])
            space = {**r.search, **r.family_search.get(fam, {})}
            board += tune_family(
                study, Path(tmp), space, args.trials, Path(args.out), args.name, args.seed, max(1, int(_cpus())), failures
            )
    if failures:
        log.error("tune_trials_failed", failed=len(failures), errors=sorted(set(failures)))
    if not board:
        raise RuntimeError(f"every trial failed ({len(failures)}): " + "; ".join(sorted(set(failures))))
    write_leaderboard(board, out)
    log.info(
        "tune_done",
        families=families,
        trials=len(board),
        best=board[0] if board else None,
        study=asdict(folds[-1]) | {"role": "test fold, never tuned on"},
    )
    return sorted(board, key=lambda row: -row[METRIC])


def purge_bars(research: Any, families: Sequence[str]) -> int:
    """Bars skipped at the start of every scored window: the longest label horizon any trial may use."""
    spans = [research.search, *(research.family_search.get(f, {}) for f in families)]
    highest = [int(max(v)) for s in spans for k, v in s.items() if k == "horizon" and v]
    return max([TargetSpec().horizon, *highest])


def _cpus() -> float:
    import ray

    return ray.cluster_resources().get("CPU", 1.0)


def check_space(research: Any, families: Sequence[str]) -> None:
    """The search space's values a trial cannot train with, named by their key, before Ray starts."""
    from daemon.retrain.cli_args import PRESETS

    spaces = {
        "research.search": research.search,
        **{f"research.family_search.{f}": research.family_search.get(f, {}) for f in families},
    }
    for key, space in spaces.items():
        bad = [v for v in space.get("preset", []) if v not in PRESETS]
        if bad:
            raise ValueError(f"{key}.preset: unknown preset(s) {bad}; known: {', '.join(PRESETS)}")


def _ms(text: str, flag: str) -> int:
    from daemon.market.backfill import parse_instant

    return parse_instant(text, flag)

"""`sigd compare`: families against the baselines on the same purged walk-forward folds.

For every setup (trigger timeframe x label horizon) and family, each fold trains, picks its
threshold on the inner validation slice and is scored on its test window
(daemon/research/selection.py). Rows are measured over the concatenated test windows, at the
decisions every family has (the same bars for all), beside five baselines at the same unit
position size and holding period: always-FLAT, persistence, a random guess at the class
shares, buy-and-hold and momentum. Each row gets the gate of daemon/research/stats.py; the
number of configurations tried is the number of model rows (plus --prior-trials).
Output: leaderboard.json, leaderboard.md and leaderboard.png in --out.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

import strategies.threshold as thr
from daemon.domain import timeframe_ms
from daemon.research import stats
from daemon.research.selection import (
    DAY_MS,
    FoldScores,
    Job,
    Runner,
    Scored,
    Setup,
    baseline_sides,
    concat,
    parse_setups,
    plan_folds,
    run_jobs,
    validate_artifact,
)
from daemon.trading import scoring

BASELINES = ("always_flat", "persistence", "random", "buy_and_hold", "momentum")
COLUMNS = (
    "accuracy",
    "macro_f1",
    "log_loss",
    "brier",
    "long",
    "short",
    "sharpe",
    "psr",
    "dsr",
    "trades",
    "turnover",
    "fee_share",
    "passed",
)


def _common(parts: Sequence[FoldScores]) -> np.ndarray:
    """Close times every family decided at in this fold (the same bars for every row)."""
    ts = parts[0].test.close_ts
    for p in parts[1:]:
        ts = np.intersect1d(ts, p.test.close_ts)
    return ts


def _take(s: Scored, ts: np.ndarray) -> Scored:
    keep = np.isin(s.close_ts, ts)
    return Scored(s.close_ts[keep], s.probs[keep], s.y[keep], s.step_ret[keep], s.trailing_ret[keep], s.day_ret[keep])


def measure(
    name: str,
    kind: str,
    setup: Setup,
    sides: np.ndarray,
    probs: np.ndarray,
    s: Scored,
    fee: float,
    n_trials: int,
    gate: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Every leaderboard column for one rule over the out-of-sample decisions (`gate`: the
    thresholds of stats.gate, its defaults when None)."""
    trade, net = scoring.trading_scores(sides, s.step_ret, setup.hold, fee, setup.bars_per_year)
    verdict = stats.gate(net, int(trade["trades"]), n_trials if kind == "model" else 1, **(gate or {}))
    return {
        "name": name,
        "kind": kind,
        "setup": setup.name,
        "decisions": int(len(sides)),
        **scoring.forecast_scores(s.y, probs),
        **scoring.confident_share(sides, s.y),
        **trade,
        "psr": verdict.psr,
        "dsr": verdict.dsr,
        "passed": verdict.passed,
        "why": verdict.why,
        "calibration": scoring.calibration(s.y, probs),
    }


def setup_rows(
    setup: Setup, results: Sequence[FoldScores], fee: float, n_trials: int, seed: int, gate: Mapping[str, Any] | None = None
) -> list[dict]:
    """Model and baseline rows of one setup (results: every family's folds for it)."""
    by_fold: dict[int, list[FoldScores]] = defaultdict(list)
    for r in results:
        by_fold[r.job.fold.index].append(r)
    rules: dict[tuple[str, str], list[tuple[np.ndarray, np.ndarray]]] = defaultdict(list)
    tests: list[Scored] = []
    for k in sorted(by_fold):
        ts = _common(by_fold[k])
        for r in by_fold[k]:
            s = _take(r.test, ts)
            rules[("model", r.job.family)].append((thr.decide(s.probs, r.threshold), s.probs))
        s = _take(by_fold[k][0].test, ts)
        tests.append(s)
        inner_y = by_fold[k][0].inner.y
        shares = np.bincount(inner_y[inner_y >= 0], minlength=3).astype(np.float64) + 1.0
        for name in BASELINES:
            rules[("baseline", name)].append(baseline_sides(name, s, setup, shares, seed + k))
    s = concat(tests)
    return [
        measure(
            name,
            kind,
            setup,
            np.concatenate([p[0] for p in parts]),
            np.concatenate([p[1] for p in parts]),
            s,
            fee,
            n_trials,
            gate,
        )
        for (kind, name), parts in rules.items()
    ]


def leaderboard(
    results: Sequence[FoldScores], fee: float, prior_trials: int = 0, seed: int = 0, gate: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The whole board: rows per setup, folds, the number of configurations tried."""
    by_setup: dict[Setup, list[FoldScores]] = defaultdict(list)
    for r in results:
        by_setup[r.job.setup].append(r)
    n_trials = prior_trials + len({(r.job.family, r.job.setup) for r in results})
    rows = [row for setup, rs in by_setup.items() for row in setup_rows(setup, rs, fee, n_trials, seed, gate)]
    folds = [
        {
            "setup": r.job.setup.name,
            "family": r.job.family,
            "fold": r.job.fold.index,
            "train": [r.job.fold.train_start, r.job.fold.train_end],
            "test": [r.job.fold.test_start, r.job.fold.test_end],
            "threshold": r.threshold,
            "inner_sharpe": r.inner_sharpe,
            "version": r.version,
        }
        for r in results
    ]
    return {"n_trials": n_trials, "fee_per_side": fee, "rows": rows, "folds": folds}


def _cell(row: dict[str, Any], col: str) -> str:
    v = row.get(col)
    if col == "passed":
        return "PASS" if v else "fail"
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if col in ("long", "short", "fee_share"):
        return f"{v:.1%}"
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def markdown(board: dict[str, Any]) -> str:
    """The leaderboard as Markdown tables, one per setup."""
    lines = [f"Configurations tried (deflates the Sharpe): {board['n_trials']}; fee {board['fee_per_side']:.2%} per side.", ""]
    for setup in dict.fromkeys(r["setup"] for r in board["rows"]):
        lines += [f"### {setup}", "", "| rule | " + " | ".join(COLUMNS) + " | why |", "|---" * (len(COLUMNS) + 2) + "|"]
        for row in (r for r in board["rows"] if r["setup"] == setup):
            name = row["name"] if row["kind"] == "model" else f"*{row['name']}*"
            lines.append(f"| {name} | " + " | ".join(_cell(row, c) for c in COLUMNS) + f" | {row['why']} |")
        lines.append("")
    return "\n".join(lines)


def plot(board: dict[str, Any], path: Path) -> None:
    """Calibration of every rule with probabilities, and Sharpe of every rule, per setup."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    setups = list(dict.fromkeys(r["setup"] for r in board["rows"]))
    fig, axes = plt.subplots(2, len(setups), figsize=(5 * len(setups), 8), squeeze=False)
    for j, setup in enumerate(setups):
        rows = [r for r in board["rows"] if r["setup"] == setup]
        ax = axes[0][j]
        ax.plot([1 / 3, 1], [1 / 3, 1], color="grey", lw=0.8, ls="--")
        for r in rows:
            if r["kind"] == "model" and r["calibration"]:
                ax.plot(
                    [c["confidence"] for c in r["calibration"]],
                    [c["hit_rate"] for c in r["calibration"]],
                    marker="o",
                    label=r["name"],
                )
        ax.set(title=f"{setup}: calibration", xlabel="arg-max confidence", ylabel="hit rate")
        ax.legend(fontsize=7)
        ax = axes[1][j]
        ax.barh(
            [r["name"] for r in rows],
            [r["sharpe"] for r in rows],
            color=["#2ca02c" if r["passed"] else "#1f77b4" if r["kind"] == "model" else "#7f7f7f" for r in rows],
        )
        ax.set(title=f"{setup}: annualized Sharpe net of fees", xlabel="Sharpe")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def write(board: dict[str, Any], out: Path) -> dict[str, Path]:
    """leaderboard.json, .md and .png in `out`."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "leaderboard.json", "md": out / "leaderboard.md", "png": out / "leaderboard.png"}
    paths["json"].write_text(json.dumps(board, indent=1, default=lambda v: None))
    paths["md"].write_text(markdown(board))
    plot(board, paths["png"])
    return paths


DEFAULT_SETUPS = ["1m:15", "1h:60", "1h:1440"]  # TRIGGER:HORIZON_MINUTES, models on 1m samples
DAY_HORIZON = {"1m": "1440", "1h": "24", "4h": "6", "1d": "1"}  # --timeframe's default setup: a day ahead


def primary_span(args: argparse.Namespace, bar: str) -> tuple[int, int]:
    """[first open, last close) of the traded symbol's `bar` bars (4h/1d derived from 1h files);
    a FlagError naming --timeframe when the data cannot give them."""
    from models.data import TapeError, load_series
    from pipeline.train import FlagError

    try:
        primary = load_series([Path(d) for d in args.data], args.symbols[0], bar)
    except TapeError as exc:
        raise FlagError(f"--timeframe {bar}: {exc}") from None
    if primary is None or not len(primary):
        raise FlagError(f"--timeframe {bar}: {args.symbols[0]} has no {bar} bar in --data {' '.join(args.data)}")
    return int(primary[0, 0]), int(primary[-1, 0]) + timeframe_ms(bar)


def plan_jobs(args: argparse.Namespace) -> list[Job]:
    """Every (family, setup, fold) the command line asks for."""
    timeframe = getattr(args, "timeframe", None)
    setups = parse_setups(args.setups or ([DAY_HORIZON[timeframe]] if timeframe else DEFAULT_SETUPS), timeframe)
    spans = {bar: primary_span(args, bar) for bar in dict.fromkeys(s.bar for s in setups)}
    jobs = []
    for setup in setups:
        start, end = spans[setup.bar]
        if args.end_days_ago:
            end -= int(args.end_days_ago * DAY_MS)
        folds = plan_folds(
            start,
            end,
            folds=args.folds,
            train_days=args.train_days,
            test_days=args.test_days,
            purge_ms=setup.horizon_ms,
            embargo_ms=int(args.embargo_minutes * 60_000),
        )
        jobs += [
            Job(
                f,
                args.preset,
                setup,
                fold,
                tuple(args.data),
                tuple(args.symbols),
                str(Path(args.out) / "folds"),
                epochs=args.epochs,
                max_batches=args.max_batches,
                seed=args.seed,
                fee=thr.DEFAULT_FEE if args.fee is None else args.fee,
            )
            for f in args.families
            for fold in folds
        ]
    return jobs


def compare(args: argparse.Namespace, runner: Runner | None = None) -> dict[str, Any]:
    """Plan, run and write the leaderboard; the board."""
    args.fee = thr.DEFAULT_FEE if args.fee is None else args.fee
    results = run_jobs(plan_jobs(args), runner)
    board = leaderboard(results, args.fee, args.prior_trials, args.seed, getattr(args, "gate", None))
    write(board, Path(args.out))
    return board


def validate(args: argparse.Namespace) -> list[dict[str, Any]]:
    """`--validate DIR...`: gate each artifact out of sample; the blocks in --out/validation.json
    (and in each artifact.json only with --write-verdict)."""
    from models.artifacts import read_meta
    from pipeline.spec import spec_of_meta
    from pipeline.train import _iso_ms

    if not args.start:
        raise ValueError("--validate needs --from ISO (a window after the artifact's training data)")
    bar = spec_of_meta(read_meta(Path(args.validate[0]))).trigger_timeframe  # the bars the first artifact samples
    start, end = _iso_ms(args.start, "--from"), _iso_ms(args.end, "--to") if args.end else primary_span(args, bar)[1]
    blocks = [
        {
            "artifact": str(d),
            **validate_artifact(
                Path(d),
                args.data,
                args.symbols[0],
                int(start),
                int(end),
                n_trials=1 + args.prior_trials,
                fee=args.fee,
                gate=getattr(args, "gate", None),
                write=getattr(args, "write_verdict", False),
            ),
        }
        for d in args.validate
    ]
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "validation.json").write_text(json.dumps(blocks, indent=1))
    return blocks


def gate_thresholds(models: Any) -> dict[str, Any]:
    """stats.gate's thresholds from `[models] gate_min_trades / gate_min_psr / gate_min_dsr`."""
    return {"min_trades": models.gate_min_trades, "min_psr": models.gate_min_psr, "min_dsr": models.gate_min_dsr}


def compare_runner(args: argparse.Namespace, research: Any) -> Runner:
    """The runner as `sigd walk-forward` builds it: `[research]`, --runner/--address/--num-cpus over it."""
    from daemon.retrain.runners import runner_from_config

    return runner_from_config(research, kind=args.runner, address=args.address, num_cpus=args.num_cpus)


def compare_command(args: argparse.Namespace) -> int:
    """`sigd compare --families ... --data ... --out DIR` (or `--validate ARTIFACT_DIR... --from ISO`)."""
    from daemon import config as config_mod
    from pipeline.train import FlagError

    cfg = config_mod.load(args.config)  # a ConfigError leaves through `sigd` (exit 2, file and key)
    args.gate = gate_thresholds(cfg.models)
    try:
        if args.validate:
            for b in validate(args):
                print(
                    f"{b['artifact']}: {'PASS' if b['passed'] else 'FAIL'} — {b['why']} "
                    f"(Sharpe {b['sharpe_annualized']:.2f} annualized, {b['decisions']} decisions {b['window'][0]} → "
                    f"{b['window'][1]})"
                )
                for name, m in b.get("baselines", {}).items():  # same decisions, holding and unit size
                    print(
                        f"  baseline {name}: Sharpe {m['sharpe']:.2f} annualized, return {m['total_return'] * 100:+.2f} %, "
                        f"{m['trades']} trades"
                    )
            print(
                f"verdicts written to {Path(args.out) / 'validation.json'}"
                + (
                    " and into each artifact.json"
                    if args.write_verdict
                    else " (artifacts untouched; --write-verdict writes them into artifact.json)"
                )
            )
            return 0
        if not args.families:
            raise ValueError("name --families to compare (or --validate ARTIFACT_DIR...)")
        board = compare(args, compare_runner(args, cfg.research))
    except FlagError as exc:  # input the data cannot serve: one line naming the flag
        print(f"sigd compare: {exc}", file=sys.stderr)
        return 2
    except (ValueError, OSError, RuntimeError) as exc:
        print(f"sigd compare: {exc}", file=sys.stderr)
        return 1
    print(markdown(board))
    print(f"written to {args.out}/leaderboard.{{json,md,png}}")
    return 0

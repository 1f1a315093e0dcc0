"""`sigd train`: build the TrainSpec from the flags, train (pipeline/train.py), print the test metrics."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

from models.targets import TargetSpec
from pipeline.spec import DEFAULT_DATA, DEFAULT_SYMBOLS, TrainSpec
from pipeline.train import FlagError, train


def format_metrics(name: str, m: dict[str, Any]) -> str:
    """The final evaluation as a few aligned lines for a person."""
    t = m["test"]
    lines = [f"{name}: test split ({t['bars']} bars of the primary symbol)"]
    if "accuracy" in t:
        # The baseline always answers the training split's most frequent class: name that class, not
        # "majority" (it need not be the test split's majority).
        always = ("SHORT", "FLAT", "LONG")[t["baseline_class"]]
        lines.append(
            f"  accuracy {t['accuracy']:.3f}  macro-F1 {t['macro_f1']:.3f}   always-{always} baseline "
            f"(most frequent in training): accuracy {t['baseline_accuracy']:.3f}  macro-F1 {t['baseline_macro_f1']:.3f}"
        )
    lines.append(
        f"  Sharpe net of fees {t['sharpe']:.2f} (threshold {m['validation']['threshold']:.3f}, "
        f"hold {m['validation'].get('hold_bars', 1)} bars, {t['trades']} trades)   buy-and-hold {t['buy_and_hold_sharpe']:.2f}"
    )
    lines.append(
        f"  total return {t['total_return']:+.2%}   buy-and-hold {t['buy_and_hold_return']:+.2%}   "
        f"validation Sharpe {m['validation']['sharpe']:.2f}"
    )
    return "\n".join(lines)


def spec_from_args(args: argparse.Namespace) -> TrainSpec:
    """The TrainSpec of a `sigd train` command line."""
    return TrainSpec(
        model=args.model,
        preset=args.preset,
        data_dirs=tuple(args.data or DEFAULT_DATA),
        symbols=tuple(args.symbols or DEFAULT_SYMBOLS),
        start=args.start,
        end=args.end,
        target=TargetSpec(args.mode, args.horizon, args.label_threshold, args.neutral_zone),
        epochs=args.epochs or 0,
        batch_size=args.batch_size or 0,
        max_batches=args.max_batches or 0,
        max_val=args.max_val or 0,
        scheduler=args.scheduler,
        jitter=getattr(args, "jitter", 0.0),
        scaling=getattr(args, "scaling", 0.0),
        seed=args.seed,
        device=args.device,
        hold=args.hold or 0,
        trigger_timeframe=getattr(args, "timeframe", None) or "1m",
    )


def _check_writable(folder: Path, what: str) -> None:
    """Before minutes of training, not after: the folder exists (made if need be) and is writable."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OSError(f"{what}: cannot create {folder}: {exc.strerror or exc}") from None
    try:  # a real probe: os.access says yes to root on a read-only mount or /proc
        tempfile.TemporaryFile(dir=folder).close()
    except OSError as exc:
        raise OSError(f"{what}: cannot write in {folder}: {exc.strerror or exc}") from None


def train_command(args: argparse.Namespace) -> int:
    """`sigd train --model NAME [--preset] [--data DIR...] [--epochs N] [--out DIR] ...`."""

    def say(s: str) -> None:
        print(s, file=sys.stderr, flush=True)

    try:
        spec = spec_from_args(args)
        if args.out:  # the artifact is written beside its place, then renamed: its parent must take it
            _check_writable(Path(args.out).absolute().parent, f"--out {args.out}")
        res = train(spec, args.out, progress=sys.stderr.isatty(), log=say)
    except FlagError as exc:  # input the data cannot serve: a usage error naming its flag
        print(f"sigd train: {exc}", file=sys.stderr)
        return 2
    except (ValueError, OSError) as exc:
        print(f"sigd train: {exc}", file=sys.stderr)
        return 1
    print(format_metrics(args.model, res.metrics))
    print(f"artifact {res.artifact_dir} (version {res.version})")
    return 0

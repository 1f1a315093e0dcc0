"""The `sigd compare` options (stdlib only: the CLI builds every parser at start-up, and
importing numpy for it would slow down every other command)."""

from __future__ import annotations

import argparse
import math

from daemon.retrain import cli_args  # argparse only
from daemon.retrain.cli_args import family_name


def fee_fraction(text: str) -> float:
    """An argparse type: a fee per side as a fraction of notional, 0 <= fee < 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (math.isfinite(value) and 0.0 <= value < 1.0):
        raise argparse.ArgumentTypeError(f"must be a fraction per side in [0, 1) (0.001 = 0.1 %), got {text}")
    return value


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The `sigd compare` options."""
    p.add_argument("--families", nargs="+", type=family_name, default=[], help="model families to compare")
    p.add_argument(
        "--validate",
        nargs="+",
        default=[],
        metavar="ARTIFACT_DIR",
        help="instead: gate these artifacts on [--from, --to); the verdicts go to --out/validation.json",
    )
    p.add_argument(
        "--write-verdict",
        action="store_true",
        help="with --validate: also write each verdict into its artifact.json as `validation` "
        "(what shadow mode reads; the nightly retrain does this for the model it promotes)",
    )
    p.add_argument("--from", dest="start", default=None, type=cli_args.iso_instant, help="ISO 8601 UTC, with --validate")
    p.add_argument(
        "--to", dest="end", default=None, type=cli_args.iso_instant, help="ISO 8601 UTC, with --validate (default: data end)"
    )
    p.add_argument("--data", nargs="+", required=True, type=cli_args.existing_dir, help="tape directories")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--symbols", nargs="+", default=["ETH/USDT"], help="first = the traded symbol")
    p.add_argument(
        "--timeframe",
        default=None,
        choices=["1m", "1h", "4h", "1d"],
        help="train and decide at this trigger (as `sigd train --timeframe`; 1h/4h/1d need only 1h files); "
        "--setups are then horizons in its bars",
    )
    p.add_argument(
        "--setups",
        nargs="+",
        default=None,
        help="TRIGGER:HORIZON_MINUTES (default 1m:15 1h:60 1h:1440); with --timeframe: HORIZON_BARS (default: one day)",
    )
    p.add_argument("--preset", default="small", choices=cli_args.PRESETS)
    p.add_argument("--folds", type=cli_args.at_least(1), default=3)
    p.add_argument("--train-days", type=cli_args.number(0, above=True), default=14.0)
    p.add_argument("--test-days", type=cli_args.number(0, above=True), default=7.0)
    p.add_argument("--embargo-minutes", type=cli_args.number(0, above=False), default=60.0)
    p.add_argument(
        "--end-days-ago", type=cli_args.number(0, above=False), default=0.0, help="stop the folds this long before the data ends"
    )
    p.add_argument("--epochs", type=cli_args.at_least(0), default=2, help="0 = the training loop's default")
    p.add_argument("--max-batches", type=cli_args.at_least(0), default=50, help="training batches per epoch (0 = all)")
    p.add_argument("--prior-trials", type=cli_args.at_least(0), default=0, help="configurations tried before this run (for DSR)")
    p.add_argument("--fee", type=fee_fraction, default=None, help="fee per side (default 0.001; --validate: the artifact's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "-c",
        "--config",
        default=None,
        help="config file: [research] runner defaults, [models] gate thresholds (default: the repo's config.toml)",
    )
    cli_args.runner(p)

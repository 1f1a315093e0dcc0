"""`sigd` command line: thin argument parsing, then one function per command.

Each command is `"module:function"`, its body in daemon/commands/ (the only package that prints
for a person). A function takes the parsed namespace and returns the exit code. ConfigError
anywhere becomes exit code 2 with the message on stderr.

The command's module is imported only when that command runs. That is for cold start, not to
break an import cycle: `sigd status`, `sigd backfill` and `sigd install-service` never import torch.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import NoReturn

from daemon.config import ConfigError
from daemon.research import compare_args  # argparse only, like the two below
from daemon.retrain import cli_args  # the research flags' types beside the runner's
from daemon.service.install import add_arguments
from daemon.service.statelock import StateLocked

COMMANDS: dict[str, str] = {
    "run": "daemon.commands.run:run_command",
    "check": "daemon.commands.check:check_command",
    "status": "daemon.commands.status:status_command",
    "local-exchange": "daemon.commands.local_exchange:serve_command",
    "backfill": "daemon.commands.backfill:backfill_command",
    "train": "daemon.commands.train:train_command",
    "backtest": "daemon.research.backtest:backtest_command",
    "walk-forward": "daemon.research.walkforward:walk_forward_command",
    "tune": "daemon.research.tune:tune_command",
    "install-service": "daemon.commands.service:install_command",
    "uninstall-service": "daemon.commands.service:uninstall_command",
    "compare": "daemon.research.leaderboard:compare_command",
    "calibrate": "daemon.research.calibration:calibrate_command",
    "research": "daemon.research.hourly:research_command",
}


class Parser(argparse.ArgumentParser):
    """argparse, with a usage error as ONE line naming the flag (not the whole usage block)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see: {self.prog} --help)\n")


def _config_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("-c", "--config", default=None, help="config file (default: the repo's config.toml)")


def build_parser() -> argparse.ArgumentParser:
    """The whole `sigd` argument parser."""
    parser = Parser(prog="sigd", description="Live-trading signal daemon for crypto.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", help="run the daemon (the local exchange too, when configured)")
    _config_arg(p)

    p = sub.add_parser("check", help="validate the config and everything it points to")
    _config_arg(p)

    p = sub.add_parser("status", help="print the running daemon's /status for a person")
    _config_arg(p)
    p.add_argument("--json", action="store_true", help="raw JSON instead of a table")

    p = sub.add_parser("local-exchange", help="run the built-in local Binance-protocol exchange")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 = an ephemeral port (printed)")
    p.add_argument("--tape", default=None, help="directory of <BASE>_<QUOTE>-<tf>.csv[.gz] files")
    p.add_argument("--start", default=None, help="replay start, ISO 8601 UTC, inside the tape")
    p.add_argument("--speed", type=float, default=1.0, help="1 = real time, 0 = as fast as possible")
    p.add_argument("--seed", type=int, default=7, help="seed for derived 1s bars")
    p.add_argument("--spread-bps", type=float, default=2.0, help="derived bid/ask spread around the replay price")
    p.add_argument(
        "--synthetic",
        type=int,
        default=0,
        metavar="N",
        help="also serve N SYNTHETIC symbols SYN001/USDT.. (time-shifted copies; load tests only)",
    )
    p.add_argument("--api-key-env", default="SIGD_API_KEY", help="env var holding the accepted API key")
    p.add_argument("--api-secret-env", default="SIGD_API_SECRET", help="env var holding the accepted secret")
    p.add_argument("--paused", action="store_true", help="start with the replay clock paused (POST /_control/resume_clock)")
    p.add_argument(
        "--balances",
        default=None,
        metavar="JSON",
        help='start balances, e.g. \'{"USDT": 100000, "BTC": 1, "ETH": 10}\' (the default)',
    )
    p.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="JSON",
        help='fault at start-up, e.g. \'{"action": "rest_error", "status": 429, "count": 3}\' (repeatable)',
    )

    p = sub.add_parser("backfill", help="download history into tape files")
    _config_arg(p)
    p.add_argument("--symbols", nargs="+", required=True)
    p.add_argument("--timeframes", nargs="+", required=True)
    p.add_argument("--since", required=True, help="ISO 8601 UTC")
    p.add_argument("--until", default=None, help="ISO 8601 UTC (default: now)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--exchange-url", default=None, help="base URL of a Binance-protocol server (e.g. the local exchange)")

    p = sub.add_parser("train", help="train a model and write an artifact")
    _config_arg(p)
    p.add_argument("--model", required=True, type=cli_args.family_name)
    p.add_argument("--preset", default="small", choices=cli_args.PRESETS)
    p.add_argument(
        "--data",
        nargs="+",
        default=None,
        type=cli_args.existing_dir,
        help="tape directories; per symbol/timeframe the first holding a file wins (default: the bundled slice)",
    )
    p.add_argument("--symbols", nargs="+", default=None, help="first = primary (default: ETH/USDT BTC/USDT)")
    p.add_argument(
        "--timeframe",
        default="1m",
        choices=["1m", "1h", "4h", "1d"],
        help="trigger: samples and decisions at these bar closes; 1h/4h/1d need only 1h files (1d and BTC 1h context)",
    )
    p.add_argument("--from", dest="start", default=None, type=cli_args.iso_instant, help="ISO 8601 UTC: first trigger bar used")
    p.add_argument(
        "--to", dest="end", default=None, type=cli_args.iso_instant, help="ISO 8601 UTC: end of the trigger bars used (exclusive)"
    )
    p.add_argument("--mode", default="classification", choices=["classification", "regression"])
    p.add_argument("--horizon", type=cli_args.at_least(1), default=15, help="bars ahead for the class label")
    p.add_argument(
        "--label-threshold", type=cli_args.number(0, above=True), default=0.002, help="|forward return| for LONG/SHORT"
    )
    p.add_argument(
        "--neutral-zone", type=cli_args.number(0, above=False), default=0.001, help="|forward return| below which FLAT"
    )
    p.add_argument(
        "--hold",
        type=cli_args.at_least(0),
        default=None,
        help="holding period in bars for the threshold rule (default: --horizon)",
    )
    p.add_argument("--epochs", type=cli_args.at_least(0), default=None)
    p.add_argument("--batch-size", type=cli_args.at_least(0), default=0, help="0 = chosen from available memory")
    p.add_argument("--max-batches", type=cli_args.at_least(0), default=0, help="training batches per epoch (0 = all)")
    p.add_argument("--max-val", type=cli_args.at_least(0), default=0, help="validation samples for the per-epoch loss (0 = all)")
    p.add_argument("--scheduler", default="cosine", choices=["cosine", "onecycle", "plateau"])
    p.add_argument(
        "--jitter",
        type=cli_args.number(0, above=False, below=1),
        default=0.0,
        help="augmentation: noise sd on scaled training inputs",
    )
    p.add_argument(
        "--scaling",
        type=cli_args.number(0, above=False, below=1),
        default=0.0,
        help="augmentation: per-sample scale sd (training only)",
    )
    p.add_argument("--out", default=None, help="artifact output directory (default: runs/train/<model>)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")

    p = sub.add_parser("backtest", help="replay recorded bars through the live pipeline")
    _config_arg(p)
    p.add_argument("--data", required=True, type=cli_args.existing_dir, help="tape directory")
    p.add_argument(
        "--from", dest="start", default=None, type=cli_args.iso_instant, help="ISO 8601 UTC; earlier bars only warm up"
    )
    p.add_argument("--to", dest="end", default=None, type=cli_args.iso_instant, help="ISO 8601 UTC")
    p.add_argument("--model-dir", default=None)
    p.add_argument("--report", default=None, help="report directory")
    p.add_argument("--walk-forward", default=None, type=cli_args.days_spec, metavar="TRAIN_DAYS:TEST_DAYS")
    p.add_argument("--bar-by-bar", action="store_true", help="no batched inference (slower; same result)")
    p.add_argument(
        "--symbols",
        default=None,
        metavar="A,B,C",
        help="trade these symbols (one portfolio, one engine) instead of exchange.symbols",
    )

    add_arguments(
        sub.add_parser("install-service", help="install sigd as a systemd service (venv, /etc/sigd, unit)"), install=True
    )
    add_arguments(
        sub.add_parser("uninstall-service", help="stop and remove the service (--purge: config and state)"), install=False
    )

    cli_args.walk_forward(sub.add_parser("walk-forward", help="folds x families as jobs, on the local runner or Ray"))
    cli_args.tune(sub.add_parser("tune", help="Ray Tune + Optuna search per family on the walk-forward score"))
    p = sub.add_parser("compare", help="families vs baselines on purged walk-forward folds: the gate's leaderboard")
    compare_args.add_arguments(p)
    for name, module, text in (
        (
            "calibrate",
            "daemon.research.calibration",
            "the gate's power: detection rate of a planted edge vs its Sharpe, noise passes",
        ),
        (
            "research",
            "daemon.research.hourly",
            "hourly leaderboard: pooled families x targets x 1h/4h/1d in CPCV, PBO, baselines",
        ),
    ):
        p = sub.add_parser(name, help=text)
        try:  # these modules need numpy at import: a stripped environment still gets every other command
            importlib.import_module(module).add_arguments(p)
        except ImportError as exc:
            p.set_defaults(unavailable=f"needs {exc.name or exc}, which this environment lacks")
    return parser


def _resolve(target: str) -> Callable[[argparse.Namespace], int]:
    module, _, func = target.partition(":")
    return getattr(importlib.import_module(module), func)


def _cross_check(args: argparse.Namespace) -> tuple[str, str] | None:
    """(flag, why) for a combination of flags that cannot work, found before anything loads."""
    zone, threshold = getattr(args, "neutral_zone", None), getattr(args, "label_threshold", None)
    if zone is not None and threshold is not None and zone > threshold:
        return "--neutral-zone", f"{zone} is above --label-threshold {threshold}: a move cannot be both FLAT and a LONG/SHORT"
    start, end = getattr(args, "start", None), getattr(args, "end", None)
    if args.command != "local-exchange" and start and end and _instant(start) >= _instant(end):
        return "--to", f"{end!r} is not after --from {start!r}"
    data, symbols = getattr(args, "data", None), getattr(args, "symbols", None)
    if args.command in ("train", "compare") and data and symbols:
        dirs = [data] if isinstance(data, str) else list(data)
        for symbol in symbols:
            stem = symbol.replace("/", "_") + "-"
            if not any(name.startswith(stem) for d in dirs if os.path.isdir(d) for name in os.listdir(d)):
                return "--symbols", f"{symbol!r} has no tape file ({stem}<timeframe>.csv[.gz]) in --data {' '.join(dirs)}"
    return None


def _instant(text: str) -> float:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `sigd` console script and `python -m daemon`."""
    args = build_parser().parse_args(argv)
    if unavailable := getattr(args, "unavailable", None):
        print(f"sigd {args.command}: {unavailable}", file=sys.stderr)
        return 2
    if problem := _cross_check(args):
        flag, message = problem
        print(f"sigd {args.command}: error: argument {flag}: {message} (see: sigd {args.command} --help)", file=sys.stderr)
        return 2
    try:
        return int(_resolve(COMMANDS[args.command])(args) or 0)
    except ConfigError as exc:
        print(f"sigd: config error: {exc}", file=sys.stderr)
        return 2
    except StateLocked as exc:
        print(f"sigd: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `sigd status --json | head`: the reader left. Point stdout at /dev/null so the
        # interpreter's final flush does not raise again, and exit as a SIGPIPE'd tool would.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())

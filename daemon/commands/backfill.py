"""`sigd backfill`: page an exchange's bar history into tape files, one line per file written."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
from pathlib import Path

from daemon import config as config_mod
from daemon import log
from daemon.config import ConfigError
from daemon.domain import TIMEFRAME_MS
from daemon.market.backfill import backfill, parse_instant


def backfill_command(args: argparse.Namespace) -> int:
    """`sigd backfill --symbols ... --timeframes ... --since ISO [--until ISO] --out DIR [--exchange-url URL]`."""
    cfg = config_mod.load(args.config).exchange
    for tf in args.timeframes:
        if tf not in TIMEFRAME_MS:
            raise ConfigError(f"--timeframes: unknown timeframe {tf!r}")
    for sym in args.symbols:
        if "/" not in sym:
            raise ConfigError(f"--symbols: expected BASE/QUOTE, got {sym!r}")
    since = parse_instant(args.since, "--since")
    until = parse_instant(args.until, "--until") if args.until else None
    rest_url = None
    if args.exchange_url:
        rest_url = args.exchange_url.rstrip("/")
        rest_url = rest_url if rest_url.endswith("/api/v3") else rest_url + "/api/v3"
    elif cfg.endpoint == "local":
        raise ConfigError("exchange.endpoint is 'local': give --exchange-url of a running local exchange")
    # Public history needs no keys; a URL given on the command line replaces the endpoint's.
    if rest_url:
        cfg = dataclasses.replace(cfg, endpoint="local", symbol="")  # symbols stays; symbol is derived
    log.setup()
    done = asyncio.run(backfill(cfg, Path(args.out), args.symbols, args.timeframes, since, until, rest_url))
    for name, n in done.items():
        print(f"{Path(args.out) / name}: +{n} bars")
    return 0

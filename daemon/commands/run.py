"""`sigd run`: load the config, set up logging, refuse what `sigd check` refuses, serve until stopped."""

from __future__ import annotations

import argparse
import os
import sys

from daemon import config as config_mod
from daemon import crashpoints, log
from daemon.commands.check import report
from daemon.config import ConfigError
from daemon.service.app import run_bounded, serve
from daemon.service.check import run_checks
from daemon.service.statelock import lock_for_store

_log = log.get("sigd.app")


def _announce(url: str) -> None:
    # The one line a person running `make run` looks for.
    print(f"sigd dashboard: {url}", file=sys.stderr, flush=True)


def run_command(args: argparse.Namespace) -> int:
    """`sigd run`: serve until SIGTERM/SIGINT; 2 when the config has problems."""
    cfg = config_mod.load(args.config)
    try:
        crashpoints.check_env()  # a test aiming at a point that does not exist must not pass silently
    except crashpoints.CrashPointError as exc:
        raise ConfigError(str(exc)) from None
    log.setup(cfg.log.level, cfg.log.format)
    # Before any part exists: one daemon per state directory, and bad input refused as `sigd check` says it.
    with lock_for_store(cfg.path(cfg.store.path)):
        problems = run_checks(cfg)
        if problems:
            report(cfg, problems, "run")
            return 2
        _log.info("daemon_starting", config=cfg.source, pid=os.getpid(), python=sys.version.split()[0])
        return run_bounded(serve(cfg, announce=_announce))

"""`sigd check`: validate the config and everything it points to, with clear reasons."""

from __future__ import annotations

import argparse
import sys
from typing import Callable

from daemon import config as config_mod
from daemon.config import Config

# Each check takes the loaded config and returns a list of problems (empty = fine).
# Other modules add theirs here as the things they own appear (tapes, artifacts, secrets).
Check = Callable[[Config], list[str]]


def _check_store(cfg: Config) -> list[str]:
    parent = cfg.path(cfg.store.path).parent
    if parent.exists() and not parent.is_dir():
        return [f"store.path: {parent} exists and is not a directory"]
    return []


def _check_broker(cfg: Config) -> list[str]:
    """Testnet orders only on a testnet (or the local exchange), with keys in the environment."""
    import os

    problems = []
    if cfg.broker.mode == "testnet":
        if cfg.exchange.endpoint == "live":
            problems.append("broker.mode: 'testnet' sends real orders; exchange.endpoint 'live' is refused "
                            "(use endpoint 'testnet' or 'local')")
        for env in (cfg.exchange.api_key_env, cfg.exchange.api_secret_env):
            if not os.environ.get(env):
                problems.append(f"broker.mode: 'testnet' needs the environment variable {env}")
    return problems


def _check_alert_secrets(cfg: Config) -> list[str]:
    # Every enabled channel that signs or authenticates needs its secret in the environment.
    import os

    needed = [(f"alerts.webhooks[{w.name}].secret_env", w.secret_env) for w in cfg.alerts.webhooks]
    if cfg.alerts.telegram.enabled:
        needed.append(("alerts.telegram.token_env", cfg.alerts.telegram.token_env))
    return [f"{key}: environment variable {env} is not set" for key, env in needed if not os.environ.get(env)]


CHECKS: list[Check] = [_check_store, _check_broker, _check_alert_secrets]


def run_checks(cfg: Config) -> list[str]:
    """Every problem found by every registered check."""
    problems: list[str] = []
    for check in CHECKS:
        problems.extend(check(cfg))
    return problems


def check_command(args: argparse.Namespace) -> int:
    """Exit 0 when the config and what it points to are sound, 1 with reasons otherwise."""
    cfg = config_mod.load(args.config)
    problems = run_checks(cfg)
    for p in problems:
        print(f"sigd check: {cfg.source}: {p}", file=sys.stderr)
    if problems:
        return 1
    print(f"sigd check: {cfg.source}: ok")
    return 0

"""The config checks of `sigd check` and `sigd run`: each returns its problems, one line each
(the command that prints them: daemon/commands/check.py)."""

from __future__ import annotations

import os
from collections.abc import Callable

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
    """Testnet orders only on a testnet or the local exchange (the keys: _check_exchange)."""
    if cfg.broker.mode == "testnet" and cfg.exchange.endpoint == "live":
        return [
            "broker.mode: 'testnet' sends real orders; exchange.endpoint 'live' is refused (use endpoint 'testnet' or 'local')"
        ]
    return []


def _check_alert_secrets(cfg: Config) -> list[str]:
    # Every enabled channel that signs or authenticates needs its secret in the environment.

    needed = [(f"alerts.webhooks[{w.name}].secret_env", w.secret_env) for w in cfg.alerts.webhooks]
    if cfg.alerts.telegram.enabled:
        needed.append(("alerts.telegram.token_env", cfg.alerts.telegram.token_env))
    return [f"{key}: environment variable {env} is not set" for key, env in needed if not os.environ.get(env)]


def _check_exchange(cfg: Config) -> list[str]:
    # testnet and live sign requests: their keys must be in the environment before start-up
    # (the local exchange falls back to its loopback dev keys, whatever the broker mode).
    ex = cfg.exchange
    if ex.endpoint == "local":
        return []
    return [
        f"exchange.{key}: environment variable {env} is not set (needed for endpoint {ex.endpoint!r})"
        for key, env in (("api_key_env", ex.api_key_env), ("api_secret_env", ex.api_secret_env))
        if not os.environ.get(env)
    ]


def _check_local_exchange(cfg: Config) -> list[str]:
    """With endpoint "local": the tape loads and the start lies inside it (symbols: symbol_problems)."""
    if cfg.exchange.endpoint != "local" or cfg.local_exchange.url:
        return []  # no exchange to start (or a running one, whose tape is its own business)
    from daemon.localexchange.server import LocalExchange, parse_start
    from daemon.localexchange.tape import TapeError

    lc = cfg.local_exchange
    try:
        start = parse_start(lc.start) if lc.start else None
    except ValueError as e:
        return [f"local_exchange.start: not an ISO 8601 instant ({e})"]
    try:
        LocalExchange(cfg.path(lc.tape) if lc.tape else None, start_ms=start, speed=lc.speed, seed=lc.seed)
    except TapeError as e:
        return [f"local_exchange.{'start' if 'replay start' in str(e) else 'tape'}: {e}"]
    return []


def symbol_problems(cfg: Config) -> list[str]:
    """Configured symbols the exchange does not list, each naming its key (`exchange.symbols[i]`).

    Checked against the tape of the local exchange `sigd run` would start; a running one
    (local_exchange.url) and testnet/live are asked at start-up, where the same keys are named.
    """
    if cfg.exchange.endpoint != "local" or cfg.local_exchange.url:
        return []
    from daemon.localexchange.tape import TapeError, bundled_tape_dir, load_tape
    from daemon.market.exchange import unknown_symbols

    tape = cfg.path(cfg.local_exchange.tape) if cfg.local_exchange.tape else bundled_tape_dir()
    try:
        listed = {f"{t.base}/{t.quote}" for t in load_tape(tape).values()}
    except TapeError:
        return []  # reported by _check_local_exchange
    return [f"{p} (no 1m tape in {tape})" for p in unknown_symbols(cfg.exchange, listed)]


def _check_models(cfg: Config) -> list[str]:
    """Every served model's artifact loads: JSON, weights' hash, the network built from its config."""
    problems = []
    for name, value in cfg.models.paths.items():
        where = cfg.path(value)
        if not (where / "artifact.json").is_file():
            problems.append(f"models.paths.{name}: no artifact at {where} (train one: sigd train --model {name} --out {where})")
            continue
        from models.artifacts import ArtifactError, load_artifact  # torch: only when there is one to load

        try:
            _, meta, _ = load_artifact(where, "cpu")
        except (ArtifactError, OSError, ValueError, KeyError) as exc:
            problems.append(f"models.paths.{name}: {exc}")
            continue
        if meta["model"]["name"] != name:
            problems.append(f"models.paths.{name}: {where} holds a {meta['model']['name']!r} model")
    return problems


def _check_retrain(cfg: Config) -> list[str]:
    """The retrain cron expression is one APScheduler accepts."""
    if not cfg.retrain.enabled:
        return []
    from daemon.retrain.nightly import cron_trigger

    try:
        cron_trigger(cfg.retrain.cron)
    except ValueError as exc:
        return [f"retrain.cron: {cfg.retrain.cron!r} is not a valid crontab expression: {exc}"]
    return []


CHECKS: list[Check] = [
    _check_store,
    _check_exchange,
    _check_local_exchange,
    _check_broker,
    _check_alert_secrets,
    _check_models,
    _check_retrain,
]


def run_checks(cfg: Config) -> list[str]:
    """Every problem found by every registered check."""
    problems: list[str] = []
    for check in CHECKS:
        problems.extend(check(cfg))
    return problems

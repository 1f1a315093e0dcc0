"""`sigd local-exchange`: serve the built-in local exchange until SIGINT/SIGTERM, printing the URLs it bound."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from pathlib import Path
from typing import Any

import structlog

from daemon.localexchange.control import apply
from daemon.localexchange.server import LocalExchange, credentials, parse_start
from daemon.localexchange.tape import TapeError


def _start_flag(text: str) -> int:
    try:
        return parse_start(text)
    except ValueError as exc:
        raise ValueError(f"--start {text!r}: not an ISO 8601 instant (e.g. 2025-08-10T12:00:00Z): {exc}") from None


def _json_flag(flag: str, text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise ValueError(f"{flag} {text!r}: not JSON ({exc})") from None


def _balances(text: str | None) -> dict[str, float] | None:
    if not text:
        return None
    value = _json_flag("--balances", text)
    if not isinstance(value, dict) or not all(isinstance(v, (int, float)) and v >= 0 for v in value.values()):
        raise ValueError(f"--balances must be a JSON object of asset -> amount >= 0, got {text!r}")
    return {str(k): float(v) for k, v in value.items()}


def _log_processors() -> list[Any]:
    """JSON lines unless a person watches both stdout and stderr (`> file`, journald: JSON)."""
    if sys.stdout.isatty() and sys.stderr.isatty():
        return structlog.get_config()["processors"]  # structlog's readable console default
    return [
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        structlog.processors.JSONRenderer(),
    ]


def serve_command(args: argparse.Namespace) -> int:
    """`sigd local-exchange`: serve until SIGINT/SIGTERM; prints the URL it bound."""
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr), processors=_log_processors())
    try:
        if not 0 <= args.port <= 65535:  # else asyncio's OverflowError escapes as a traceback
            raise ValueError(f"--port {args.port}: must be within 0..65535 (0 = an ephemeral port)")
        start_ms = _start_flag(args.start) if args.start else None
        key, secret, source = credentials(args.api_key_env, args.api_secret_env)
        lx = LocalExchange(
            Path(args.tape) if args.tape else None,
            host=args.host,
            port=args.port,
            start_ms=start_ms,
            speed=args.speed,
            seed=args.seed,
            api_key=key,
            api_secret=secret,
            paused=getattr(args, "paused", False),
            balances=_balances(getattr(args, "balances", None)),
            spread_bps=getattr(args, "spread_bps", 2.0),
            synthetic=getattr(args, "synthetic", 0),
        )
        for spec in getattr(args, "fault", None) or []:
            fault = _json_flag("--fault", spec)
            if not isinstance(fault, dict) or "action" not in fault:
                raise ValueError(f'--fault {spec!r}: expected a JSON object with an "action"')
            apply(lx, fault.pop("action"), fault)
    except (TapeError, ValueError, TypeError, KeyError, OSError) as e:
        print(f"sigd local-exchange: {e}", file=sys.stderr)
        return 2
    return asyncio.run(_serve(lx, source))


async def _serve(lx: LocalExchange, source: str) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await lx.start()
    except OSError as e:
        print(f"sigd local-exchange: cannot bind {lx.host}:{lx.port}: {e}", file=sys.stderr)
        return 2
    print(f"local exchange listening on {lx.base_url}", flush=True)
    print(f"  rest {lx.rest_url}  ws {lx.ws_url}  control {lx.base_url}/_control/status", flush=True)
    print(f"  api key: {source}", flush=True)
    await stop.wait()
    await lx.stop()
    return 0

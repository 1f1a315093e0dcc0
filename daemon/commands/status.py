"""`sigd status`: the running daemon's /status for a person (or raw JSON with --json)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
from collections.abc import Mapping
from typing import Any

from daemon import config as config_mod
from daemon.service.api import api_url, fetch_status
from daemon.trading.ledgers import render_ledgers
from daemon.trading.verdict import render_gate


def status_command(args: argparse.Namespace) -> int:
    """Print the running daemon's /status for a person (or raw with --json); 1 when unreachable."""
    cfg = config_mod.load(args.config)
    if not cfg.api.enabled:  # nothing listens: say why instead of "connection refused"
        print(f"sigd status: {cfg.source}: api.enabled is false, so the daemon serves no /status", file=sys.stderr)
        return 1
    url = api_url(cfg)
    try:
        if not url:
            raise OSError("the daemon has not recorded its API address (is it running?)")
        status = fetch_status(url, token=os.environ.get(cfg.api.token_env) or None)
    except (OSError, urllib.error.URLError, ValueError) as exc:
        print(f"sigd status: cannot reach the daemon at {url or '?'}: {exc}", file=sys.stderr)
        return 1
    if getattr(args, "json", False):
        print(json.dumps(status, indent=2, default=str))
    else:
        print(render_status(status))
        print(f"dashboard: {url}/")
    return 0


def _of(row: Mapping[str, Any]) -> str:
    """'ETH/USDT ' when the row names its symbol (several are traded), else nothing."""
    return f"{row['symbol']} " if row.get("symbol") else ""


def _position(pos: Mapping[str, Any] | None) -> str:
    if not pos or not pos.get("amount"):
        return "  flat"
    return (
        f"  {pos.get('amount', 0):+g} @ {pos.get('entry_price', 0):g}"
        f"  realized {pos.get('realized_pnl', 0):+.4f}  fees {pos.get('fees', 0):.4f}"
    )


def render_status(s: Mapping[str, Any]) -> str:
    """The /status JSON as a few readable lines."""
    lines = [
        f"sigd {'healthy' if s.get('healthy') else 'UNHEALTHY'}"
        f"{'' if s.get('healthy') else ' (' + str(s.get('health_reason', '')) + ')'}"
        f"  mode={s.get('mode', '?')}  paused={'yes' if s.get('paused') else 'no'}"
        f"  up {_duration(s.get('uptime_s', 0))}",
        "streams:",
    ]
    for name, st in sorted((s.get("streams") or {}).items()):
        lines.append(
            f"  {name:<14} last bar {_iso(st.get('last_bar_ts'))}  age {_duration(st.get('age_s'))}"
            f"  {'DEGRADED' if st.get('degraded') else 'ok'}  reconnects {st.get('reconnects', 0)}"
            f"  dropped {st.get('dropped_frames', 0)}"
        )
    lines.append("models:")
    for m in s.get("models") or []:
        lines.append(
            f"  {m.get('name', '?'):<16} {m.get('version', '?')}  threshold {m.get('threshold', '?')}"
            + (f"  SHADOW (not trading): {m['shadow']}" if m.get("shadow") else "")
        )
    lines += ["symbols:"] if s.get("symbols") else []
    held = {p.get("symbol"): p for p in s.get("positions") or []}
    for symbol, st in sorted((s.get("symbols") or {}).items()):
        flags = [f for f in ("paused", "halted") if st.get(f)]
        lines.append(f"  {symbol:<14} {' '.join(flags).upper() or 'trading':<8}{_position(held.get(symbol))}")
    if "positions" not in s:  # a daemon from before per-symbol positions: its one position
        lines.append(f"position: {(s.get('position') or {}).get('symbol', '?')}{_position(s.get('position'))}")
    dec = s.get("last_decision")
    if dec:
        answers = "  ".join(
            f"{m} {a.get('side')} {a.get('confidence', 0):.3f}/{a.get('threshold')}"
            for m, a in sorted((dec.get("models") or {}).items())
        )
        lines.append(f"last decision: {_of(dec)}bar {_iso(dec.get('bar_ts'))}  {answers}")
    sig = s.get("last_signal")
    if sig:
        lines.append(
            f"last signal: {_of(sig)}{sig.get('side')} conf {sig.get('confidence', 0):.3f} @ {sig.get('price')}"
            f"  bar {_iso(sig.get('bar_ts'))}"
        )
    else:
        lines.append("last signal: none yet")
    out = s.get("outbox") or {}
    lines.append("outbox: " + ("  ".join(f"{k} {v}" for k, v in sorted(out.items())) or "empty"))
    rt = s.get("retrain") or {}
    if rt:
        lines.append(f"retrain: last {rt.get('last_outcome', 'never')}  next {rt.get('next_run', '?')}")
    lines += render_ledgers(s.get("ledgers"))
    lines += render_gate((s.get("shadow") or {}).get("gate"))
    return "\n".join(lines)


def _iso(ts_ms: Any) -> str:
    if not isinstance(ts_ms, (int, float)):
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts_ms / 1000)) + "Z"


def _duration(seconds: Any) -> str:
    if not isinstance(seconds, (int, float)):
        return "-"
    s = int(seconds)
    if s < 120:
        return f"{s}s"
    if s < 7200:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"

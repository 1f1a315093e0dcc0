"""The daemon's HTTP API and dashboard, on loopback by default, and `sigd status`.

GET /healthz, /status (JSON), /metrics (Prometheus text), the dashboard page at / with its
snapshot (/api/snapshot, /api/chart) and live event websocket (/ws/events) are open reads.
POST /pause, /resume, /flat (each with an optional `?symbol=ETH/USDT`) and /retrain change
state: they need `Authorization: Bearer <token>` with the token from the environment
variable named by `[api] token_env`, and refuse cross-origin requests (a page of another
site cannot make the browser act). Without the token set, the actions are refused (deny by
default); the read-only endpoints still work. A non-loopback bind needs the token (app.py).
"""

from __future__ import annotations

import argparse
import hmac
import json
import sys
import time
import urllib.error
import urllib.request
from typing import Any, Awaitable, Callable, Mapping, Protocol

from aiohttp import web

from daemon import log
from daemon.domain import Controls
from daemon.metrics import REGISTRY

_log = log.get("sigd.api")
PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4"
ACTIONS = ("pause", "resume", "flat", "retrain")


class Service(Controls, Protocol):
    """What the API shows and controls: the one control protocol (daemon.domain.Controls)
    plus metrics and retrain; `read` (daemon.service.readmodel.ReadModel) feeds the dashboard."""

    def refresh_metrics(self) -> None:
        """Update gauges that are read rather than pushed (outbox depth, stream ages)."""
        ...

    async def retrain(self) -> Mapping[str, Any]:
        """Start the retrain job now."""
        ...


class Api:
    """The aiohttp server; `await start()` binds, `.url` says where, `await stop()` closes."""

    def __init__(self, service: Service, *, host: str = "127.0.0.1", port: int = 0, token: str | None = None) -> None:
        self.service, self.host, self.port = service, host, port
        self._token = token or None
        self._runner: web.AppRunner | None = None
        self.url = ""

    def app(self) -> web.Application:
        """The aiohttp application with every route."""
        app = web.Application(middlewares=[_security_headers])
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/status", self._status)
        app.router.add_get("/metrics", self._metrics)
        for name in ACTIONS:
            app.router.add_post(f"/{name}", self._action(name))
        read = getattr(self.service, "read", None)
        if read is not None:  # the dashboard needs the read model (a test Service may have none)
            from daemon.service.dashboard.server import add_routes

            add_routes(app, read)
        return app

    async def start(self) -> None:
        """Bind the listening socket."""
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        sockets = site._server.sockets if site._server else []  # the bound port when port=0
        port = sockets[0].getsockname()[1] if sockets else self.port
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.url = f"http://{host}:{port}"
        _log.info("api_listening", url=self.url, actions_enabled=self._token is not None)

    async def stop(self) -> None:
        """Close the server."""
        if self._runner is not None:
            await self._runner.shutdown()  # ends the dashboard websockets, so cleanup never waits on them
            await self._runner.cleanup()
            self._runner = None

    async def _healthz(self, request: web.Request) -> web.Response:
        status = self.service.status()
        healthy = bool(status.get("healthy"))
        body = {"healthy": healthy, "reason": status.get("health_reason", "")}
        return web.json_response(body, status=200 if healthy else 503)

    async def _status(self, request: web.Request) -> web.Response:
        return web.json_response(self.service.status(), dumps=_dumps)

    async def _metrics(self, request: web.Request) -> web.Response:
        self.service.refresh_metrics()
        return web.Response(body=REGISTRY.render().encode(), headers={"Content-Type": PROMETHEUS_CONTENT_TYPE})

    def _action(self, name: str) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handler(request: web.Request) -> web.Response:
            refusal = self._refuse(request)
            if refusal is not None:
                _log.warning("api_action_refused", action=name, peer=request.remote, why=refusal.reason)
                return refusal
            symbol = request.query.get("symbol") or None
            _log.info("api_action", action=name, peer=request.remote, symbol=symbol)
            args = () if symbol is None or name == "retrain" else (symbol,)
            try:
                result = getattr(self.service, name)(*args)
                outcome = await result if name in ("flat", "retrain") else {"paused": name == "pause", **(result or {})}
            except ValueError as exc:  # e.g. a symbol the daemon does not trade
                return web.json_response({"ok": False, "action": name, "error": str(exc)}, status=400)
            return web.json_response({"ok": True, "action": name, "outcome": outcome}, dumps=_dumps)

        return handler

    def _refuse(self, request: web.Request) -> web.Response | None:
        origin = request.headers.get("Origin")
        if origin is not None and origin != f"{request.scheme}://{request.host}":
            # A browser says where a request comes from: another site must not drive the daemon.
            return web.json_response({"ok": False, "error": "cross-origin request refused"}, status=403,
                                     reason="cross-origin")
        # Compare in constant time; never echo what was sent.
        if self._token is None:
            return web.json_response({"ok": False, "error": "actions disabled: no API token configured"},
                                     status=403, reason="no token configured")
        sent = request.headers.get("Authorization", "")
        scheme, _, value = sent.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(), self._token.encode()):
            return web.json_response({"ok": False, "error": "missing or wrong bearer token"}, status=401,
                                     reason="unauthorized", headers={"WWW-Authenticate": "Bearer"})
        return None


@web.middleware
async def _security_headers(request: web.Request, handler: Callable[[web.Request], Awaitable[Any]]) -> Any:
    """The page runs only its own scripts, talks only to this server and cannot be framed."""
    response = await handler(request)
    if isinstance(response, web.Response):
        response.headers.setdefault("Content-Security-Policy", "default-src 'self'; connect-src 'self'; "
                                    "img-src 'self' data:; style-src 'self'; frame-ancestors 'none'")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
    return response


def _dumps(obj: Any) -> str:
    return json.dumps(obj, default=str)


# --- sigd status ----------------------------------------------------------------------------


def api_url(cfg: Any) -> str:
    """Where the running daemon's API listens: the configured port, or the bound one it stored."""
    if cfg.api.port:
        return f"http://{cfg.api.host}:{cfg.api.port}"
    from daemon.store import Store

    path = cfg.path(cfg.store.path)
    if not path.exists():
        return ""
    store = Store(path)
    try:
        return store.get_kv("api_url", "") or ""
    finally:
        store.close()


def fetch_status(url: str, timeout: float = 5.0) -> dict[str, Any]:
    """GET /status from a running daemon."""
    with urllib.request.urlopen(f"{url}/status", timeout=timeout) as resp:
        return json.loads(resp.read().decode())


def status_command(args: argparse.Namespace) -> int:
    """Print the running daemon's /status for a person (or raw with --json); 1 when unreachable."""
    from daemon import config as config_mod

    cfg = config_mod.load(args.config)
    if not cfg.api.enabled:  # nothing listens: say why instead of "connection refused"
        print(f"sigd status: {cfg.source}: api.enabled is false, so the daemon serves no /status", file=sys.stderr)
        return 1
    url = api_url(cfg)
    try:
        if not url:
            raise OSError("the daemon has not recorded its API address (is it running?)")
        status = fetch_status(url)
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
    return (f"  {pos.get('amount', 0):+g} @ {pos.get('entry_price', 0):g}"
            f"  realized {pos.get('realized_pnl', 0):+.4f}  fees {pos.get('fees', 0):.4f}")


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
        lines.append(f"  {m.get('name', '?'):<16} {m.get('version', '?')}  threshold {m.get('threshold', '?')}"
                     + (f"  SHADOW (not trading): {m['shadow']}" if m.get("shadow") else ""))
    lines += ["symbols:"] if s.get("symbols") else []
    held = {p.get("symbol"): p for p in s.get("positions") or []}
    for symbol, st in sorted((s.get("symbols") or {}).items()):
        flags = [f for f in ("paused", "halted") if st.get(f)]
        lines.append(f"  {symbol:<14} {' '.join(flags).upper() or 'trading':<8}{_position(held.get(symbol))}")
    if "positions" not in s:  # a daemon from before per-symbol positions: its one position
        lines.append(f"position: {(s.get('position') or {}).get('symbol', '?')}{_position(s.get('position'))}")
    dec = s.get("last_decision")
    if dec:
        answers = "  ".join(f"{m} {a.get('side')} {a.get('confidence', 0):.3f}/{a.get('threshold')}"
                            for m, a in sorted((dec.get("models") or {}).items()))
        lines.append(f"last decision: {_of(dec)}bar {_iso(dec.get('bar_ts'))}  {answers}")
    sig = s.get("last_signal")
    if sig:
        lines.append(f"last signal: {_of(sig)}{sig.get('side')} conf {sig.get('confidence', 0):.3f} @ {sig.get('price')}"
                     f"  bar {_iso(sig.get('bar_ts'))}")
    else:
        lines.append("last signal: none yet")
    out = s.get("outbox") or {}
    lines.append("outbox: " + ("  ".join(f"{k} {v}" for k, v in sorted(out.items())) or "empty"))
    rt = s.get("retrain") or {}
    if rt:
        lines.append(f"retrain: last {rt.get('last_outcome', 'never')}  next {rt.get('next_run', '?')}")
    from daemon.trading.ledgers import render_ledgers

    lines += render_ledgers(s.get("ledgers"))
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

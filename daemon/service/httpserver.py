"""The HTTP server process: the API and the dashboard, served apart from the decision path.

`sigd run` starts this process (python -m daemon.service.httpserver) with the listening
socket it bound and one end of a socket pair (daemon/service/httplink.py). Nothing here
holds state of its own: reads (/status, /metrics, the dashboard's snapshot and state) are
asked of the daemon, whose event loop owns the state and answers between decisions; the
live stream is the daemon's event bus, forwarded over the link. Whatever clients do here
(a thousand idle websockets, a flood of /status, a reader that never reads) costs this
process, not the engine's loop.

Every request passes, in order:
1. the Host check (DNS rebinding): the Host header must be a loopback name, an IP address,
   the bind address or one of `[api] allowed_hosts`; otherwise 421;
2. the Origin check: a request that carries an Origin (every browser websocket does) must
   come from this server's own origin; otherwise 403;
3. beyond loopback, private data (/status, /metrics, the dashboard's data and stream) needs
   the bearer token or the session cookie the page obtains with it (POST /session); the
   actions always need the bearer token.
Once it serves, the process gives up its claim on the CPU: niceness 19 (a busy one gets about
1.5 % of a CPU the daemon wants, and rarely preempts the daemon when it wakes), or SCHED_IDLE
(`cpu_priority = "idle"`: only CPU time nothing else wants; on a host whose CPUs are busy
with anything, the daemon's own retrain included, it starves the API). It starts at the
daemon's priority, so that its start never waits on a busy machine. It ends with the daemon
however the daemon ends: the kernel kills it when the daemon dies (PR_SET_PDEATHSIG, kill -9
included), and it stops when its link closes.
Limits: `[api] max_connections`, a handshake timeout (a connection that sends no request),
the idle timeout of kept-alive connections, the websocket heartbeat, and per websocket a
bounded queue and a send timeout: a page that does not read is dropped, never buffered for.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import dataclasses
import hmac
import ipaddress
import json
import os
import secrets
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from daemon import log
from daemon.service import httplink
from daemon.service.httplink import CALL, CONTROL, EVENT, REPLY, Link, LinkClosed

_log = log.get("sigd.http")
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
SESSION_COOKIE = "sigd_session"
SESSION_S = 12 * 3600.0
NICE = 19  # the lowest priority a niceness gives
PR_SET_PDEATHSIG = 1  # prctl(2)
OPEN_PATHS = frozenset({"/healthz", "/session", "/"})  # beyond loopback too: no private data
ACTIONS = ("pause", "resume", "flat", "retrain")


def csp() -> str:
    """The page runs only its own scripts and styles (the charts' one <style>, by its hash),
    talks only to this server and cannot be framed."""
    from daemon.service.dashboard.server import chart_style_hash

    return (
        f"default-src 'self'; connect-src 'self'; img-src 'self' data:; style-src 'self' '{chart_style_hash()}'; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    )


CSP = csp()


@dataclass(frozen=True)
class Settings:
    """What the daemon tells its HTTP server (sent over the link: the token never goes in argv)."""

    host: str = "127.0.0.1"
    token: str | None = None
    allowed_hosts: tuple[str, ...] = ()
    max_connections: int = 2000
    handshake_timeout_s: float = 10.0
    idle_timeout_s: float = 75.0
    ws_heartbeat_s: float = 20.0
    send_timeout_s: float = 10.0
    snapshot_max_age_s: float = 1.0
    dashboard: bool = True
    cpu_priority: str = "nice"  # "nice": niceness 19; "idle": SCHED_IDLE (niceness 19 where refused)
    log_level: str = "info"
    log_format: str = "auto"

    @property
    def loopback(self) -> bool:
        """Bound to loopback only: the reads stay open (the Host and Origin checks still apply)."""
        return self.host in LOOPBACK_NAMES

    @classmethod
    def of(cls, raw: dict[str, Any]) -> Settings:
        """From the JSON the daemon sent."""
        names = {f.name for f in dataclasses.fields(cls)}
        values: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items() if k in names}
        return cls(**values)


def host_allowed(host_header: str, settings: Settings) -> bool:
    """True when a Host header may reach this server: a loopback name, any IP address (a DNS
    rebinding attack needs a name it controls), the bind address, or an allowed name."""
    name = host_header.strip().lower()
    if name.startswith("["):  # [::1]:8787
        name = name[1:].split("]", 1)[0]
    elif name.count(":") == 1:
        name = name.split(":", 1)[0]
    name = name.rstrip(".")
    if not name:
        return False
    if name in LOOPBACK_NAMES or name == settings.host.lower() or name in {h.lower() for h in settings.allowed_hosts}:
        return True
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        return False


class Counts:
    """What this process reports to the daemon's /metrics (connections, refusals, drops)."""

    def __init__(self) -> None:
        self.values: dict[str, float] = {"connections": 0, "dashboard_clients": 0}
        self.refused: dict[str, int] = {}
        self.changed = asyncio.Event()

    def set(self, name: str, value: float) -> None:
        self.values[name] = value
        self.changed.set()

    def refuse(self, reason: str) -> None:
        self.refused[reason] = self.refused.get(reason, 0) + 1
        self.changed.set()


class Daemon:
    """The daemon, seen from here: calls over the link, with one computation shared by every
    request that may use it (1,000 pages connecting at once cost the engine a few snapshots)."""

    def __init__(self, link: Link, on_event: Callable[[list[str]], None], on_resync: Callable[[], None]) -> None:
        self.link, self.on_event, self.on_resync = link, on_event, on_resync
        self._next_id = 0
        self._waiting: dict[int, asyncio.Future[tuple[int, bytes]]] = {}
        self._cache: dict[tuple[Any, ...], tuple[float, tuple[int, bytes]]] = {}
        self._inflight: dict[tuple[Any, ...], tuple[float, asyncio.Future[tuple[int, bytes]]]] = {}
        self._pending: dict[tuple[Any, ...], asyncio.Future[tuple[int, bytes]]] = {}
        self._changed = 0.0  # reads sent before this (an action changed the state) are stale
        self._sending: set[asyncio.Task[None]] = set()

    async def call(self, name: str, *args: Any) -> tuple[int, bytes]:
        """(status, body) of one call, not shared."""
        self._next_id += 1
        fut: asyncio.Future[tuple[int, bytes]] = asyncio.get_running_loop().create_future()
        self._waiting[self._next_id] = fut
        self.link.send_json(CALL, {"id": self._next_id, "call": name, "args": list(args)})
        return await fut

    async def read(self, name: str, *args: Any, sent_after: float) -> tuple[int, bytes]:
        """A read whose request left after `sent_after` (time.monotonic()): a cached answer or
        one in flight is shared when it is that recent, else one new request serves every
        caller waiting meanwhile."""
        key = (name, *args)
        sent_after = max(sent_after, self._changed)
        cached = self._cache.get(key)
        if cached is not None and cached[0] >= sent_after:
            return cached[1]
        inflight = self._inflight.get(key)
        if inflight is not None and inflight[0] >= sent_after:
            return await asyncio.shield(inflight[1])
        pending = self._pending.get(key)
        if pending is None:
            pending = self._pending[key] = asyncio.get_running_loop().create_future()
            task = asyncio.create_task(self._send(key, pending))
            self._sending.add(task)  # held until done (the loop keeps only weak references)
            task.add_done_callback(self._sending.discard)
        return await asyncio.shield(pending)

    def changed(self) -> None:
        """An action went through: no read sent before now is served again."""
        self._changed = time.monotonic()

    async def _send(self, key: tuple[Any, ...], fut: asyncio.Future[tuple[int, bytes]]) -> None:
        before = self._inflight.get(key)
        if before is not None:  # one at a time per read: the daemon is not asked twice at once
            await asyncio.gather(before[1], return_exceptions=True)
        del self._pending[key]
        sent = time.monotonic()
        self._inflight[key] = (sent, fut)
        try:
            result = await self.call(*key)
            self._cache[key] = (sent, result)
            fut.set_result(result)
        except BaseException as exc:
            if not fut.done():
                fut.set_exception(exc)
        finally:
            if self._inflight.get(key, (0, None))[1] is fut:
                del self._inflight[key]

    async def run(self) -> None:
        """Frames from the daemon until it goes away (its calls still waiting then fail)."""
        try:
            await self._frames()
        finally:
            for fut in self._waiting.values():
                if not fut.done():
                    fut.set_exception(LinkClosed("the daemon went away"))

    async def _frames(self) -> None:
        while True:
            kind, payload = await self.link.receive()
            if kind == EVENT:
                self.on_event(httplink.split_events(payload))
            elif kind == REPLY:
                call_id, status, body = httplink.parse_reply(payload)
                fut = self._waiting.pop(call_id, None)
                if fut is not None and not fut.done():
                    fut.set_result((status, body))
            elif kind == CONTROL:
                msg = json.loads(payload)
                if msg.get("resync"):
                    self.on_resync()
                if msg.get("stop"):
                    return


class Server:
    """The aiohttp application, its limits and its security checks."""

    def __init__(self, settings: Settings, daemon: Daemon, counts: Counts) -> None:
        self.settings, self.daemon, self.counts = settings, daemon, counts
        self._sessions: dict[str, float] = {}
        self._greeted: set[Any] = set()  # connections that sent a request (emptied as they close)
        self.runner: web.AppRunner | None = None
        self.hub: Any = None

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._guard], client_max_size=64 * 1024)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/status", self._read("status"))
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/session", self._session_state)
        app.router.add_post("/session", self._session_open)
        app.router.add_delete("/session", self._session_close)
        for name in ACTIONS:
            app.router.add_post(f"/{name}", self._action(name))
        if self.settings.dashboard:
            from daemon.service.dashboard.server import Hub, add_routes

            self.hub = Hub(self.daemon, self.settings, self.counts)
            add_routes(app, self.daemon, self.hub, self.settings)
        return app

    async def start(self, sock: socket.socket) -> None:
        """Serve the listening socket, with the connection limits."""
        self.runner = web.AppRunner(
            self.app(), access_log=None, handle_signals=False, keepalive_timeout=self.settings.idle_timeout_s
        )
        await self.runner.setup()
        manager = self.runner.server
        assert manager is not None
        made, lost = manager.connection_made, manager.connection_lost

        def connection_made(handler: Any, transport: asyncio.Transport) -> None:
            made(handler, transport)
            n = len(manager._connections)
            if n > self.settings.max_connections:
                self.counts.refuse("max_connections")
                _log.debug("http_connection_refused", reason="max_connections", limit=self.settings.max_connections)
                # Cut once the handler's task has started (cut inside connection_made, it fails).
                asyncio.get_running_loop().call_soon(transport.abort)
                return
            self.counts.set("connections", n)
            asyncio.get_running_loop().call_later(self.settings.handshake_timeout_s, self._handshake_due, handler, transport)

        def connection_lost(handler: Any, exc: BaseException | None = None) -> None:
            lost(handler, exc)
            self._greeted.discard(handler)
            self.counts.set("connections", max(0, len(manager._connections) - 1))

        manager.connection_made = connection_made  # type: ignore[method-assign]
        manager.connection_lost = connection_lost  # type: ignore[method-assign]
        await web.SockSite(self.runner, sock, shutdown_timeout=1.0).start()

    def _handshake_due(self, handler: Any, transport: asyncio.Transport) -> None:
        if handler not in self._greeted and not transport.is_closing():
            self.counts.refuse("handshake_timeout")
            _log.debug("http_handshake_timeout", timeout_s=self.settings.handshake_timeout_s)
            transport.abort()

    async def stop(self) -> None:
        if self.hub is not None:
            await self.hub.close()
        if self.runner is not None:
            await self.runner.shutdown()
            await self.runner.cleanup()

    # --- the checks ---------------------------------------------------------------------------

    @web.middleware
    async def _guard(self, request: web.Request, handler: Callable[[web.Request], Awaitable[Any]]) -> Any:
        self._greeted.add(request.protocol)
        refusal = self._refusal(request)
        if refusal is not None:
            self.counts.refuse(refusal.reason or "refused")
            _log.debug("http_refused", path=request.path, status=refusal.status, why=refusal.reason, peer=request.remote)
            return _secure(refusal)
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            return _secure(web.Response(status=exc.status, text=exc.text or exc.reason))
        except ConnectionError as exc:  # the client went away mid-answer: nothing to say to it
            _log.debug("http_client_gone", path=request.path, error=type(exc).__name__)
            raise
        if isinstance(response, web.Response):
            _secure(response)
        return response

    def _refusal(self, request: web.Request) -> web.Response | None:
        if not host_allowed(request.host, self.settings):
            return _error(421, "unknown Host: add the name to [api] allowed_hosts to serve it", "host")
        origin = request.headers.get("Origin")
        if origin is not None and origin != f"{request.scheme}://{request.host}":
            return _error(403, "cross-origin request refused", "cross-origin")
        if (
            self.settings.loopback or request.path in OPEN_PATHS or request.path.startswith("/ui/") or request.method == "POST"
        ):  # actions check the bearer token themselves
            return None
        if self._bearer_ok(request) or self._session_ok(request):
            return None
        return _error(
            401,
            "private data: send the bearer token, or open a session with it (POST /session)",
            "unauthorized",
            headers={"WWW-Authenticate": "Bearer"},
        )

    def _bearer_ok(self, request: web.Request) -> bool:
        token = self.settings.token
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        # Compared in constant time, as bytes (a header's undecodable bytes arrive as surrogates);
        # never echoed.
        sent = value.strip().encode("utf-8", "surrogateescape")
        return bool(token) and scheme.lower() == "bearer" and hmac.compare_digest(sent, token.encode())  # type: ignore[union-attr]

    def _session_ok(self, request: web.Request) -> bool:
        sid = request.cookies.get(SESSION_COOKIE, "")
        until = self._sessions.get(sid)
        return until is not None and until > time.monotonic()

    # --- sessions: how a page beyond loopback reads (a websocket cannot send a header) --------

    async def _session_state(self, request: web.Request) -> web.Response:
        return web.json_response({"required": not self.settings.loopback, "active": self._session_ok(request)})

    async def _session_open(self, request: web.Request) -> web.Response:
        if not self._bearer_ok(request):
            return _error(401, "missing or wrong bearer token", "unauthorized", headers={"WWW-Authenticate": "Bearer"})
        now = time.monotonic()
        self._sessions = {k: v for k, v in self._sessions.items() if v > now}
        sid = secrets.token_urlsafe(32)
        self._sessions[sid] = now + SESSION_S
        response = web.json_response({"ok": True, "expires_in_s": SESSION_S})
        response.set_cookie(
            SESSION_COOKIE, sid, max_age=int(SESSION_S), path="/", httponly=True, samesite="Strict", secure=request.secure
        )
        return response

    async def _session_close(self, request: web.Request) -> web.Response:
        self._sessions.pop(request.cookies.get(SESSION_COOKIE, ""), None)
        response = web.json_response({"ok": True})
        response.del_cookie(SESSION_COOKIE, path="/")
        return response

    # --- the endpoints ------------------------------------------------------------------------

    def _fresh(self) -> float:
        return time.monotonic() - self.settings.snapshot_max_age_s

    async def _healthz(self, request: web.Request) -> web.Response:
        # Never from an older answer: a red /healthz shows at once (concurrent probes share one).
        status, body = await self.daemon.read("health", sent_after=time.monotonic())
        if status != 200:
            return _raw(status, body)
        s = json.loads(body)
        return web.json_response(s, status=200 if s.get("healthy") else 503)

    def _read(self, name: str) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handler(request: web.Request) -> web.Response:
            return _raw(*await self.daemon.read(name, sent_after=self._fresh()))

        return handler

    async def _metrics(self, request: web.Request) -> web.Response:
        status, body = await self.daemon.read("metrics", sent_after=self._fresh())
        return web.Response(status=status, body=body, headers={"Content-Type": "text/plain; version=0.0.4"})

    def _action(self, name: str) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handler(request: web.Request) -> web.Response:
            if self.settings.token is None:
                _log.warning("api_action_refused", action=name, peer=request.remote, why="no token configured")
                return _error(403, "actions disabled: no API token configured", "no token configured")
            if not self._bearer_ok(request):
                _log.warning("api_action_refused", action=name, peer=request.remote, why="unauthorized")
                return _error(401, "missing or wrong bearer token", "unauthorized", headers={"WWW-Authenticate": "Bearer"})
            symbol = request.query.get("symbol") or None
            _log.info("api_action", action=name, peer=request.remote, symbol=symbol)
            answer = await self.daemon.call("action", name, symbol)
            self.daemon.changed()
            return _raw(*answer)

        return handler


def _error(status: int, message: str, reason: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"ok": False, "error": message}, status=status, reason=reason, headers=headers)


def _raw(status: int, body: bytes) -> web.Response:
    return web.Response(status=status, body=body, content_type="application/json")


def _secure(response: web.Response) -> web.Response:
    """The security headers on every answer (see csp())."""
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    return response


async def _report(link: Link, counts: Counts) -> None:
    """Counts to the daemon when they change, at most once a second."""
    while True:
        await counts.changed.wait()
        counts.changed.clear()
        link.send_json(CONTROL, {"counts": {**counts.values, "refused": counts.refused}})
        await asyncio.sleep(1.0)


async def serve(listen_fd: int, link_fd: int) -> int:
    """The process: settings from the daemon, serve until the daemon says stop or goes away."""
    link = await Link.open(socket.socket(fileno=link_fd))
    _, payload = await link.receive()  # the first frame: the settings
    settings = Settings.of(json.loads(payload)["settings"])
    log.setup(settings.log_level, settings.log_format)
    if settings.token:
        log.register_secret(settings.token)
    counts = Counts()
    server: Server | None = None
    daemon = Daemon(
        link,
        lambda texts: server.hub.publish(texts) if server and server.hub else None,
        lambda: server.hub.resync() if server and server.hub else None,
    )
    server = Server(settings, daemon, counts)
    await server.start(socket.socket(fileno=listen_fd))
    link.send_json(CONTROL, {"ready": True})
    _log.info("http_server_priority", priority=lower_priority(settings.cpu_priority))
    reporter = asyncio.create_task(_report(link, counts))
    try:
        await daemon.run()
    except LinkClosed:
        _log.info("http_daemon_gone")
    finally:
        reporter.cancel()
        await server.stop()
    return 0


def end_with_parent(parent: int) -> bool:
    """Have the kernel kill this process when its parent dies (kill -9 included); False where
    prctl is not available (the closed link still stops it). Exits at once when the parent is
    already gone (it died before this call: the signal would never come)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        armed = libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0
    except (OSError, AttributeError):
        armed = False
    if os.getppid() != parent:
        os._exit(0)
    return armed


def lower_priority(priority: str) -> str:
    """Give up this process's claim on the CPU (see the module doc); what it got."""
    if priority == "idle":
        try:
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
            return "idle"
        except (OSError, AttributeError) as exc:  # not Linux, or a sandbox that forbids it
            _log.debug("http_server_sched_idle_refused", error=str(exc))
    try:
        os.setpriority(os.PRIO_PROCESS, 0, NICE)
        return f"nice {os.getpriority(os.PRIO_PROCESS, 0)}"
    except OSError as exc:
        _log.warning("http_server_nice_refused", error=str(exc))
        return "unchanged"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m daemon.service.httpserver")
    p.add_argument("--listen-fd", type=int, required=True)
    p.add_argument("--link-fd", type=int, required=True)
    p.add_argument("--parent", type=int, default=0, help="the daemon's pid: this process ends when it does")
    a = p.parse_args(argv)
    if a.parent:
        end_with_parent(a.parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the daemon stops us
    os.environ.pop("NOTIFY_SOCKET", None)  # systemd hears from the daemon only
    return asyncio.run(serve(a.listen_fd, a.link_fd))


if __name__ == "__main__":
    sys.exit(main())

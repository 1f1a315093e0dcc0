"""The daemon's HTTP API and dashboard, on loopback by default.

GET /healthz, /status (JSON), /metrics (Prometheus text), the dashboard page at / with its
snapshot (/api/snapshot, /api/chart) and live event websocket (/ws/events). POST /pause,
/resume, /flat (each with an optional `?symbol=ETH/USDT`) and /retrain change state: they
need `Authorization: Bearer <token>` with the token from the environment variable named by
`[api] token_env`. Without the token set, the actions are refused (deny by default).

The server runs in its own process (daemon/service/httpserver.py), so that no client can
delay a decision. This module is its daemon side: it binds the listening socket (a port in
use is one line naming the key and the process holding it), starts the process, forwards the
event bus to it, and answers its calls on the engine's loop, which owns the state: reads wait
for the running decision cycle to finish and are shared by every client asking meanwhile.
The security model (Host and Origin checks, private data beyond loopback, limits) is in
daemon/service/httpserver.py and docs/operations/security.md.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
import time
import urllib.request
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict
from typing import Any, Protocol

from daemon import events, log, ports
from daemon.domain import TIMEFRAME_MS, Controls
from daemon.metrics import REGISTRY
from daemon.service.httplink import CALL, CONTROL, EVENT, REPLY, Link, LinkClosed, events_payload, reply
from daemon.service.httpserver import Settings

_log = log.get("sigd.api")
PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4"
ACTIONS = ("pause", "resume", "flat", "retrain")
FORWARD_QUEUE = 8192  # events between the bus and the link
LINK_BUFFER = 16 * 1024 * 1024  # bytes the server process may fall behind before it resyncs its pages
QUIET_WAIT_S = 5.0  # longest a read waits for the running decision cycle
_CONNECTIONS = REGISTRY.gauge("sigd_http_connections", "Open connections to the HTTP API and dashboard")
_PAGES = REGISTRY.gauge("sigd_dashboard_clients", "Dashboard pages connected to /ws/events")
_REFUSED = REGISTRY.counter(
    "sigd_http_refused_total",
    "Requests and connections the HTTP server refused, by reason (host, cross-origin, "
    "unauthorized, max_connections, handshake_timeout)",
)
_READ_MS = REGISTRY.histogram("sigd_http_read_ms", "Engine-loop time of one read for the HTTP server, by call")
_RESTARTS = REGISTRY.counter("sigd_http_server_restarts_total", "Times the HTTP server process was restarted")


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
    """The HTTP server process and its link; `await start()` binds and starts it, `.url` says
    where, `await stop()` ends it. `quiet` (optional) waits until no decision is running."""

    def __init__(
        self,
        service: Service,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        token: str | None = None,
        settings: Settings | None = None,
        sock: socket.socket | None = None,
        quiet: Callable[[], Awaitable[Any]] | None = None,
        key: str = "api.port",
        fallback: bool = False,
    ) -> None:
        self.service, self.host, self.port, self.key, self.fallback = service, host, port, key, fallback
        base = settings or Settings()
        self.settings = Settings(
            **{**asdict(base), "host": host, "token": token or None, "dashboard": getattr(service, "read", None) is not None}
        )
        self.sock, self.quiet = sock, quiet
        self.url = ""
        self._proc: asyncio.subprocess.Process | None = None
        self._link: Link | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._stopping = False
        self._reads = asyncio.Lock()
        self._answering: set[asyncio.Task[None]] = set()
        self._refused: dict[str, float] = {}
        self._lost = False
        self._sub: events.Subscription | None = None
        self._held: list[events.Event] = []  # taken from the bus, waiting for the running cycle

    def app(self) -> Any:
        """The server process's aiohttp application (every route and check), built here unserved
        (the docs list its routes); `start()` serves it in its own process."""
        from daemon.service.httpserver import Counts, Server

        return Server(self.settings, None, Counts()).app()  # type: ignore[arg-type]

    async def start(self) -> None:
        """Bind (unless given the socket), start the server process, wait until it serves."""
        if self.sock is None:
            self.sock = ports.listen(self.host, self.port, self.key, fallback=self.fallback)
        port = self.sock.getsockname()[1]
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.url = f"http://{host}:{port}"
        await self._spawn()
        self._tasks += [
            asyncio.create_task(self._forward(), name="api:events"),
            asyncio.create_task(self._supervise(), name="api:server"),
        ]
        _log.info(
            "api_listening",
            url=self.url,
            actions_enabled=self.settings.token is not None,
            pid=self._proc.pid if self._proc else None,
        )

    async def _spawn(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        assert self.sock is not None
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [_root(), os.environ.get("PYTHONPATH")]))}
        try:
            self._proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "daemon.service.httpserver",
                "--listen-fd",
                str(self.sock.fileno()),
                "--link-fd",
                str(theirs.fileno()),
                "--parent",
                str(os.getpid()),
                pass_fds=(self.sock.fileno(), theirs.fileno()),
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
            )
        finally:
            theirs.close()
        link = await Link.open(ours)
        link.send_json(CONTROL, {"settings": asdict(self.settings)})
        try:
            while True:  # until it serves
                kind, payload = await asyncio.wait_for(link.receive(), 60.0)
                if kind == CONTROL and json.loads(payload).get("ready"):
                    break
        except (TimeoutError, LinkClosed) as exc:
            rc = self._proc.returncode if self._proc.returncode is not None else "still running"
            raise RuntimeError(f"the HTTP server process did not start ({exc or 'timeout'}; exit code {rc})") from None
        self._link = link
        self._lost = False
        self._tasks.append(asyncio.create_task(self._serve(link), name="api:calls"))

    async def stop(self) -> None:
        """Stop the server process (politely, then not) and close the socket."""
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._link is not None:
            try:
                self._link.send_json(CONTROL, {"stop": True})
            except LinkClosed:
                pass
        if self._proc is not None and self._proc.returncode is None:
            try:
                await asyncio.wait_for(self._proc.wait(), 3.0)
            except TimeoutError:
                self._proc.kill()
                await self._proc.wait()
        if self._link is not None:
            self._link.close()
            self._link = None
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    async def _supervise(self) -> None:
        """A server process that dies is started again (the listening socket stays bound)."""
        while not self._stopping:
            assert self._proc is not None
            rc = await self._proc.wait()
            if self._stopping:
                return
            _log.error("http_server_exited", code=rc, note="restarting it in 1 s; trading goes on")
            _RESTARTS.inc()
            await asyncio.sleep(1.0)
            try:
                await self._spawn()
            except RuntimeError as exc:
                _log.error("http_server_restart_failed", error=str(exc))

    # --- the bus, forwarded -------------------------------------------------------------------

    async def _forward(self) -> None:
        """The bus's events to the server process, in batches sent when no decision cycle runs:
        an event published during a cycle waits for its commit, so neither the JSON here nor the
        fan-out to the pages there competes with a decision. When the process falls behind (or
        the bus dropped us), its pages resync rather than miss events silently."""
        while True:
            sub = self._sub = events.BUS.subscribe("http", maxsize=FORWARD_QUEUE)
            try:
                while True:
                    first = await sub.queue.get()
                    if first is None:  # dropped by the bus
                        break
                    self._held.append(first)  # a reply flushing meanwhile sends it first, in order
                    await self._wait_quiet()
                    if not self._flush():
                        break
            finally:
                sub.close()
                self._sub = None
            if self._link is not None:
                self._lost = True
            _log.warning("api_events_resubscribed")

    def _flush(self) -> bool:
        """Send the held events and every event queued behind them as one frame; False when
        the subscription has ended (the bus dropped it)."""
        sub, ended = self._sub, False
        batch, self._held = self._held, []
        if sub is not None:
            while not sub.queue.empty():
                event = sub.queue.get_nowait()
                if event is None:  # the end: left for the forwarder, which resubscribes
                    sub.queue.put_nowait(None)
                    ended = True
                    break
                batch.append(event)
        link = self._link
        if not batch or link is None:
            return not ended
        if link.buffered > LINK_BUFFER:
            self._lost = True
            return not ended
        try:
            if self._lost:
                link.send_json(CONTROL, {"resync": True})
                self._lost = False
            link.send(EVENT, events_payload([_dumps(event.to_dict()) for event in batch]))
        except LinkClosed:
            pass
        return not ended

    # --- calls from the server process --------------------------------------------------------

    async def _serve(self, link: Link) -> None:
        """Answer the server's calls until its link closes."""
        try:
            while True:
                kind, payload = await link.receive()
                if kind == CALL:
                    task = asyncio.create_task(self._answer(link, json.loads(payload)))
                    self._answering.add(task)  # held until done (the loop keeps only weak references)
                    task.add_done_callback(self._answering.discard)
                elif kind == CONTROL:
                    self._counts(json.loads(payload).get("counts") or {})
        except LinkClosed:
            return
        except Exception as exc:  # a bug here must not end the link silently
            _log.error("api_link_failed", error=repr(exc))
            raise

    async def _answer(self, link: Link, msg: dict[str, Any]) -> None:
        name, args = str(msg.get("call")), list(msg.get("args") or [])
        try:
            if name == "action":
                status, body = await self._action(str(args[0]), args[1] if len(args) > 1 else None)
            else:
                async with self._reads:  # one read at a time on the engine's loop
                    await self._wait_quiet()
                    started = time.perf_counter()
                    status, body = self._read(name, args)
                    _READ_MS.observe((time.perf_counter() - started) * 1000.0, call=name)
        except Exception as exc:
            _log.error("api_call_failed", call=name, error=repr(exc))
            status, body = 500, _dumps({"ok": False, "error": f"{name} failed: {type(exc).__name__}"}).encode()
        try:
            self._flush()  # the events published before this answer was computed go first
            link.send(REPLY, reply(int(msg.get("id", 0)), status, body))
        except LinkClosed:
            pass

    async def _wait_quiet(self) -> None:
        if self.quiet is not None:
            try:
                async with asyncio.timeout(QUIET_WAIT_S):  # not wait_for: it can swallow a cancel (3.11)
                    await self.quiet()
            except TimeoutError:
                pass

    def _read(self, name: str, args: list[Any]) -> tuple[int, bytes]:
        read = getattr(self.service, "read", None)
        if name == "status":
            return 200, _dumps(self.service.status()).encode()
        if name == "health":  # /healthz: only what health needs, so it can always be fresh
            if read is not None and hasattr(read, "healthy"):
                healthy, reason = read.healthy(read.streams())
            else:
                status = self.service.status()
                healthy, reason = bool(status.get("healthy")), str(status.get("health_reason", ""))
            return 200, _dumps({"healthy": healthy, "reason": reason}).encode()
        if name == "metrics":
            self.service.refresh_metrics()
            return 200, REGISTRY.render().encode()
        if read is None or name not in ("snapshot", "snapshot_event", "state", "chart"):
            return 404, _dumps({"ok": False, "error": f"unknown read {name!r}"}).encode()
        if name == "state":
            return 200, _dumps({"kind": "state", **read.state()}).encode()
        tf = str(args[-1]) if args else "1m"
        if tf not in TIMEFRAME_MS:
            return 400, _dumps({"ok": False, "error": f"unknown timeframe {tf!r}"}).encode()
        if name == "chart":
            symbol = str(args[0])
            if symbol not in read.symbols():
                return 400, _dumps({"ok": False, "error": f"unknown symbol {symbol!r}"}).encode()
            return 200, _dumps(read.chart(symbol, tf)).encode()
        body = read.snapshot(tf)
        return 200, _dumps({"kind": "snapshot", **body} if name == "snapshot_event" else body).encode()

    async def _action(self, name: str, symbol: str | None) -> tuple[int, bytes]:
        if name not in ACTIONS:
            return 404, _dumps({"ok": False, "error": f"unknown action {name!r}"}).encode()
        args = () if symbol is None or name == "retrain" else (symbol,)
        try:
            result = getattr(self.service, name)(*args)
            outcome = await result if name in ("flat", "retrain") else {"paused": name == "pause", **(result or {})}
        except ValueError as exc:  # e.g. a symbol the daemon does not trade
            return 400, _dumps({"ok": False, "action": name, "error": str(exc)}).encode()
        return 200, _dumps({"ok": True, "action": name, "outcome": outcome}).encode()

    def _counts(self, counts: Mapping[str, Any]) -> None:
        if "connections" in counts:
            _CONNECTIONS.set(float(counts["connections"]))
        if "dashboard_clients" in counts:
            _PAGES.set(float(counts["dashboard_clients"]))
        for reason, total in (counts.get("refused") or {}).items():
            delta = float(total) - self._refused.get(reason, 0.0)
            if delta > 0:
                _REFUSED.inc(delta, reason=reason)
            self._refused[reason] = float(total)


def _root() -> str:
    """The directory holding the `daemon` package (the server process imports it from there)."""
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _dumps(obj: Any) -> str:
    return json.dumps(obj, default=str, separators=(",", ":"))


# --- the running daemon's address and /status, for `sigd status` (daemon/commands/status.py) ---


def api_url(cfg: Any) -> str:
    """Where the running daemon's API listens: the URL it stored when it bound (a free port
    after a fallback, or an ephemeral one), else the configured port."""
    configured = f"http://{cfg.api.host}:{cfg.api.port}" if cfg.api.port else ""
    from daemon.store import Store

    path = cfg.path(cfg.store.path)
    if not path.exists():
        return configured
    store = Store(path)
    try:
        return store.get_kv("api_url", "") or configured
    finally:
        store.close()


def fetch_status(url: str, timeout: float = 5.0, token: str | None = None) -> dict[str, Any]:
    """GET /status from a running daemon (with the bearer token when given: beyond loopback
    /status is private)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with urllib.request.urlopen(urllib.request.Request(f"{url}/status", headers=headers), timeout=timeout) as resp:
        return json.loads(resp.read().decode())

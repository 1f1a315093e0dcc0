"""The local signal websocket: alert events streamed as JSON text frames to loopback consumers.

Semantics: a live stream, not a mailbox. It subscribes to the event bus (daemon/events.py)
and, for each alert event of its `types` once the outbox has committed it, broadcasts the
envelope (the same JSON object a webhook receives, without a signature) to the clients
connected at that moment. It writes no outbox rows: with nobody connected nothing is kept,
retried or dead-lettered. A client that needs every event uses a webhook, or reads the
`signals` table. Messages sent by clients are ignored.

It runs on its own thread and event loop, fed by the bus (a thread-safe hand-off), so no
client can delay a decision. It serves programs, not pages: a handshake that carries an
Origin (every browser sends one) is refused (403), and so is a Host header that is not a
loopback name or address (DNS rebinding). Limits: MAX_CLIENTS connections, the handshake
within OPEN_TIMEOUT_S, a ping every PING_S (no pong: closed), and a client whose unsent
frames pass WRITE_LIMIT bytes (it does not read) is dropped, never buffered for.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from http import HTTPStatus
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, broadcast, serve
from websockets.http11 import Request, Response

from daemon import events
from daemon import log as log_mod
from daemon.alerts.outbox import compact_json, takes
from daemon.metrics import REGISTRY
from daemon.ports import listen

log = log_mod.get("sigd.signalws")

_CLIENTS = REGISTRY.gauge("sigd_signal_ws_clients", "Clients connected to the signal websocket")
_SENT = REGISTRY.counter("sigd_signal_ws_broadcasts_total", "Alert events broadcast to signal websocket clients")
_REFUSED = REGISTRY.counter("sigd_signal_ws_refused_total", "Signal websocket handshakes refused or clients dropped, by reason")
MAX_CLIENTS = 256
OPEN_TIMEOUT_S = 10.0
PING_S = 20.0
WRITE_LIMIT = 1 << 20  # unsent bytes per client before it is dropped as a reader that does not read
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


class SignalWebsocket:
    """A websocket server on loopback, on its own thread, broadcasting committed alert events."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, types: frozenset[str] = frozenset(), shadow: bool = False) -> None:
        self.name = "signal_ws"
        self.types = types
        self.shadow = shadow  # also stream shadow-ledger signals
        self.host = host
        self._port = port
        self._server: Server | None = None
        self._clients: set[ServerConnection] = set()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None

    @property
    def port(self) -> int:
        """The bound port (the real one when configured as 0)."""
        if self._server is None:
            return self._port
        return int(next(iter(self._server.sockets)).getsockname()[1])

    @property
    def url(self) -> str:
        """ws://host:port/ for consumers."""
        return f"ws://{self.host}:{self.port}/"

    @property
    def clients(self) -> int:
        """How many consumers are connected."""
        return len(self._clients)

    async def start(self) -> None:
        """Bind (a port in use: ConfigError naming alerts.signal_ws.port and its holder), then
        serve and listen to the bus on the server's own thread."""
        if self._thread is not None:
            return
        sock = listen(self.host, self._port, "alerts.signal_ws.port")
        ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._thread = threading.Thread(target=self._run, args=(sock, ready), name="signal_ws", daemon=True)
        self._thread.start()
        await asyncio.wrap_future(ready)
        log.info("signal_ws_listening", url=self.url)

    async def close(self) -> None:
        """Close every connection and the server; the thread ends."""
        if self._thread is None:
            return
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stop.set)
        await asyncio.to_thread(self._thread.join, 10.0)
        self._thread = None

    def _run(self, sock: Any, ready: concurrent.futures.Future[None]) -> None:
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._main(sock, ready))
        except BaseException as exc:
            if not ready.done():
                ready.set_exception(exc)
            else:
                log.error("signal_ws_failed", error=repr(exc))
        finally:
            loop.close()

    async def _main(self, sock: Any, ready: concurrent.futures.Future[None]) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        self._server = await serve(
            self._handle,
            sock=sock,
            origins=[None],
            process_request=self._check,
            open_timeout=OPEN_TIMEOUT_S,
            ping_interval=PING_S,
            ping_timeout=PING_S,
            max_size=4096,
            write_limit=WRITE_LIMIT,
        )
        pump = asyncio.create_task(self._listen(), name="signal_ws:bus")
        ready.set_result(None)
        await self._stop.wait()
        pump.cancel()
        await asyncio.gather(pump, return_exceptions=True)
        self._server.close()
        await self._server.wait_closed()

    def _check(self, conn: ServerConnection, request: Request) -> Response | None:
        """Host on loopback, no more than MAX_CLIENTS (the Origin is refused by `origins`)."""
        hosts = request.headers.get_all("Host")
        host = hosts[0] if len(hosts) == 1 else ""
        name = host[1:].split("]", 1)[0] if host.startswith("[") else host.rsplit(":", 1)[0]
        if name.lower() not in LOOPBACK_HOSTS:
            _REFUSED.inc(reason="host")
            log.debug("signal_ws_refused", why="host", host=host[:80])
            return conn.respond(HTTPStatus.MISDIRECTED_REQUEST, "unknown Host\n")
        if len(self._clients) >= MAX_CLIENTS:
            _REFUSED.inc(reason="max_clients")
            log.debug("signal_ws_refused", why="max_clients", limit=MAX_CLIENTS)
            return conn.respond(HTTPStatus.SERVICE_UNAVAILABLE, "too many clients\n")
        return None

    async def _listen(self) -> None:
        """Bus → clients; if the bus ever drops us (a starved loop), subscribe again."""
        while True:
            sub = events.BUS.subscribe(self.name)
            try:
                async for event in sub:
                    if isinstance(event, events.AlertQueued) and takes(self, event.type):
                        self.send(event)
            finally:
                sub.close()
            log.warning("signal_ws_resubscribed")

    def send(self, event: events.AlertQueued) -> None:
        """Broadcast the envelope to the clients connected now (nobody: nothing happens); a
        client whose unsent frames passed WRITE_LIMIT does not read and is dropped."""
        if self._loop is not None and self._loop is not _running_loop():
            self._loop.call_soon_threadsafe(self.send, event)
            return
        for conn in list(self._clients):
            if conn.transport.get_write_buffer_size() > WRITE_LIMIT:
                _REFUSED.inc(reason="slow_reader")
                log.info("signal_ws_client_dropped", peer=str(conn.remote_address), why="does not read")
                self._clients.discard(conn)
                conn.transport.abort()
        if self._clients:
            broadcast(self._clients, compact_json(event.envelope()))
            _SENT.inc()

    async def _handle(self, conn: ServerConnection) -> None:
        self._clients.add(conn)
        _CLIENTS.set(len(self._clients))
        log.info("signal_ws_client_connected", peer=str(conn.remote_address), clients=len(self._clients))
        try:
            async for _ in conn:  # consumers have nothing to say; drain until they leave
                pass
        except Exception as exc:  # a broken client only ends its own connection: one debug line
            log.debug("signal_ws_client_error", error=f"{type(exc).__name__}: {exc}")
        finally:
            self._clients.discard(conn)
            _CLIENTS.set(len(self._clients))
            log.info("signal_ws_client_left", clients=len(self._clients))


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None

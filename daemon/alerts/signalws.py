"""The local signal websocket: alert events streamed as JSON text frames to loopback consumers.

Semantics: a live stream, not a mailbox. It subscribes to the event bus (daemon/events.py)
and, for each alert event of its `types` once the outbox has committed it, broadcasts the
envelope (the same JSON object a webhook receives, without a signature) to the clients
connected at that moment. It writes no outbox rows: with nobody connected nothing is kept,
retried or dead-lettered. A client that needs every event uses a webhook, or reads the
`signals` table. A slow client whose send buffer is full misses frames rather than
delaying the others (websockets' `broadcast`). Messages sent by clients are ignored.
"""

from __future__ import annotations

import asyncio

from websockets.asyncio.server import Server, ServerConnection, broadcast, serve

from daemon import events
from daemon import log as log_mod
from daemon.metrics import REGISTRY
from daemon.alerts.outbox import compact_json

log = log_mod.get("sigd.signalws")

_CLIENTS = REGISTRY.gauge("sigd_signal_ws_clients", "Clients connected to the signal websocket")
_SENT = REGISTRY.counter("sigd_signal_ws_broadcasts_total", "Alert events broadcast to signal websocket clients")


class SignalWebsocket:
    """A websocket server on loopback that broadcasts committed alert events from the bus."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, types: frozenset[str] = frozenset()) -> None:
        self.name = "signal_ws"
        self.types = types
        self.host = host
        self._port = port
        self._server: Server | None = None
        self._clients: set[ServerConnection] = set()
        self._pump: asyncio.Task[None] | None = None

    @property
    def port(self) -> int:
        """The bound port (the real one when configured as 0)."""
        if self._server is None:
            return self._port
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        """ws://host:port/ for consumers."""
        return f"ws://{self.host}:{self.port}/"

    @property
    def clients(self) -> int:
        """How many consumers are connected."""
        return len(self._clients)

    async def start(self) -> None:
        """Bind, start accepting consumers and listening to the bus."""
        if self._server is None:
            try:
                self._server = await serve(self._handle, self.host, self._port)
            except OSError as exc:  # e.g. the port is taken: say which setting to change
                raise OSError(exc.errno, f"alerts.signal_ws: cannot listen on {self.host}:{self._port}: "
                                         f"{exc.strerror}") from None
            self._pump = asyncio.create_task(self._listen(), name="signal_ws:bus")
            log.info("signal_ws_listening", url=self.url)

    async def close(self) -> None:
        """Stop listening to the bus, close every connection and the server."""
        if self._pump is not None:
            self._pump.cancel()
            await asyncio.gather(self._pump, return_exceptions=True)
            self._pump = None
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _listen(self) -> None:
        """Bus → clients; if the bus ever drops us (a starved loop), subscribe again."""
        while True:
            sub = events.BUS.subscribe(self.name)
            try:
                async for event in sub:
                    if isinstance(event, events.AlertQueued) and (not self.types or event.type in self.types):
                        self.send(event)
            finally:
                sub.close()
            log.warning("signal_ws_resubscribed")

    def send(self, event: events.AlertQueued) -> None:
        """Broadcast the envelope to the clients connected now (nobody: nothing happens)."""
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
        except Exception as exc:  # a broken client only ends its own connection
            log.info("signal_ws_client_error", error=f"{type(exc).__name__}: {exc}")
        finally:
            self._clients.discard(conn)
            _CLIENTS.set(len(self._clients))
            log.info("signal_ws_client_left", clients=len(self._clients))

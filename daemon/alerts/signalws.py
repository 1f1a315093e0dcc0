"""The local signal websocket: events streamed as JSON text frames to loopback consumers.

Semantics: a live stream, not a mailbox. Delivering a row means broadcasting its envelope
(the same JSON object a webhook receives, without a signature) to the clients connected at
that moment; the row is then `sent`. With nobody connected the row is `skipped` at once,
so the outbox never piles up retries or dead letters for an empty room. A client that
needs every event uses a webhook, or reads the `signals` table. A slow client whose send
buffer is full misses frames rather than delaying the others (websockets' `broadcast`).
Messages sent by clients are ignored.
"""

from __future__ import annotations

from websockets.asyncio.server import Server, ServerConnection, broadcast, serve

from daemon import log as log_mod
from daemon.metrics import REGISTRY
from daemon.alerts.outbox import Event, Outcome, compact_json

log = log_mod.get("sigd.signalws")

_CLIENTS = REGISTRY.gauge("sigd_signal_ws_clients", "Clients connected to the signal websocket")


class SignalWebsocket:
    """A websocket server on loopback and the outbox channel that broadcasts to its clients."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, types: frozenset[str] = frozenset()) -> None:
        self.name = "signal_ws"
        self.types = types
        self.host = host
        self._port = port
        self._server: Server | None = None
        self._clients: set[ServerConnection] = set()

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
        """Bind and start accepting consumers."""
        if self._server is None:
            try:
                self._server = await serve(self._handle, self.host, self._port)
            except OSError as exc:  # e.g. the port is taken: say which setting to change
                raise OSError(exc.errno, f"alerts.signal_ws: cannot listen on {self.host}:{self._port}: "
                                         f"{exc.strerror}") from None
            log.info("signal_ws_listening", url=self.url)

    async def close(self) -> None:
        """Close every connection and stop listening."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

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

    async def deliver(self, event: Event) -> Outcome:
        """Broadcast the envelope to the current clients; SKIPPED when there are none."""
        if not self._clients:
            return Outcome.SKIPPED
        broadcast(self._clients, compact_json(event.envelope()))
        return Outcome.SENT

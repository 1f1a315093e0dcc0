"""Quotes: the best bid and ask of every traded symbol, live from the exchange's websocket.

Fed by Binance's bookTicker stream through ccxt's `watchBidsAsks` (on the same connection as
the klines while Binance's 1024 streams per connection allow it). Each frame is taken as it is
parsed, before ccxt resolves the watch, so a paper fill at a bar's close sees the touch the
exchange sent just before that close. While the connection is down no quote is given: a
caller (the paper broker) falls back to its own rule rather than fill at a stale price.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from daemon import log as logging
from daemon.market.exchange import ExchangeClient, FatalError
from daemon.metrics import REGISTRY

log = logging.get("sigd.quotes")
UPDATES = REGISTRY.counter("sigd_quote_updates_total", "Best bid/ask updates received, per symbol")


class Quotes:
    """The newest (bid, ask, exchange ts_ms) per symbol; `run()` keeps the subscription alive."""

    def __init__(
        self, client: ExchangeClient, symbols: tuple[str, ...] | list[str], clock_ms: Callable[[], float] | None = None
    ) -> None:
        """`clock_ms` stamps a frame that carries no event time (Binance spot's bookTicker has
        none; the local exchange sends its replay instant)."""
        self.client, self.symbols = client, list(symbols)
        self._wanted = set(self.symbols)
        self.clock_ms = clock_ms or (lambda: time.time() * 1000)
        self.latest: dict[str, tuple[float, float, int]] = {}
        self.updates = 0
        self.failed: str | None = None  # why quoting stopped for good (a FatalError), else None

    def quote(self, symbol: str) -> tuple[float, float, int] | None:
        """(bid, ask, exchange ts_ms) of the newest update, None when there is none (not yet,
        or the connection was lost and no update came since)."""
        return self.latest.get(symbol)

    def on_quote(self, symbol: str, bid: float, ask: float, ts_ms: int | None) -> None:
        """QuoteListener: keep a sound update of a wanted symbol."""
        if symbol not in self._wanted:
            return
        if not (0 < bid <= ask):
            log.warning("quote_dropped", symbol=symbol, bid=bid, ask=ask)
            return
        self.latest[symbol] = (bid, ask, int(ts_ms if ts_ms is not None else self.clock_ms()))
        self.updates += 1
        UPDATES.inc(symbol=symbol)

    def status(self) -> dict[str, object]:
        """Updates received, symbols quoted now, and why quoting stopped (if it did)."""
        return {"updates": self.updates, "quoted": sorted(self.latest), "failed": self.failed}

    async def run(self) -> None:
        """Subscribe and stay subscribed until cancelled; never raises anything else."""
        if not self.symbols:
            return
        self.client.set_quote_listener(self)

        def lost(reason: str, attempt: int) -> None:
            self.latest.clear()  # no stale touch while reconnecting
            log.warning("quotes_reconnect", reason=reason, attempt=attempt)

        try:
            await self.client.keep_watching(lambda: self.client.watch_quotes(self.symbols), lost)
        except FatalError as err:
            self.failed = str(err)
            log.error("quotes_failed", error=str(err), symbols=len(self.symbols))
            self.latest.clear()
        finally:
            self.client.set_quote_listener(None)

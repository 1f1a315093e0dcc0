"""The paper broker: an internal exchange that fills market orders at the live price.

With a quote source (the exchange's best bid/ask stream, `QuoteSource`), a market order fills
the moment it is executed against the best ask (buy) or bid (sell), moved against us by the
slippage, as a real market order would. Without one (backtests, or no quote yet for the
symbol, or a quote older than the order's decision bar) it fills at the open of the first bar
of the same symbol that opens at or after the decision bar's close: the next price the
market shows. Either way it pays the fee on its notional. Orders, fills and positions live in
SQLite, so a restarted daemon continues with the same position and fills what was pending.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from daemon import log as logging
from daemon.domain import Bar, EventSink, Fill, Order, OrderStatus, Position
from daemon.store import Store
from daemon.trading.orders import Ledger, LimitsSource, OrderIntent, order_for, stale_reason, wall_ms

log = logging.get("paper")
RECENT_BARS = 256  # bars remembered per symbol: covers a decision slower than 4 min of 1s bars


class QuoteSource(Protocol):
    """The best bid and ask per symbol (daemon/market's bookTicker stream implements it)."""

    def quote(self, symbol: str) -> tuple[float, float, int] | None:
        """(bid, ask, ts_ms) of the newest quote, or None when none has arrived."""
        ...


def fill_price(reference: float, side: str, slippage: float) -> float:
    """The price a market order pays: the reference moved against the order by `slippage`."""
    return reference * (1.0 + slippage) if side == "buy" else reference * (1.0 - slippage)


class PaperBroker:
    """Market orders filled at the live bid/ask (or the next bar's open) with fee and slippage."""

    mode = "paper"

    def __init__(
        self,
        store: Store,
        sink: EventSink,
        *,
        fee: float = 0.001,
        slippage: float = 0.0005,
        clock_ms: Callable[[], int] = wall_ms,
        quotes: QuoteSource | None = None,
        limits: LimitsSource | None = None,
        server_time: Callable[[], Awaitable[int]] | None = None,
        decision_ms: int | None = None,
    ) -> None:
        """`limits`: the market's precision and minimums per symbol (the exchange's, through
        ccxt); paper orders are then sized exactly as the exchange would accept them.
        `server_time` (the exchange's clock) and `decision_ms` (the decision timeframe): on
        start an order a previous run committed and never filled is filled when its bar is still
        the newest closed one, else rejected with the reason and an alert."""
        if fee < 0 or slippage < 0:
            raise ValueError(f"fee and slippage must be >= 0, got fee={fee} slippage={slippage}")
        self.fee, self.slippage = fee, slippage
        self.quotes = quotes
        self.limits: LimitsSource = limits or (lambda symbol: None)
        self.server_time, self.decision_ms = server_time, decision_ms
        self.ledger = Ledger(store, sink, clock_ms)
        self.store = store
        self._pending: list[tuple[Order, int]] = []
        # symbol -> (client order id, not before) of an order stored by prepare and not executed
        # yet: its cycle's transaction may still be open (or have been rolled back).
        self._prepared: dict[str, tuple[str, int]] = {}
        self._recent: dict[str, deque[Bar]] = {}  # newest bars per symbol, for late submits

    async def start(self) -> None:
        """Reload the orders a previous run left pending (they fill at the next price)."""
        self.ledger.claim(self.mode)
        self._pending = [(o, nb or o.bar_ts) for o, nb in self.store.orders([OrderStatus.OPEN, OrderStatus.PENDING])]
        if self._pending and self.server_time is not None and self.decision_ms is not None:
            now = await self.server_time()
            for order, nb in list(self._pending):
                reason = stale_reason(order, now, self.decision_ms)
                if reason is not None:
                    self.ledger.reject_stale(order, reason)
                    self._pending.remove((order, nb))
        log.info("paper_started", pending=len(self._pending), quotes=self.quotes is not None)

    def position(self, symbol: str) -> Position:
        """The paper position."""
        return self.ledger.position(symbol)

    def prepare(self, intent: OrderIntent) -> Order | None:
        """Store the market order (OPEN, with its event); the same decision never orders twice."""
        if self._has_pending(intent.symbol):
            # The position is about to change: deciding on top of it would double the trade.
            log.warning("order_blocked_pending", symbol=intent.symbol, strategy=intent.strategy)
            return None
        order = order_for(intent, self.position(intent.symbol), OrderStatus.OPEN, self.limits(intent.symbol))
        if order is None or not self.ledger.record_new(order, intent.not_before_ts):
            return None
        self._prepared[order.symbol] = (order.client_order_id, intent.not_before_ts)
        return self.ledger.set_status(order, OrderStatus.OPEN)

    def _has_pending(self, symbol: str) -> bool:
        if any(o.symbol == symbol for o, _ in self._pending):
            return True
        if symbol not in self._prepared:
            # Every OPEN order of this book is in _pending (loaded at start) or was prepared here:
            # no SQLite read per symbol and decision.
            return False
        # Prepared earlier in this (uncommitted) cycle: in SQLite, not yet in _pending; or in a
        # decision that was rolled back, or whose execution raised: SQLite says which.
        if self.store.orders([OrderStatus.OPEN], symbol=symbol):
            return True
        del self._prepared[symbol]
        return False

    async def execute(self, order: Order) -> Order | None:
        """Fill at the live bid/ask when a fresh quote is known, else at the next bar's open."""
        not_before = self._not_before(order)
        quote = self.quotes.quote(order.symbol) if self.quotes is not None else None
        if quote is not None and quote[2] >= not_before:
            bid, ask, ts = quote
            try:
                self._fill(order, ask if order.side == "buy" else bid, ts)
                return self._executed(order)
            except Exception as exc:  # rolled back: it fills at the next price instead
                log.error("paper_fill_failed", client_order_id=order.client_order_id, error=repr(exc))
        # The next price may already have arrived while the models ran: fill from it, so a slow
        # decision fills exactly where a backtest (which awaits each decision) fills.
        seen = [b for b in self._recent.get(order.symbol, ()) if b.ts >= not_before]
        if seen:
            first = min(seen, key=lambda b: b.ts)
            self._fill(order, first.open, first.ts)
        else:
            self._pending.append((order, not_before))
        return self._executed(order)

    def _executed(self, order: Order) -> Order:
        """The order is filled or waits in _pending: no longer only in SQLite."""
        if self._prepared.get(order.symbol, ("",))[0] == order.client_order_id:
            del self._prepared[order.symbol]
        return order

    def _not_before(self, order: Order) -> int:
        prepared = self._prepared.get(order.symbol)
        if prepared is not None and prepared[0] == order.client_order_id:
            return prepared[1]  # as stored with the order by prepare
        rows = self.store.orders(client_order_id=order.client_order_id)
        return int(rows[0][1]) if rows and rows[0][1] is not None else order.bar_ts

    async def submit(self, intent: OrderIntent) -> Order | None:
        """prepare, then execute."""
        order = self.prepare(intent)
        return None if order is None else await self.execute(order)

    async def on_bar(self, bar: Bar) -> None:
        """Fill every pending order of this symbol that this bar is the next price for."""
        self._recent.setdefault(bar.symbol, deque(maxlen=RECENT_BARS)).append(bar)
        ready = [(o, nb) for o, nb in self._pending if o.symbol == bar.symbol and bar.ts >= nb]
        for order, nb in ready:
            try:
                self._fill(order, bar.open, bar.ts)
            except Exception as exc:  # rolled back (fill and event together): it stays pending
                log.error("paper_fill_failed", client_order_id=order.client_order_id, error=repr(exc))
                continue
            self._pending.remove((order, nb))

    def _fill(self, order: Order, reference: float, ts: int) -> None:
        price = fill_price(reference, order.side, self.slippage)
        fee = self.fee * price * order.amount
        self.ledger.record_fill(order, Fill(order.client_order_id, order.symbol, order.side, price, order.amount, fee, ts))

    async def close(self) -> None:
        """Nothing runs in the background (pending orders are in SQLite)."""

    def status(self) -> dict[str, Any]:
        """Mode, fee, slippage, pending orders and positions."""
        return {
            "mode": self.mode,
            "fee": self.fee,
            "slippage": self.slippage,
            "pending": [o.client_order_id for o, _ in self._pending],
            "positions": self.ledger.positions(),
        }

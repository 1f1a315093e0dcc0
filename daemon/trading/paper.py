"""The paper broker: an internal exchange that fills market orders at the next price.

An order decided at the close of a trigger bar fills at the open of the first bar of the same
symbol that opens at or after that close (the next price the market shows), moved against us
by the slippage, and pays the fee on its notional. Orders, fills and positions live in SQLite,
so a restarted daemon continues with the same position and fills what was still pending.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Callable

from daemon import log as logging
from daemon.domain import Bar, EventSink, Fill, Order, OrderStatus, Position
from daemon.trading.orders import Ledger, OrderIntent, order_for, wall_ms
from daemon.store import Store

log = logging.get("paper")
RECENT_BARS = 256  # bars remembered per symbol: covers a decision slower than 4 min of 1s bars


def fill_price(reference: float, side: str, slippage: float) -> float:
    """The price a market order pays: the reference moved against the order by `slippage`."""
    return reference * (1.0 + slippage) if side == "buy" else reference * (1.0 - slippage)


class PaperBroker:
    """Market orders filled at the next bar's open with fee and slippage; state in SQLite."""

    mode = "paper"

    def __init__(self, store: Store, sink: EventSink, *, fee: float = 0.001, slippage: float = 0.0005,
                 clock_ms: Callable[[], int] = wall_ms) -> None:
        if fee < 0 or slippage < 0:
            raise ValueError(f"fee and slippage must be >= 0, got fee={fee} slippage={slippage}")
        self.fee, self.slippage = fee, slippage
        self.ledger = Ledger(store, sink, clock_ms)
        self.store = store
        self._pending: list[tuple[Order, int]] = []
        self._recent: dict[str, deque[Bar]] = {}  # newest bars per symbol, for late submits

    async def start(self) -> None:
        """Reload the orders a previous run left pending and republish lost fill events."""
        self.ledger.claim(self.mode)
        self._pending = [(o, nb or o.bar_ts) for o, nb in self.store.orders([OrderStatus.OPEN, OrderStatus.PENDING])]
        republished = self.ledger.republish()
        log.info("paper_started", pending=len(self._pending), republished_fills=republished)

    def position(self, symbol: str) -> Position:
        """The paper position."""
        return self.ledger.position(symbol)

    async def submit(self, intent: OrderIntent) -> Order | None:
        """Queue a market order for the next price; the same decision never queues twice."""
        position = self.position(intent.symbol)
        if any(o.symbol == intent.symbol for o, _ in self._pending):
            # The position is about to change: deciding on top of it would double the trade.
            log.warning("order_blocked_pending", symbol=intent.symbol, strategy=intent.strategy)
            return None
        order = order_for(intent, position, OrderStatus.OPEN)
        if order is None or not self.ledger.record_new(order, intent.not_before_ts):
            return None
        self.ledger.set_status(order, OrderStatus.OPEN)
        # The next price may already have arrived while the models ran: fill from it, so a slow
        # decision fills exactly where a backtest (which awaits each decision) fills.
        seen = [b for b in self._recent.get(intent.symbol, ()) if b.ts >= intent.not_before_ts]
        if seen:
            self._fill(order, min(seen, key=lambda b: b.ts))
        else:
            self._pending.append((order, intent.not_before_ts))
        return order

    async def on_bar(self, bar: Bar) -> None:
        """Fill every pending order of this symbol that this bar is the next price for."""
        self._recent.setdefault(bar.symbol, deque(maxlen=RECENT_BARS)).append(bar)
        ready = [(o, nb) for o, nb in self._pending if o.symbol == bar.symbol and bar.ts >= nb]
        for order, nb in ready:
            self._fill(order, bar)
            self._pending.remove((order, nb))

    def _fill(self, order: Order, bar: Bar) -> None:
        price = fill_price(bar.open, order.side, self.slippage)
        fee = self.fee * price * order.amount
        self.ledger.record_fill(order, Fill(order.client_order_id, order.symbol, order.side, price,
                                            order.amount, fee, bar.ts))

    async def close(self) -> None:
        """Nothing runs in the background (pending orders are in SQLite)."""

    def status(self) -> dict[str, Any]:
        """Mode, fee, slippage, pending orders and positions."""
        return {
            "mode": self.mode, "fee": self.fee, "slippage": self.slippage,
            "pending": [o.client_order_id for o, _ in self._pending],
            "positions": self.ledger.positions(),
        }

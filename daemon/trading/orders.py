"""Orders shared by every broker: the Broker protocol, client order ids, position accounting,
the ledger that stores orders/fills/positions and publishes their events, and the alerts-only
broker. Paper trading (daemon/trading/paper.py) and the exchange testnet (daemon/trading/broker.py) are two
adapters behind the same protocol: no `if dry_run` anywhere in the exchange code.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from daemon import events
from daemon import log as logging
from daemon.crashpoints import crash_point
from daemon.domain import Bar, EventSink, Fill, Order, OrderStatus, Position
from daemon.market.orders import MarketLimits
from daemon.metrics import REGISTRY
from daemon.store import Store
from strategies.base import EPSILON  # one notion of a zero position everywhere

log = logging.get("orders")
UNRESOLVED = (OrderStatus.PENDING, OrderStatus.OPEN, OrderStatus.UNKNOWN)
SKIPPED_ORDERS = REGISTRY.counter(
    "sigd_orders_skipped_total", "Orders not sent: below the market's minimum amount or notional, by symbol and reason"
)
# The market's limits per symbol (ExchangeClient.limits); None: the market reports none.
LimitsSource = Callable[[str], "MarketLimits | None"]


KV_BOOK = "broker.book"  # which broker's orders and positions the state file holds


class BookMismatch(RuntimeError):
    """The state file belongs to another broker mode."""


def wall_ms() -> int:
    """Wall-clock ms for bookkeeping columns only (decisions use bar time)."""
    return int(time.time() * 1000)


@dataclass(frozen=True)
class OrderIntent:
    """Move the position in `symbol` to `target` (signed base amount) after the bar at bar_ts."""

    symbol: str
    target: float
    price: float  # the reference price (the trigger bar's close)
    bar_ts: int  # open time of the trigger bar
    not_before_ts: int  # the trigger bar's close: the paper broker fills at the first price from here
    strategy: str
    leg: int = 0


class Broker(Protocol):
    """Where intents become orders: alerts (none), paper, or an exchange testnet."""

    mode: str

    async def start(self) -> None:
        """Load state and reconcile whatever a previous run left unresolved."""
        ...

    def position(self, symbol: str) -> Position:
        """The current net position in `symbol`."""
        ...

    async def on_bar(self, bar: Bar) -> None:
        """See a closed bar (the paper broker fills pending orders at its open)."""
        ...

    def prepare(self, intent: OrderIntent) -> Order | None:
        """Record the order that moves the position to the intent's target, sending nothing.

        Synchronous and SQLite-only, so it runs inside the decision's transaction: the order
        intent commits together with its signal. None when blocked or already there.
        """
        ...

    async def execute(self, order: Order) -> Order | None:
        """Carry out a prepared order once its decision is committed (send it, or fill it)."""
        ...

    async def submit(self, intent: OrderIntent) -> Order | None:
        """prepare, then execute: at most one order moving the position to the intent's target."""
        ...

    def status(self) -> dict[str, Any]:
        """A JSON-ready summary for /status."""
        ...

    async def close(self) -> None:
        """Finish background work before shutdown."""
        ...


def client_order_id(symbol: str, bar_ts: int, strategy: str, leg: int = 0) -> str:
    """Deterministic id (Binance allows [A-Za-z0-9-_]{1,36}): the same decision gives the same id."""
    digest = hashlib.sha256(f"{symbol}|{bar_ts}|{strategy}|{leg}".encode()).hexdigest()
    return f"sigd-{digest[:24]}-{leg}"


def stale_reason(order: Order, now_ms: int, decision_ms: int) -> str | None:
    """Why an order committed but never sent must not be sent after a restart, or None when it is
    still fresh: its decision bar is the newest closed bar of the decision timeframe at `now_ms`
    (the exchange's clock). An older intent was decided on prices the market has left."""
    newest = (now_ms // decision_ms) * decision_ms - decision_ms  # open time of the newest closed bar
    if order.bar_ts >= newest:
        return None
    return (
        f"stale intent: decided on the bar opening {_iso(order.bar_ts)}, the newest closed bar opens "
        f"{_iso(newest)}; not sent after the restart"
    )


def _iso(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms / 1000))


def apply_fill(position: Position, fill: Fill) -> Position:
    """Position after a fill: average entry on increase, realized PnL on reduce, flip re-bases."""
    qty = fill.amount if fill.side == "buy" else -fill.amount
    old, entry, realized = position.amount, position.entry_price, position.realized_pnl
    new = old + qty
    if abs(old) < EPSILON or (old > 0) == (qty > 0):
        entry = (abs(old) * entry + abs(qty) * fill.price) / abs(new) if abs(new) > EPSILON else 0.0
    else:
        closed = min(abs(qty), abs(old))
        realized += closed * (fill.price - entry) * (1.0 if old > 0 else -1.0)
        if abs(new) < EPSILON:
            new, entry = 0.0, 0.0
        elif abs(qty) > abs(old):
            entry = fill.price  # flipped: the remainder opened at this price
    return Position(position.symbol, new, entry, realized, position.fees + fill.fee)


def order_for(intent: OrderIntent, position: Position, status: OrderStatus, limits: MarketLimits | None = None) -> Order | None:
    """The market order that moves `position` to the intent's target; None when already there.

    With the market's `limits` the amount is rounded down to the amount step, and an order
    below the minimum amount or notional is skipped (counted and logged, never sent).
    """
    delta = intent.target - position.amount
    if abs(delta) <= EPSILON:
        return None
    amount = abs(delta)
    if limits is not None:
        amount, reason = limits.fit(amount, intent.price)
        if reason is not None:
            SKIPPED_ORDERS.inc(symbol=intent.symbol, reason=reason)
            log.info(
                "order_skipped",
                symbol=intent.symbol,
                bar_ts=intent.bar_ts,
                strategy=intent.strategy,
                reason=reason,
                amount=abs(delta),
                price=intent.price,
                min_amount=limits.min_amount,
                min_notional=limits.min_notional,
            )
            return None
    return Order(
        client_order_id=client_order_id(intent.symbol, intent.bar_ts, intent.strategy, intent.leg),
        symbol=intent.symbol,
        side="buy" if delta > 0 else "sell",
        type="market",
        amount=amount,
        price=None,
        bar_ts=intent.bar_ts,
        status=status,
    )


class Ledger:
    """Orders, fills and positions in SQLite, with their events published to the EventSink."""

    def __init__(self, store: Store, sink: EventSink, clock_ms: Callable[[], int] = wall_ms) -> None:
        self.store, self.sink, self.clock_ms = store, sink, clock_ms
        self._positions: dict[str, Position] = {}

    def position(self, symbol: str) -> Position:
        """The stored net position (cached; the ledger is its only writer)."""
        if symbol not in self._positions:
            self._positions[symbol] = self.store.get_position(symbol)
        return self._positions[symbol]

    def claim(self, mode: str) -> None:
        """Bind the state file to one order book: paper fills are not testnet fills (and back)."""
        book = self.store.get_kv(KV_BOOK)
        if book is None:
            self.store.set_kv(KV_BOOK, mode)
        elif book != mode:
            raise BookMismatch(
                f"{self.store.path}: this state file holds {book!r} orders and positions; broker.mode is "
                f"{mode!r}. Point store.path at another file to trade {mode!r}, or go back to {book!r}."
            )

    def positions(self) -> dict[str, dict[str, Any]]:
        """JSON-ready positions seen so far."""
        return {s: dataclasses.asdict(p) for s, p in self._positions.items()}

    def record_new(self, order: Order, not_before_ts: int | None = None) -> bool:
        """Store an order before anything is sent; False when its client id is already known."""
        created = self.store.put_order(order, self.clock_ms(), not_before_ts)
        if not created:
            log.warning("order_duplicate_suppressed", client_order_id=order.client_order_id)
        return created

    def set_status(self, order: Order, status: OrderStatus, *, exchange_id: str | None = None, error: str | None = None) -> Order:
        """Store a status change and its "order" event in one commit."""
        updated = dataclasses.replace(order, status=status, exchange_id=exchange_id or order.exchange_id)
        with self.store.transaction():
            self.store.set_order_status(order.client_order_id, status, self.clock_ms(), exchange_id=exchange_id, error=error)
            self.announce(updated, error)
        # An order placed is routine (the cycle's decision_cycle line counts them): debug, so a
        # cycle of hundreds of orders writes no line per order; fills, rejections, errors: info.
        level = log.debug if status in (OrderStatus.PENDING, OrderStatus.OPEN) and error is None else log.info
        level("order_status", client_order_id=order.client_order_id, status=status.value, error=error)
        return updated

    def reject_stale(self, order: Order, reason: str) -> Order:
        """An unsent order too old to send: REJECTED with the reason, and an "error" alert, in one commit."""
        with self.store.transaction():
            rejected = self.set_status(order, OrderStatus.REJECTED, error=reason)
            payload = {
                "kind": "stale_order",
                "symbol": order.symbol,
                "bar_ts": order.bar_ts,
                "client_order_id": order.client_order_id,
                "side": order.side,
                "amount": order.amount,
                "message": f"{order.symbol} {order.side} {order.amount:g}: {reason}",
            }
            self.sink.publish("error", payload, event_id=f"stale-order-{order.client_order_id}")
        log.error("order_stale_rejected", **payload)
        return rejected

    def announce(self, order: Order, error: str | None = None) -> None:
        """Queue the "order" event of the order's status (a stable id: once per status; call it
        inside the transaction that stores what it says). Every broker announces an order as
        `open` before its fill, so webhook consumers see the same event types in every mode."""
        self.sink.publish(
            "order", {**order_payload(order), "error": error}, event_id=f"order-{order.client_order_id}-{order.status.value}"
        )
        self.store.after_commit(lambda: events.publish(events.OrderUpdated.of(order)))

    def record_fill(
        self, order: Order, fill: Fill, status: OrderStatus = OrderStatus.FILLED, exchange_id: str | None = None
    ) -> Position:
        """Fill, position, order status and the "fill" event in one commit."""
        position = apply_fill(self.position(fill.symbol), fill)
        with self.store.transaction():
            if not self.store.add_fill(fill):
                log.warning("fill_duplicate_suppressed", client_order_id=fill.client_order_id)
                return self.position(fill.symbol)
            self.store.put_position(position, self.clock_ms())
            self.store.set_order_status(order.client_order_id, status, self.clock_ms(), exchange_id=exchange_id)
            if order.status in (OrderStatus.PENDING, OrderStatus.UNKNOWN):  # never announced: open, then the fill
                self.announce(dataclasses.replace(order, status=OrderStatus.OPEN, exchange_id=exchange_id or order.exchange_id))
            payload = {**dataclasses.asdict(fill), "position": dataclasses.asdict(position)}
            self.sink.publish("fill", payload, event_id=f"fill-{fill.client_order_id}")
        if not self.store.in_transaction():  # committed (not a savepoint inside a caller's transaction)
            crash_point("after_fill_commit")
        self._positions[fill.symbol] = position
        # Live pushes once the fill's transaction (or an enclosing one) has committed.
        self.store.after_commit(lambda: events.publish(events.FillRecorded.of(fill)))
        self.store.after_commit(lambda: events.publish(events.PositionChanged.of(position)))
        log.info(
            "order_filled",
            client_order_id=fill.client_order_id,
            side=fill.side,
            price=fill.price,
            amount=fill.amount,
            fee=fill.fee,
            position=position.amount,
        )
        return position


def order_payload(order: Order) -> dict[str, Any]:
    """JSON-ready order for events and /status (`type` is the outbox's word: `order_type` here)."""
    row = dataclasses.asdict(order)
    row["status"] = order.status.value
    row["order_type"] = row.pop("type")
    return row


class AlertsBroker:
    """Signals only: no orders; a virtual position follows the signals (for strategies and PnL)."""

    mode = "alerts"

    def __init__(self, store: Store) -> None:
        self.store = store
        self._positions: dict[str, Position] = {}

    async def start(self) -> None:
        """Nothing to reconcile."""

    def position(self, symbol: str) -> Position:
        """The virtual position the signals imply (kept apart from real paper/testnet positions).

        Read from SQLite every time (one key lookup): a decision rolled back leaves no trace.
        """
        raw = self.store.get_kv(f"alerts.position.{symbol}")
        position = Position(**json.loads(raw)) if raw else Position(symbol)
        if position.amount or symbol in self._positions:
            self._positions[symbol] = position
        return position

    async def on_bar(self, bar: Bar) -> None:
        """Nothing is pending in alerts mode."""

    def prepare(self, intent: OrderIntent) -> Order | None:
        """Move the virtual position at the signal price, fee-free (in the caller's transaction)."""
        order = order_for(intent, self.position(intent.symbol), OrderStatus.FILLED)
        if order is None:
            return None
        fill = Fill(order.client_order_id, order.symbol, order.side, intent.price, order.amount, 0.0, intent.bar_ts)
        position = apply_fill(self.position(intent.symbol), fill)
        self.store.set_kv(f"alerts.position.{intent.symbol}", json.dumps(dataclasses.asdict(position)))
        return order

    async def execute(self, order: Order) -> Order | None:
        """Nothing to send."""
        self.position(order.symbol)
        return order

    async def submit(self, intent: OrderIntent) -> Order | None:
        """prepare and execute; sends nothing, stores no order."""
        order = self.prepare(intent)
        return None if order is None else await self.execute(order)

    async def close(self) -> None:
        """Nothing runs in the background."""

    def status(self) -> dict[str, Any]:
        """Mode and virtual positions."""
        return {"mode": self.mode, "positions": {s: dataclasses.asdict(p) for s, p in self._positions.items()}}

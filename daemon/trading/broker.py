"""The testnet broker: real orders through ExchangeClient (ccxt) on an exchange's testnet.

Here that is the local exchange with API keys from the environment; against a real testnet
only the URLs and keys differ. Every order is stored (PENDING, with its deterministic client
id) before it is sent. An answer we cannot trust (timeout, disconnect) leaves the order
UNKNOWN; reconciliation looks it up by client id and settles it. While any order of a symbol
is unresolved, no new order is sent for it, so nothing is ever sent twice.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from daemon import log as logging
from daemon.crashpoints import crash_point
from daemon.domain import Bar, EventSink, Fill, Order, OrderStatus, Position
from daemon.market.exchange import FatalError
from daemon.metrics import REGISTRY
from daemon.store import Store
from daemon.trading.orders import UNRESOLVED, Ledger, LimitsSource, OrderIntent, order_for, stale_reason, wall_ms

log = logging.get("broker")
UNRESOLVED_GAUGE = REGISTRY.gauge("sigd_orders_unresolved", "Orders whose outcome is not yet known")
MISMATCH = REGISTRY.gauge("sigd_position_mismatch", "Exchange balance minus the balance our fills imply, base units")
_CCXT_STATUS = {
    "open": OrderStatus.OPEN,
    "closed": OrderStatus.FILLED,
    "canceled": OrderStatus.CANCELED,
    "expired": OrderStatus.CANCELED,
    "rejected": OrderStatus.REJECTED,
}


class OrderClient(Protocol):
    """The order methods of daemon.market.exchange.ExchangeClient the broker uses."""

    async def create_order(
        self, symbol: str, side: str, type: str, amount: float, price: float | None, client_order_id: str
    ) -> dict:
        """Place an order exactly once under `client_order_id`; the exchange's order."""
        ...

    async def fetch_order(self, client_order_id: str, symbol: str) -> dict | None:
        """The order with this client id, or None when the exchange does not know it."""
        ...

    async def fetch_balance(self) -> dict[str, float]:
        """Total balance per asset."""
        ...

    async def server_time_ms(self) -> int:
        """The exchange's clock."""
        ...

    def limits(self, symbol: str) -> Any:
        """The market's precision and limits (a daemon.market.orders.MarketLimits), or None."""
        ...


def _fee_in_quote(raw: dict, symbol: str, price: float) -> float:
    """The order's fee in the quote currency (a base-currency fee converted at the fill price)."""
    fees = raw.get("fees") or ([raw["fee"]] if raw.get("fee") else [])
    base = symbol.split("/")[0]
    total = 0.0
    for fee in fees:
        cost = float(fee.get("cost") or 0.0)
        total += cost * price if fee.get("currency") == base else cost
    return total


class TestnetBroker:
    """Market orders on an exchange through ExchangeClient, reconciled by client order id."""

    mode = "testnet"
    __test__ = False  # not a pytest test class, despite the name

    def __init__(
        self,
        store: Store,
        sink: EventSink,
        client: OrderClient,
        *,
        symbols: Sequence[str] = (),
        unknown_grace_ms: int = 15_000,
        clock_ms: Callable[[], int] = wall_ms,
        decision_ms: int | None = None,
    ) -> None:
        """`decision_ms`: the decision timeframe; on start an order committed but never sent is
        sent when its bar is still the newest closed one, else rejected with an alert."""
        self.store, self.client, self.clock_ms = store, client, clock_ms
        self.symbols = tuple(symbols)  # whose positions start() checks against the exchange
        # An order the exchange does not know yet may still arrive until its request expires
        # (Binance recvWindow is 10 s): only after this grace does "not found" mean "never placed".
        self.unknown_grace_ms = unknown_grace_ms
        self.decision_ms = decision_ms
        self.ledger = Ledger(store, sink, clock_ms)
        # Orders are sized to what the exchange accepts (its precision and minimums, via ccxt).
        self.limits: LimitsSource = getattr(client, "limits", None) or (lambda symbol: None)
        self._lock = asyncio.Lock()  # one submit or reconciliation at a time
        self._sync_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Send or reject what a previous run committed and never sent, settle what it left
        unresolved, check positions."""
        self.ledger.claim(self.mode)
        await self._recover_unsent()
        await self.reconcile()
        for symbol in self.symbols:
            await self.check_position(symbol)

    async def close(self) -> None:
        """Let a background reconciliation finish."""
        if self._sync_task is not None:
            await asyncio.gather(self._sync_task, return_exceptions=True)

    async def check_position(self, symbol: str) -> float:
        """Exchange base balance vs the balance our fills imply; the difference (0 = consistent).

        The first time a symbol is seen, the balance not explained by our position is recorded
        as the account's baseline (what it held before sigd traded); later a difference means
        someone else traded on the account or a fill was missed: logged loudly, never traded on.
        """
        base = symbol.split("/")[0]
        try:
            held = (await self.client.fetch_balance()).get(base, 0.0)
        except Exception as exc:
            log.warning("position_check_failed", symbol=symbol, error=repr(exc))
            return 0.0
        key = f"testnet.baseline.{base}"
        ours = self.position(symbol).amount
        baseline = self.store.get_kv(key)
        if baseline is None:
            self.store.set_kv(key, repr(held - ours))
            return 0.0
        diff = held - (float(baseline) + ours)
        MISMATCH.set(diff, symbol=symbol)
        if abs(diff) > 1e-9 * max(1.0, abs(held)):
            log.error("position_mismatch", symbol=symbol, exchange=held, expected=float(baseline) + ours, diff=diff)
        return diff

    def position(self, symbol: str) -> Position:
        """Net position from our own fills on the exchange."""
        return self.ledger.position(symbol)

    async def on_bar(self, bar: Bar) -> None:
        """Keep settling unresolved orders, in the background: the bar path never waits on REST."""
        busy = self._sync_task is not None and not self._sync_task.done()
        if not busy and self.store.orders(UNRESOLVED, symbol=bar.symbol):
            self._sync_task = asyncio.create_task(self.reconcile(bar.symbol))

    async def settle(self, symbol: str) -> None:
        """Before a decision on `symbol`: look up its unresolved orders (the engine awaits this
        outside the decision's transaction, so prepare() sees the settled state)."""
        if self.store.orders(UNRESOLVED, symbol=symbol):
            await self.reconcile(symbol)

    def prepare(self, intent: OrderIntent) -> Order | None:
        """Store the order (PENDING) before anything is sent; None when blocked or nothing to do."""
        if self.store.orders(UNRESOLVED, symbol=intent.symbol):
            log.warning("order_blocked_unresolved", symbol=intent.symbol, strategy=intent.strategy)
            return None
        order = order_for(intent, self.position(intent.symbol), OrderStatus.PENDING, self.limits(intent.symbol))
        if order is None or not self.ledger.record_new(order, intent.not_before_ts):
            return None
        return order

    async def _recover_unsent(self) -> None:
        """PENDING orders of a previous run (committed; sent or not, we cannot tell): one the
        exchange knows is settled; one it does not is sent now when its intent is still fresh
        (same client id: never twice), else rejected with the reason and an alert."""
        pending = self.store.orders([OrderStatus.PENDING])
        if not pending or self.decision_ms is None:
            return
        try:
            now = await self.client.server_time_ms()
        except Exception as exc:  # no clock: the grace rule in reconcile() decides
            log.warning("recover_unsent_failed", error=repr(exc))
            return
        async with self._lock:
            for order, _ in pending:
                if await self._settle_known(order) is not False:  # settled, or the lookup failed
                    continue
                reason = stale_reason(order, now, self.decision_ms)
                if reason is not None:
                    self.ledger.reject_stale(order, reason)
                else:
                    log.info(
                        "order_resent_after_restart",
                        client_order_id=order.client_order_id,
                        symbol=order.symbol,
                        bar_ts=order.bar_ts,
                    )
                    await self._send(order)

    async def execute(self, order: Order) -> Order | None:
        """Send a stored order once."""
        async with self._lock:
            return await self._send(order)

    async def submit(self, intent: OrderIntent) -> Order | None:
        """Settle, store, then send one market order; None when blocked or there is nothing to do."""
        await self.settle(intent.symbol)
        order = self.prepare(intent)
        return None if order is None else await self.execute(order)

    async def _send(self, order: Order) -> Order:
        crash_point("after_order_recorded")
        try:
            raw = await self.client.create_order(
                order.symbol, order.side, order.type, order.amount, order.price, order.client_order_id
            )
        except FatalError as exc:  # the exchange answered no (after checking our id is not there)
            return self.ledger.set_status(order, OrderStatus.REJECTED, error=str(exc))
        except Exception as exc:  # timeout, disconnect, anything else: we do not know
            log.warning("order_outcome_unknown", client_order_id=order.client_order_id, error=repr(exc))
            return self.ledger.set_status(order, OrderStatus.UNKNOWN, error=repr(exc))
        crash_point("after_order_sent_before_ack")
        return self._apply(order, raw)

    def _apply(self, order: Order, raw: dict) -> Order:
        """Record what the exchange says about an order: status, and its fill once it is done."""
        status = _CCXT_STATUS.get(str(raw.get("status")), OrderStatus.UNKNOWN)
        exchange_id = str(raw["id"]) if raw.get("id") is not None else None
        filled = float(raw.get("filled") or 0.0)
        done = status in (OrderStatus.FILLED, OrderStatus.CANCELED, OrderStatus.REJECTED)
        if done and filled > 0:
            price = float(raw.get("average") or raw.get("price") or 0.0)
            ts = int(raw.get("timestamp") or self.clock_ms())
            fill = Fill(
                order.client_order_id, order.symbol, order.side, price, filled, _fee_in_quote(raw, order.symbol, price), ts
            )
            self.ledger.record_fill(order, fill, status, exchange_id)
            return dataclasses.replace(order, status=status, exchange_id=exchange_id)
        if status != order.status:
            return self.ledger.set_status(order, status, exchange_id=exchange_id)
        return order

    async def reconcile(self, symbol: str | None = None) -> None:
        """Look up every unresolved order by client id and settle what the exchange knows."""
        async with self._lock:
            await self._reconcile(symbol)

    async def _reconcile(self, symbol: str | None) -> None:
        for order, _ in self.store.orders(UNRESOLVED, symbol=symbol):
            if await self._settle_known(order) is False and self._age_ms(order) >= self.unknown_grace_ms:
                # Not at the exchange and too old to still arrive: it was never placed.
                self.ledger.set_status(order, OrderStatus.REJECTED, error="not found at the exchange")
        UNRESOLVED_GAUGE.set(len(self.store.orders(UNRESOLVED)))

    async def _settle_known(self, order: Order) -> bool | None:
        """Look the order up by client id: True (the exchange knows it: settled from its
        answer), False (it does not), None (the lookup failed: try again later)."""
        try:
            raw = await self.client.fetch_order(order.client_order_id, order.symbol)
        except Exception as exc:
            log.warning("reconcile_failed", client_order_id=order.client_order_id, error=repr(exc))
            return None
        if raw is None:
            return False
        self._apply(order, raw)
        return True

    def _age_ms(self, order: Order) -> int:
        return self.clock_ms() - self.store.order_created_ms(order.client_order_id)

    def status(self) -> dict[str, Any]:
        """Mode, unresolved orders and positions."""
        return {
            "mode": self.mode,
            "unresolved": [o.client_order_id for o, _ in self.store.orders(UNRESOLVED)],
            "positions": self.ledger.positions(),
        }

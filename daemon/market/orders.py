"""Order calls of the exchange client (the testnet broker), on ExchangeClient's retries and
error mapping; no ccxt here (exchange.py maps its exceptions)."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, Decimal
from typing import Any, TypeVar

from daemon import log as logging
from daemon.config import ExchangeConfig
from daemon.market.errors import AuthError, ExchangeFailure, FatalError, TemporaryError, UnknownOrder

log = logging.get("sigd.exchange")
T = TypeVar("T")


@dataclass(frozen=True)
class MarketLimits:
    """What the exchange accepts for one market, as ccxt reports it (precision mode TICK_SIZE):
    amount and price steps, the smallest and largest amount, the smallest notional."""

    amount_step: float = 0.0  # 0 = any amount
    price_step: float = 0.0  # 0 = any price
    min_amount: float = 0.0
    max_amount: float = math.inf
    min_notional: float = 0.0

    @classmethod
    def from_ccxt(cls, market: dict[str, Any]) -> MarketLimits:
        """From a ccxt market dict (`precision`, `limits`); a missing value means no limit."""
        precision, limits = market.get("precision") or {}, market.get("limits") or {}

        def num(v: Any, default: float) -> float:
            return float(v) if v is not None else default

        return cls(
            amount_step=num(precision.get("amount"), 0.0),
            price_step=num(precision.get("price"), 0.0),
            min_amount=num((limits.get("amount") or {}).get("min"), 0.0),
            max_amount=num((limits.get("amount") or {}).get("max"), math.inf),
            min_notional=num((limits.get("cost") or {}).get("min"), 0.0),
        )

    def amount(self, amount: float) -> float:
        """`amount` rounded DOWN to the amount step (never more than asked)."""
        return _to_step(amount, self.amount_step, ROUND_DOWN)

    def price(self, price: float) -> float:
        """`price` rounded to the nearest price step."""
        return _to_step(price, self.price_step, ROUND_HALF_EVEN)

    def fit(self, amount: float, price: float) -> tuple[float, str | None]:
        """The amount the exchange would accept for an order of `amount` at about `price`, and
        None; or (0, the reason) when no acceptable order exists (below the minimum amount or
        notional after rounding: such an order is skipped, never sent to be rejected)."""
        rounded = min(self.amount(amount), self.amount(self.max_amount)) if self.max_amount < math.inf else self.amount(amount)
        if rounded <= 0 or rounded < self.min_amount:
            return 0.0, "min_amount"
        if rounded * price < self.min_notional:
            return 0.0, "min_notional"
        return rounded, None


def _to_step(value: float, step: float, rounding: str) -> float:
    """`value` as a whole number of `step`s, in decimal arithmetic (0.1 + 0.2 stays 0.3)."""
    if step <= 0:
        return value
    d, q = Decimal(repr(value)), Decimal(repr(step))
    return float((d / q).to_integral_value(rounding=rounding) * q)


class OrderCalls:
    """Orders addressed by client order id, placed exactly once (mixed into ExchangeClient)."""

    ex: Any
    cfg: ExchangeConfig

    async def _once(self, op: str, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        raise NotImplementedError("provided by ExchangeClient")

    async def _call(self, op: str, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        raise NotImplementedError("provided by ExchangeClient")

    def backoff_s(self, attempt: int, err: ExchangeFailure | None = None) -> float:
        raise NotImplementedError("provided by ExchangeClient")

    def limits(self, symbol: str) -> MarketLimits | None:
        """The market's precision and limits as ccxt loaded them (None before start or for an
        unknown symbol)."""
        market = (self.ex.markets or {}).get(symbol)
        return MarketLimits.from_ccxt(market) if market else None

    async def create_order(
        self, symbol: str, side: str, type: str, amount: float, price: float | None, client_order_id: str
    ) -> dict:
        """Place an order exactly once, identified by `client_order_id`; the exchange's order.

        After an ambiguous outcome (timeout, 5xx) the order is looked up by its client id
        before it is sent again, and a rejection of an id that already exists (a duplicate)
        returns that order, so a retry or a restart never doubles it.
        """
        params = {"newClientOrderId": client_order_id}
        attempt = 0
        while True:
            try:
                return await self._once("create_order", self.ex.create_order, symbol, type, side, amount, price, params)
            except TemporaryError as err:
                found = await self.fetch_order(client_order_id, symbol)
                if found is not None:
                    return found
                if attempt >= self.cfg.max_retries:
                    raise
                await asyncio.sleep(self.backoff_s(attempt, err))
                attempt += 1
            except AuthError:
                raise
            except FatalError:
                found = await self.fetch_order(client_order_id, symbol)
                if found is not None:
                    log.info("order_already_placed", client_order_id=client_order_id, symbol=symbol)
                    return found
                raise

    async def fetch_order(self, client_order_id: str, symbol: str) -> dict | None:
        """The order with this client id, or None when the exchange does not know it."""
        return await self._by_client_id("fetch_order", self.ex.fetch_order, client_order_id, symbol)

    async def fetch_open_orders(self, symbol: str) -> list[dict]:
        """Open orders of a symbol."""
        return await self._call("fetch_open_orders", self.ex.fetch_open_orders, symbol)

    async def cancel_order(self, client_order_id: str, symbol: str) -> dict | None:
        """Cancel by client id; None when it was no longer open (filled, canceled, unknown)."""
        return await self._by_client_id("cancel_order", self.ex.cancel_order, client_order_id, symbol)

    async def _by_client_id(self, op: str, fn: Callable[..., Awaitable[dict]], client_order_id: str, symbol: str) -> dict | None:
        """Call an order method addressed by client id; None when the exchange has no such order."""
        try:
            return await self._call(op, fn, None, symbol, {"origClientOrderId": client_order_id})
        except FatalError as err:
            if isinstance(err, UnknownOrder):
                return None
            raise

    async def fetch_balance(self) -> dict[str, float]:
        """Total balance per asset (free + locked), zero balances left out."""
        bal = await self._call("fetch_balance", self.ex.fetch_balance)
        return {asset: float(v) for asset, v in (bal.get("total") or {}).items() if v}

"""Order calls of the exchange client (the testnet broker), on ExchangeClient's retries and
error mapping; no ccxt here (exchange.py maps its exceptions)."""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable, TypeVar

from daemon import log as logging
from daemon.config import ExchangeConfig
from daemon.market.errors import AuthError, ExchangeFailure, FatalError, TemporaryError, UnknownOrder

log = logging.get("sigd.exchange")
T = TypeVar("T")


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

    async def create_order(self, symbol: str, side: str, type: str, amount: float, price: float | None,
                           client_order_id: str) -> dict:
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

    async def _by_client_id(self, op: str, fn: Callable[..., Awaitable[dict]], client_order_id: str,
                            symbol: str) -> dict | None:
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

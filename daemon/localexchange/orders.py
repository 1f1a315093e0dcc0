"""The simulated spot account: balances, orders, fills on the replay clock.

Market orders fill at once at the current replay price (`quantity` or `quoteOrderQty`).
Limit orders lock their funds; a marketable one fills at once at the current price (taker),
otherwise it fills at its limit price as soon as the replayed price reaches it (checked
lazily on every account request and on every stream step, over the 1s path in between).
`newClientOrderId` must be unique per symbol for the whole run (a duplicate is rejected with
-2010 "Duplicate order sent."; this is stricter than Binance, which only checks open orders).
Every order is checked against its market's filters as Binance checks them (exchangeInfo
lists the same ones): more decimals than the asset's precision (8) is -1111; an amount off the
LOT_SIZE step or outside [minQty, maxQty], a limit price off the PRICE_FILTER tick or range, or
a notional (limit price, or the current price for a market order) below NOTIONAL's minimum is
-1013 "Filter failure: <FILTER>". No fees.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from daemon.localexchange.errors import ApiError, insufficient_balance, missing
from daemon.localexchange.market import Market
from daemon.localexchange.streams import fmt

ASSET_PRECISION = 8  # baseAssetPrecision / quotePrecision in exchangeInfo


@dataclass
class Order:
    """One order as the exchange keeps it."""

    symbol: str
    order_id: int
    client_id: str
    side: str
    type: str
    qty: float
    price: float  # 0 for market orders
    tif: str
    time: int
    executed: float = 0.0
    quote: float = 0.0
    status: str = "NEW"
    update_time: int = 0
    fills: list[dict[str, str]] = field(default_factory=list)

    def as_json(self, full: bool = False) -> dict[str, Any]:
        """The order as Binance answers GET /api/v3/order (POST adds transactTime and fills)."""
        d: dict[str, Any] = {
            "symbol": self.symbol,
            "orderId": self.order_id,
            "orderListId": -1,
            "clientOrderId": self.client_id,
            "price": fmt(self.price),
            "origQty": fmt(self.qty),
            "executedQty": fmt(self.executed),
            "cummulativeQuoteQty": fmt(self.quote),
            "status": self.status,
            "timeInForce": self.tif,
            "type": self.type,
            "side": self.side,
            "stopPrice": fmt(0),
            "icebergQty": fmt(0),
            "time": self.time,
            "updateTime": self.update_time or self.time,
            "isWorking": self.status in ("NEW", "PARTIALLY_FILLED"),
            "workingTime": self.time,
            "origQuoteOrderQty": fmt(0),
            "selfTradePreventionMode": "NONE",
        }
        if full:
            d["transactTime"] = self.time
            d["fills"] = self.fills
        return d


class Account:
    """Balances and orders of the one simulated account."""

    def __init__(self, markets: dict[str, Market], balances: dict[str, float]) -> None:
        self.markets = markets
        self.free = {k: float(v) for k, v in balances.items()}
        self.locked = {k: 0.0 for k in balances}
        self.orders: dict[int, Order] = {}
        self.by_client: dict[tuple[str, str], int] = {}
        self.last_sync: int | None = None
        self._next_id = 1

    def _market(self, symbol: str | None) -> Market:
        if not symbol:
            raise missing("symbol")
        if symbol not in self.markets:
            raise ApiError(-1121, "Invalid symbol.")
        return self.markets[symbol]

    def _move(self, asset: str, free: float = 0.0, locked: float = 0.0) -> None:
        self.free[asset] = self.free.get(asset, 0.0) + free
        self.locked[asset] = self.locked.get(asset, 0.0) + locked

    # -- placing ------------------------------------------------------------------------
    def place(self, p: dict[str, str], now: int) -> dict[str, Any]:
        """POST /api/v3/order."""
        self.sync(now)
        m = self._market(p.get("symbol"))
        side, typ = p.get("side"), p.get("type")
        if side not in ("BUY", "SELL"):
            raise missing("side")
        if typ not in ("MARKET", "LIMIT", "LIMIT_MAKER"):
            raise ApiError(-1116, "Invalid orderType.")
        cid = p.get("newClientOrderId") or "lx" + secrets.token_hex(10)
        if (m.symbol, cid) in self.by_client:
            raise ApiError(-2010, "Duplicate order sent.")
        price_now = m.price(now)
        if price_now is None:
            raise ApiError(-1013, "Market is closed.")
        o = self._new_order(m, p, side, typ, cid, price_now, now)
        self.orders[o.order_id] = o
        self.by_client[(m.symbol, cid)] = o.order_id
        return o.as_json(full=True)

    def _new_order(self, m: Market, p: dict[str, str], side: str, typ: str, cid: str, px: float, now: int) -> Order:
        f = m.filters
        if typ == "MARKET" and "quantity" not in p:
            if "quoteOrderQty" not in p:
                raise missing("quantity")
            quote = _decimal(p, "quoteOrderQty")
            qty_d = (quote / Decimal(repr(px)) / f.step).to_integral_value(rounding="ROUND_DOWN") * f.step
        else:
            qty_d = _decimal(p, "quantity")
        price_d = _decimal(p, "price") if typ != "MARKET" else Decimal(0)
        if not f.lot_ok(qty_d):
            raise ApiError(-1013, "Filter failure: LOT_SIZE")
        if typ != "MARKET" and not f.price_ok(price_d):
            raise ApiError(-1013, "Filter failure: PRICE_FILTER")
        if qty_d * (price_d or Decimal(repr(px))) < f.min_notional:
            raise ApiError(-1013, "Filter failure: NOTIONAL")
        qty, price = float(qty_d), float(price_d)
        o = Order(m.symbol, self._next_id, cid, side, typ, qty, price, p.get("timeInForce", "GTC"), now)
        if typ == "MARKET":
            self._check_funds(m, side, qty, qty * px)
            self._fill(o, m, px, now, locked=False)
        else:
            self._limit(o, m, px, now)
        self._next_id += 1
        return o

    def _check_funds(self, m: Market, side: str, qty: float, cost: float) -> None:
        have = self.free.get(m.quote if side == "BUY" else m.base, 0.0)
        if have + 1e-12 < (cost if side == "BUY" else qty):
            raise insufficient_balance()

    def _limit(self, o: Order, m: Market, px: float, now: int) -> None:
        marketable = px <= o.price if o.side == "BUY" else px >= o.price
        if o.type == "LIMIT_MAKER" and marketable:
            raise ApiError(-2010, "Order would immediately match and take.")
        if o.tif in ("IOC", "FOK") and not marketable:
            o.status = "EXPIRED"
            return
        self._check_funds(m, o.side, o.qty, o.qty * o.price)
        if o.side == "BUY":
            self._move(m.quote, -o.qty * o.price, o.qty * o.price)
        else:
            self._move(m.base, -o.qty, o.qty)
        if marketable:
            self._fill(o, m, px, now, locked=True)

    def _fill(self, o: Order, m: Market, px: float, now: int, locked: bool) -> None:
        cost = o.qty * px
        if o.side == "BUY":
            reserved = o.qty * o.price if locked else 0.0
            self._move(m.quote, free=reserved - cost, locked=-reserved)
            self._move(m.base, free=o.qty)
        else:
            self._move(m.base, free=0.0 if locked else -o.qty, locked=-o.qty if locked else 0.0)
            self._move(m.quote, free=cost)
        o.executed, o.quote, o.status, o.update_time = o.qty, cost, "FILLED", now
        o.fills = [{"price": fmt(px), "qty": fmt(o.qty), "commission": fmt(0), "commissionAsset": m.quote, "tradeId": o.order_id}]

    # -- matching -----------------------------------------------------------------------
    def sync(self, now: int) -> None:
        """Fill every open limit order the replayed price crossed since the last sync."""
        start, self.last_sync = self.last_sync, now
        if start is None or now <= start:
            return
        for o in [o for o in self.orders.values() if o.status == "NEW"]:
            m = self.markets[o.symbol]
            rng = m.price_range(max(start, o.time), now)
            if rng and (rng[0] <= o.price if o.side == "BUY" else rng[1] >= o.price):
                self._fill(o, m, o.price, now, locked=True)

    # -- querying -----------------------------------------------------------------------
    def find(self, p: dict[str, str], now: int, not_found: ApiError) -> Order:
        """The order named by orderId or origClientOrderId on symbol."""
        self.sync(now)
        m = self._market(p.get("symbol"))
        if p.get("orderId"):
            try:
                oid: int | None = int(p["orderId"])
            except ValueError:
                raise ApiError(-1100, "Illegal characters found in parameter 'orderId'.") from None
        elif p.get("origClientOrderId"):
            oid = self.by_client.get((m.symbol, p["origClientOrderId"]))
        else:
            raise ApiError(-1102, "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!")
        o = self.orders.get(oid) if oid is not None else None
        if o is None or o.symbol != m.symbol:
            raise not_found
        return o

    def cancel(self, p: dict[str, str], now: int) -> dict[str, Any]:
        """DELETE /api/v3/order: unlock the funds of an open order."""
        o = self.find(p, now, ApiError(-2011, "Unknown order sent."))
        if o.status != "NEW":
            raise ApiError(-2011, "Unknown order sent.")
        m = self.markets[o.symbol]
        if o.side == "BUY":
            self._move(m.quote, o.qty * o.price, -o.qty * o.price)
        else:
            self._move(m.base, o.qty, -o.qty)
        o.status, o.update_time = "CANCELED", now
        d = o.as_json()
        d.update(origClientOrderId=o.client_id, clientOrderId=p.get("newClientOrderId") or "cancel" + secrets.token_hex(8))
        return d

    def open_orders(self, symbol: str | None, now: int) -> list[dict[str, Any]]:
        """GET /api/v3/openOrders."""
        self.sync(now)
        if symbol:
            self._market(symbol)
        return [o.as_json() for o in self.orders.values() if o.status == "NEW" and symbol in (None, "", o.symbol)]

    def all_orders(self, symbol: str | None, now: int) -> list[dict[str, Any]]:
        """GET /api/v3/allOrders."""
        self.sync(now)
        m = self._market(symbol)
        return [o.as_json() for o in self.orders.values() if o.symbol == m.symbol]

    def balances_json(self, now: int) -> dict[str, Any]:
        """GET /api/v3/account."""
        self.sync(now)
        assets = sorted(set(self.free) | set(self.locked))
        return {
            "makerCommission": 0,
            "takerCommission": 0,
            "buyerCommission": 0,
            "sellerCommission": 0,
            "canTrade": True,
            "canWithdraw": False,
            "canDeposit": False,
            "brokered": False,
            "requireSelfTradePrevention": False,
            "updateTime": now,
            "accountType": "SPOT",
            "balances": [
                {"asset": a, "free": fmt(max(self.free.get(a, 0.0), 0.0)), "locked": fmt(max(self.locked.get(a, 0.0), 0.0))}
                for a in assets
            ],
            "permissions": ["SPOT"],
        }


def _decimal(p: dict[str, str], key: str) -> Decimal:
    """A positive decimal parameter exactly as sent (filters compare decimals, not floats)."""
    if not p.get(key):
        raise missing(key)
    try:
        v = Decimal(p[key])
    except InvalidOperation:
        raise ApiError(-1100, f"Illegal characters found in parameter '{key}'.") from None
    if not v.is_finite() or not v > 0:
        raise ApiError(-1013, f"Invalid {key}.")
    if -v.normalize().as_tuple().exponent > ASSET_PRECISION:  # type: ignore[operator]
        raise ApiError(-1111, "Precision is over the maximum defined for this asset.")
    return v

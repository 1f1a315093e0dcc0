"""REST: the Binance spot `/api/v3` subset ccxt uses, with HMAC-SHA256 signing verified.

Public: ping, time, exchangeInfo, klines, depth, ticker/bookTicker, ticker/24hr, ticker/price
(the last four DERIVED from the replay with a configurable spread: see book.py). Signed: account, order (POST/GET/DELETE),
openOrders, allOrders. `serverTime` is the replay clock. A signed request's `timestamp` must be
within `recvWindow` (default 5000, at most 60000 ms) of the wall clock, or of the replay
clock (for a client that adjusted to `serverTime`), and not more than 1 s ahead of it.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl

import structlog
from aiohttp import web

from daemon.localexchange.book import DEPTH_LIMITS, Touch, day_stats, depth, touch
from daemon.localexchange.errors import ApiError, missing
from daemon.localexchange.history import DEFAULT_LIMIT, MAX_LIMIT, query_bars
from daemon.localexchange.market import Market
from daemon.localexchange.streams import fmt
from daemon.localexchange.tape import TIMEFRAME_MS

log = structlog.get_logger("localexchange.rest")
_SIGNATURE = re.compile(r"(?:^|&)signature=([^&]*)$")
LX_KEY: web.AppKey[Any] = web.AppKey("lx", object)  # the LocalExchange serving this app
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error_response(e: ApiError, headers: dict[str, str] | None = None) -> web.Response:
    """`{"code", "msg"}` with the error's HTTP status."""
    return web.json_response({"code": e.code, "msg": e.msg}, status=e.status, headers=headers)


@web.middleware
async def fault_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Apply a pending REST fault (429/418/5xx, a hang, a delay) to calls under /api/, and
    count the calls in flight."""
    lx = request.app[LX_KEY]
    if not request.path.startswith("/api/"):
        return await handler(request)
    lx.rest_in_flight += 1
    lx.rest_in_flight_max = max(lx.rest_in_flight_max, lx.rest_in_flight)
    try:
        delay = lx.faults.delay_for(request.path)
        if delay:
            await asyncio.sleep(delay)
        return await _faulted(lx, request, handler)
    finally:
        lx.rest_in_flight -= 1


async def _faulted(lx: Any, request: web.Request, handler: Handler) -> web.StreamResponse:
    fault = lx.faults.take_rest(request.path)
    if fault is None:
        return await handler(request)
    log.warning("fault_rest", path=request.path, kind=fault.kind, status=fault.status)
    if fault.kind == "timeout":
        try:
            await asyncio.wait_for(lx.faults.released.wait(), timeout=fault.hang_s)
        except TimeoutError:
            pass
        return web.Response(status=504, text="local exchange: injected timeout")
    headers = {"Retry-After": str(fault.retry_after)} if fault.status in (418, 429) else None
    if fault.status in (418, 429):
        msg = "Way too many requests; IP banned." if fault.status == 418 else "Too many requests; please use the websocket."
        return error_response(ApiError(-1003, msg, fault.status), headers)
    return web.Response(status=fault.status, text=f"local exchange: injected HTTP {fault.status}")


def _int_param(q: dict[str, str], key: str) -> int | None:
    if key not in q:
        return None
    try:
        return int(q[key])
    except ValueError:
        raise ApiError(-1100, f"Illegal characters found in parameter '{key}'; legal range is '^[0-9]{{1,20}}$'.") from None


def _market(lx: Any, q: dict[str, str]) -> Market:
    if not q.get("symbol"):
        raise missing("symbol")
    m = lx.markets.get(q["symbol"])
    if m is None:
        raise ApiError(-1121, "Invalid symbol.")
    return m


def bars_response(lx: Any, q: dict[str, str]) -> list[list[Any]]:
    """GET /api/v3/klines."""
    m = _market(lx, q)
    tf = q.get("interval")
    if not tf:
        raise missing("interval")
    if tf not in TIMEFRAME_MS:
        raise ApiError(-1120, "Invalid interval.")
    start, end = _int_param(q, "startTime"), _int_param(q, "endTime")
    limit = _int_param(q, "limit") or DEFAULT_LIMIT
    if not 1 <= limit <= MAX_LIMIT:
        raise ApiError(-1130, f"Invalid data sent for a parameter: limit must be 1..{MAX_LIMIT}.")
    if start is not None and end is not None and start > end:
        raise ApiError(-1023, "Start time is greater than end time.")
    step = TIMEFRAME_MS[tf]
    rows = query_bars(m, tf, lx.now_ms(), start, end, limit)
    return [
        [
            int(r[0]),
            fmt(r[1]),
            fmt(r[2]),
            fmt(r[3]),
            fmt(r[4]),
            fmt(r[5]),
            int(r[0]) + step - 1,
            fmt(r[5] * r[4]),
            0,
            "0",
            "0",
            "0",
        ]
        for r in rows
    ]


def _touch(lx: Any, m: Market) -> Touch:
    t = touch(m, lx.now_ms(), lx.spread_bps)
    if t is None:
        raise ApiError(-1121, f"Invalid symbol: {m.symbol} has no price at the replay instant.")
    return t


def _markets(lx: Any, q: dict[str, str]) -> tuple[list[Market], bool]:
    """The markets a ticker call asks for (`symbol`, `symbols` as a JSON array, or all); and
    whether the answer is a list."""
    if q.get("symbol"):
        return [_market(lx, q)], False
    if q.get("symbols"):
        try:
            names = json.loads(q["symbols"])
            assert isinstance(names, list) and all(isinstance(n, str) for n in names)
        except (ValueError, AssertionError):
            raise ApiError(-1100, "Illegal characters found in parameter 'symbols'.") from None
        return [_market(lx, {"symbol": n}) for n in names], True
    return [m for m in lx.markets.values() if touch(m, lx.now_ms(), lx.spread_bps) is not None], True


def book_ticker_json(m: Market, t: Touch) -> dict[str, Any]:
    """One `/api/v3/ticker/bookTicker` entry."""
    return {
        "symbol": m.symbol,
        "bidPrice": fmt(t.bid),
        "bidQty": fmt(t.bid_qty),
        "askPrice": fmt(t.ask),
        "askQty": fmt(t.ask_qty),
    }


def _day_json(lx: Any, m: Market) -> dict[str, Any]:
    now, t = lx.now_ms(), _touch(lx, m)
    d = day_stats(m, now)
    if d is None:
        raise ApiError(-1121, f"Invalid symbol: {m.symbol} has no bars before the replay instant.")
    change = d["last"] - d["open"]
    return {
        **book_ticker_json(m, t),
        "priceChange": fmt(change),
        "priceChangePercent": f"{100 * change / d['open']:.3f}",
        "weightedAvgPrice": fmt(d["quote_volume"] / d["volume"] if d["volume"] else d["last"]),
        "prevClosePrice": fmt(d["open"]),
        "lastPrice": fmt(d["last"]),
        "lastQty": "0.00000000",
        "openPrice": fmt(d["open"]),
        "highPrice": fmt(d["high"]),
        "lowPrice": fmt(d["low"]),
        "volume": fmt(d["volume"]),
        "quoteVolume": fmt(d["quote_volume"]),
        "openTime": d["open_ms"],
        "closeTime": now,
        "firstId": -1,
        "lastId": -1,
        "count": 0,
    }


def ticker_response(lx: Any, kind: str, q: dict[str, str]) -> Any:
    """GET /api/v3/ticker/{bookTicker,24hr,price}: one object for `symbol`, else a list."""
    markets, many = _markets(lx, q)
    if kind == "bookTicker":
        out = [book_ticker_json(m, _touch(lx, m)) for m in markets]
    elif kind == "24hr":
        out = [_day_json(lx, m) for m in markets]
    elif kind == "price":
        out = [{"symbol": m.symbol, "price": fmt(m.price(lx.now_ms()) or 0.0)} for m in markets]
    else:
        raise ApiError(-1000, f"local exchange: unsupported endpoint GET /api/v3/ticker/{kind}", 404)
    return out if many else out[0]


def depth_response(lx: Any, q: dict[str, str]) -> dict[str, Any]:
    """GET /api/v3/depth: `limit` (100) levels a side around the derived touch."""
    m = _market(lx, q)
    limit = _int_param(q, "limit") or 100
    if limit not in DEPTH_LIMITS:
        raise ApiError(-1100, f"Illegal characters found in parameter 'limit'; legal values are {DEPTH_LIMITS}.")
    t = _touch(lx, m)
    bids, asks = depth(t, limit, m.price_decimals)
    return {"lastUpdateId": lx.now_ms(), "bids": [[fmt(p), fmt(v)] for p, v in bids], "asks": [[fmt(p), fmt(v)] for p, v in asks]}


def exchange_info(lx: Any) -> dict[str, Any]:
    """GET /api/v3/exchangeInfo: one TRADING spot market per tape symbol, with filters."""
    symbols = []
    for m in lx.markets.values():
        f = m.filters
        tick, step = fmt(float(f.tick)), fmt(float(f.step))
        symbols.append(
            {
                "symbol": m.symbol,
                "status": "TRADING",
                "baseAsset": m.base,
                "baseAssetPrecision": 8,
                "quoteAsset": m.quote,
                "quotePrecision": 8,
                "quoteAssetPrecision": 8,
                "baseCommissionPrecision": 8,
                "quoteCommissionPrecision": 8,
                "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET"],
                "icebergAllowed": False,
                "ocoAllowed": False,
                "quoteOrderQtyMarketAllowed": True,
                "allowTrailingStop": False,
                "cancelReplaceAllowed": False,
                "isSpotTradingAllowed": True,
                "isMarginTradingAllowed": False,
                "permissionSets": [["SPOT"]],
                "filters": [
                    {"filterType": "PRICE_FILTER", "minPrice": tick, "maxPrice": fmt(float(f.max_price)), "tickSize": tick},
                    {"filterType": "LOT_SIZE", "minQty": step, "maxQty": fmt(float(f.max_qty)), "stepSize": step},
                    {
                        "filterType": "MARKET_LOT_SIZE",
                        "minQty": "0.00000000",
                        "maxQty": fmt(float(f.max_qty)),
                        "stepSize": "0.00000000",
                    },
                    {
                        "filterType": "NOTIONAL",
                        "minNotional": fmt(float(f.min_notional)),
                        "applyMinToMarket": True,
                        "maxNotional": fmt(float(f.max_notional)),
                        "applyMaxToMarket": False,
                        "avgPriceMins": 5,
                    },
                ],
            }
        )
    return {
        "timezone": "UTC",
        "serverTime": lx.now_ms(),
        "rateLimits": [{"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000}],
        "exchangeFilters": [],
        "symbols": symbols,
    }


def verify_signature(lx: Any, request: web.Request, body: str) -> dict[str, str]:
    """Check API key, HMAC-SHA256 signature and timestamp; return the request's parameters."""
    if request.headers.get("X-MBX-APIKEY") != lx.api_key:
        raise ApiError(-2015, "Invalid API-key, IP, or permissions for action.", 401)
    total = request.query_string + body  # Binance: the query string concatenated with the body
    m = _SIGNATURE.search(total)
    if m is None:
        raise missing("signature")
    payload = total[: m.start()]
    expected = hmac.new(lx.api_secret.encode(), payload.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, m.group(1).lower()):
        raise ApiError(-1022, "Signature for this request is not valid.")
    params = dict(parse_qsl(payload, keep_blank_values=True))
    ts, window = _int_param(params, "timestamp"), _int_param(params, "recvWindow") or 5000
    if ts is None:
        raise missing("timestamp")
    if window > 60000:
        raise ApiError(-1131, "recvWindow must be less than 60000")
    if not any(ts < ref + 1000 and ref - ts <= window for ref in (time.time() * 1000, lx.now_ms())):
        raise ApiError(-1021, "Timestamp for this request is outside of the recvWindow.")
    return params


async def public_handler(request: web.Request) -> web.Response:
    """GET ping, time, exchangeInfo, klines."""
    lx, name = request.app[LX_KEY], request.match_info["name"]
    q = dict(request.query)
    try:
        if name == "ping":
            return web.json_response({})
        if name == "time":
            return web.json_response({"serverTime": lx.now_ms()})
        if name == "exchangeInfo":
            return web.json_response(exchange_info(lx))
        if name == "klines":
            return web.json_response(bars_response(lx, q))
        if name == "depth":
            return web.json_response(depth_response(lx, q))
        if name.startswith("ticker/"):
            return web.json_response(ticker_response(lx, name.removeprefix("ticker/"), q))
        raise ApiError(-1000, f"local exchange: unsupported endpoint GET /api/v3/{name}", 404)
    except ApiError as e:
        return error_response(e)


async def private_handler(request: web.Request) -> web.Response:
    """Signed: account, order, openOrders, allOrders."""
    lx, name, method = request.app[LX_KEY], request.match_info["name"], request.method
    try:
        body = await request.text() if method in ("POST", "PUT") else ""
        p = verify_signature(lx, request, body)
        now, acct = lx.now_ms(), lx.account
        if name == "account" and method == "GET":
            return web.json_response(acct.balances_json(now))
        if name == "order" and method == "POST":
            return web.json_response(acct.place(p, now))
        if name == "order" and method == "GET":
            return web.json_response(acct.find(p, now, ApiError(-2013, "Order does not exist.")).as_json())
        if name == "order" and method == "DELETE":
            return web.json_response(acct.cancel(p, now))
        if name == "openOrders" and method == "GET":
            return web.json_response(acct.open_orders(p.get("symbol"), now))
        if name == "allOrders" and method == "GET":
            return web.json_response(acct.all_orders(p.get("symbol"), now))
        raise ApiError(-1000, f"local exchange: unsupported endpoint {method} /api/v3/{name}", 404)
    except ApiError as e:
        if e.code in (-2015, -1022, -1021):
            log.warning("auth_rejected", code=e.code, path=request.path)
        return error_response(e)


PUBLIC = ("ping", "time", "exchangeInfo", "klines", "depth")


async def api_handler(request: web.Request) -> web.Response:
    """`/api/v3/{name}`: public endpoints unsigned, every other one signed."""
    if request.match_info["name"] in PUBLIC or request.match_info["name"].startswith("ticker/"):
        if request.method != "GET":
            return error_response(ApiError(-1000, f"local exchange: unsupported {request.method} {request.path}", 405))
        return await public_handler(request)
    return await private_handler(request)


def add_routes(app: web.Application) -> None:
    """Mount the REST endpoints."""
    app.router.add_route("*", "/api/v3/{name:ticker/[A-Za-z0-9]+|[A-Za-z]+}", api_handler)

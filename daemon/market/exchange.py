"""The exchange client: the only module that imports ccxt.

One client for the three endpoints (`local`, `testnet` = ccxt sandbox mode, `live`); they
differ only in URLs and keys. ccxt's many exceptions become three classes here:
TemporaryError (retried with exponential backoff and jitter), RateLimited (a TemporaryError
that waits at least the server's Retry-After) and FatalError (auth, bad symbol, rejected
order: never retried, reported loudly). Closed bars reach the feed through BarListener as
the exchange sends them (Binance's kline `x` flag), never the forming bar.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol, TypeVar

import ccxt
import ccxt.pro as ccxtpro

from daemon import log as logging
from daemon.config import ConfigError, ExchangeConfig
from daemon.domain import Bar, timeframe_ms
from daemon.market.errors import AuthError, ExchangeFailure, FatalError, OrderRejected, RateLimited, TemporaryError, UnknownOrder
from daemon.market.orders import OrderCalls
from daemon.metrics import REGISTRY

__all__ = [
    "AuthError",
    "ExchangeClient",
    "ExchangeFailure",
    "FatalError",
    "OrderRejected",
    "RateLimited",
    "TemporaryError",
    "UnknownOrder",
    "make_client",
    "unknown_symbols",
]
log = logging.get("sigd.exchange")
T = TypeVar("T")
PAGE_LIMIT = 1000  # Binance's cap on klines per request
STREAMS_PER_CONNECTION = 1024  # Binance spot's cap on streams per websocket connection
ERRORS = REGISTRY.counter("sigd_exchange_errors_total", "Exchange call failures by operation and kind")
BAD_FRAMES = REGISTRY.counter("sigd_bad_frames_total", "Websocket frames that could not be parsed")


class BarListener(Protocol):
    """Receives what the websocket delivers, synchronously inside ccxt's message handler."""

    def closed_bar(self, bar: Bar, event_ms: int | None) -> None:
        """A closing update (`x: true`) arrived; the bar is not validated yet."""

    def bad_frame(self, symbol: str | None, timeframe: str | None, reason: str) -> None:
        """A frame could not be parsed; the stream, when known, must resync."""


class QuoteListener(Protocol):
    """Receives best bid/ask updates, synchronously inside ccxt's message handler."""

    def on_quote(self, symbol: str, bid: float, ask: float, ts_ms: int | None) -> None:
        """A bookTicker frame arrived; `ts_ms` is its event time when the exchange sends one."""


class _Binance(ccxtpro.binance):  # type: ignore[misc]
    """ccxt's binance with four local additions, all on documented-stable internals."""

    sigd_listener: BarListener | None = None
    sigd_quotes: QuoteListener | None = None
    sigd_local_prefix: str | None = None

    def handle_bids_asks(self, client: Any, message: Any) -> Any:
        # Hand each best bid/ask to the listener as it arrives (no wait for the watch future);
        # a frame that does not parse raises, and the guard in client() counts it.
        client.sigd_last_frame = time.monotonic()  # data on the connection: it is alive
        for row in message if isinstance(message, list) else [message]:
            if self.sigd_quotes is not None:
                symbol = self.safe_symbol(row["s"], None, None, "spot")
                event = row.get("E")
                self.sigd_quotes.on_quote(symbol, float(row["b"]), float(row["a"]), int(event) if event else None)
        return super().handle_bids_asks(client, message)

    def handle_ohlcv(self, client: Any, message: dict) -> Any:
        # ccxt drops the kline's closed flag; read it here so a bar is emitted on its close.
        # Every kline frame is parsed strictly, so a malformed one raises (and is counted by
        # the guard in client()) instead of being cached with None prices.
        client.sigd_last_frame = time.monotonic()  # data on the connection (acks do not count)
        k = message.get("k")
        if not isinstance(k, dict):
            raise ValueError("kline event without its 'k' object")
        symbol = self.safe_symbol(k["s"], None, None, "spot")
        bar = Bar(symbol, str(k["i"]), int(k["t"]), float(k["o"]), float(k["h"]), float(k["l"]), float(k["c"]), float(k["v"]))
        if k.get("x") is True and self.sigd_listener is not None:
            self.sigd_listener.closed_bar(bar, message.get("E"))
        return super().handle_ohlcv(client, message)

    def get_exceptions_by_url(self, url: str, exactOrBroad: str) -> dict:
        # ccxt picks Binance's spot error table by host name; a local URL would get the
        # generic one (e.g. -1004 "server busy" would not be retryable). Research note P8.
        if url is not None and self.sigd_local_prefix and url.startswith(self.sigd_local_prefix):
            return self.safe_dict(self.exceptions["spot"], exactOrBroad, {})
        return super().get_exceptions_by_url(url, exactOrBroad)

    def client(self, url: str) -> Any:
        # An exception inside ccxt's message handler would end its receive loop silently
        # (a stall); catch it per frame, report it, and keep receiving.
        c = super().client(url)
        if not getattr(c, "sigd_guarded", False):
            inner = c.handle_text_or_binary_message

            def guarded(data: Any) -> None:
                try:
                    inner(data)
                except Exception as exc:
                    self._bad_frame(data, exc)

            c.handle_text_or_binary_message = guarded
            c.sigd_guarded = True
        return c

    def _bad_frame(self, data: Any, exc: Exception) -> None:
        symbol = timeframe = None
        quote = False
        try:  # name the stream when the frame says which one it is
            msg = json.loads(data)
            k = msg.get("k") if isinstance(msg.get("k"), dict) else {}
            symbol = self.safe_symbol(k.get("s") or msg.get("s"), None, None, "spot")
            timeframe = k.get("i")
            quote = "e" not in msg and "b" in msg and "a" in msg  # a bookTicker frame: no bar is missing
        except Exception:
            pass
        reason = f"{type(exc).__name__}: {exc}"
        stream = f"{symbol} bookTicker" if quote else f"{symbol} {timeframe}" if timeframe else "unknown"
        BAD_FRAMES.inc(stream=stream)
        log.warning("bad_frame", stream=stream, error=reason, frame=str(data)[:200])
        if self.sigd_listener is not None and not quote:
            self.sigd_listener.bad_frame(symbol, timeframe, reason)


def make_client(
    cfg: ExchangeConfig,
    *,
    rest_url: str | None = None,
    ws_url: str | None = None,
    api_key: str,
    api_secret: str,
) -> ExchangeClient:
    """The one client for `local`, `testnet` and `live`: only URLs and keys differ.

    `rest_url` is the `/api/v3` base and `ws_url` the websocket base (keep `/stream` in it);
    both are required for `local` and optional overrides otherwise.
    """
    if cfg.endpoint == "local" and not rest_url:
        raise ValueError("exchange.endpoint = 'local' needs the local exchange's rest_url (and ws_url to stream)")
    logging.register_secret(api_key)
    logging.register_secret(api_secret)
    ex = _Binance(
        {
            "apiKey": api_key,
            "secret": api_secret,
            "enableRateLimit": cfg.enable_rate_limit,
            "timeout": int(cfg.request_timeout_s * 1000),
            "options": {
                "defaultType": "spot",
                "fetchMarkets": {"types": ["spot"]},  # no futures hosts (research note P3)
                "fetchCurrencies": False,  # no signed sapi calls in load_markets (P2)
                "fetchMargins": False,
                # Sign with the wall clock (NTP-synced under systemd): a replay clock running
                # faster than 1x would drift out of recvWindow after the one-time adjustment.
                "adjustForTimeDifference": False,
            },
        }
    )
    if cfg.endpoint == "testnet":
        ex.set_sandbox_mode(True)  # replaces urls["api"]: override only after it (P4)
    if rest_url:
        ex.urls["api"]["public"] = ex.urls["api"]["private"] = rest_url
        ex.urls["api"]["v1"] = rest_url.removesuffix("/v3") + "/v1"
        ex.sigd_local_prefix = rest_url.split("/api/")[0] + "/api/"
    if ws_url:
        ex.urls["api"]["ws"]["spot"] = ws_url
    # ccxt opens a connection per kind of subscription (klines, book tickers) up to 50; Binance
    # takes up to 1024 streams on one, so keep them on one while they fit (the klines are one
    # ccxt subscription and always share theirs).
    kline_streams = len(cfg.symbols) * len(cfg.timeframes) + 1
    ex.options["streamLimits"]["spot"] = 1 if kline_streams + len(cfg.symbols) <= STREAMS_PER_CONNECTION else 2
    return ExchangeClient(ex, cfg)


def unknown_symbols(cfg: ExchangeConfig, listed: set[str]) -> list[str]:
    """`exchange.symbols[i]: ...` for each configured symbol (and the reference) not in `listed`."""
    keyed = [(f"exchange.symbols[{i}]", sym) for i, sym in enumerate(cfg.symbols)]
    keyed.append(("exchange.reference_symbol", cfg.reference_symbol))
    return [
        f"{key}: {sym!r} is not a market on the exchange (endpoint {cfg.endpoint!r})" for key, sym in keyed if sym not in listed
    ]


def _row_to_bar(symbol: str, timeframe: str, row: list[Any]) -> Bar:
    # A missing value becomes NaN so that validation names it instead of a TypeError here.
    def f(v: Any) -> float:
        try:
            return float(v)
        except (TypeError, ValueError):
            return math.nan

    return Bar(symbol, timeframe, int(row[0]), f(row[1]), f(row[2]), f(row[3]), f(row[4]), f(row[5]))


class ExchangeClient(OrderCalls):
    """REST and websocket access with error mapping, retries and backoff (orders: OrderCalls)."""

    def __init__(self, ex: Any, cfg: ExchangeConfig) -> None:
        self.ex, self.cfg = ex, cfg
        self._subscribed: dict[str, tuple[Any, ...]] = {}  # watch kind -> (its args, the ccxt clients then)

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Load markets; FatalError on bad keys or URLs, ConfigError naming the key of a
        configured symbol the exchange does not list."""
        kline_streams = len(self.cfg.symbols) * len(self.cfg.timeframes) + 1
        if self.cfg.endpoint != "local" and kline_streams > STREAMS_PER_CONNECTION:
            # ccxt subscribes every kline stream on one connection; Binance refuses more there.
            raise ConfigError(
                f"exchange.symbols: {len(self.cfg.symbols)} symbols x {len(self.cfg.timeframes)} timeframes + the "
                f"reference = {kline_streams} kline streams; Binance takes at most {STREAMS_PER_CONNECTION} on one "
                f"connection (at most {(STREAMS_PER_CONNECTION - 1) // len(self.cfg.timeframes)} symbols)"
            )
        await self._call("load_markets", self.ex.load_markets)
        problems = unknown_symbols(self.cfg, set(self.ex.markets or ()))
        if problems:
            raise ConfigError("; ".join(problems))

    def symbols(self) -> list[str]:
        """Every spot market the exchange lists (after start)."""
        return sorted(self.ex.markets or ())

    async def close(self) -> None:
        """Release sockets and HTTP sessions."""
        await self.ex.close()

    def set_listener(self, listener: BarListener | None) -> None:
        """Route closed bars and bad frames from the websocket to `listener`."""
        self.ex.sigd_listener = listener

    def set_quote_listener(self, listener: QuoteListener | None) -> None:
        """Route best bid/ask updates from the websocket to `listener`."""
        self.ex.sigd_quotes = listener

    def connections(self) -> int:
        """Websocket connections open now."""
        return len(self.ex.clients or {})

    # --- errors and retries ---------------------------------------------------------------

    def _map(self, op: str, exc: Exception) -> ExchangeFailure:
        msg = f"{op}: {type(exc).__name__}: {logging.redact(str(exc))}"
        if isinstance(exc, (ccxt.DDoSProtection, ccxt.RateLimitExceeded)):
            return RateLimited(msg, self._retry_after())
        if isinstance(exc, (ccxt.AuthenticationError, ccxt.PermissionDenied, ccxt.AccountSuspended)):
            return AuthError(msg)
        if isinstance(exc, ccxt.OrderNotFound):
            return UnknownOrder(msg)
        if isinstance(exc, (ccxt.InsufficientFunds, ccxt.InvalidOrder, ccxt.DuplicateOrderId)):
            return OrderRejected(msg)
        if isinstance(exc, (ccxt.NetworkError, ccxt.OperationFailed)):
            return TemporaryError(msg)
        return FatalError(msg)

    def _retry_after(self) -> float | None:
        headers = getattr(self.ex, "last_response_headers", None) or {}
        for key, value in headers.items():
            if key.lower() == "retry-after":
                try:
                    return float(value)
                except ValueError:
                    return None
        return None

    def backoff_s(self, attempt: int, err: ExchangeFailure | None = None) -> float:
        """Exponential backoff with jitter; at least Retry-After when the server sent one."""
        delay = min(self.cfg.backoff_max_s, self.cfg.backoff_base_s * 2**attempt) * random.uniform(0.5, 1.0)
        if isinstance(err, RateLimited) and err.retry_after_s:
            delay = max(delay, err.retry_after_s)
        return delay

    async def _once(self, op: str, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        try:
            return await fn(*args)
        except ccxt.BaseError as exc:
            err = self._map(op, exc)
            ERRORS.inc(op=op, kind=type(err).__name__)
            if isinstance(err, AuthError):
                log.error("exchange_auth_failed", op=op, error=str(err))
            raise err from exc

    async def _call(self, op: str, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Call ccxt, retrying temporary failures up to exchange.max_retries times."""
        attempt = 0
        while True:
            try:
                return await self._once(op, fn, *args)
            except TemporaryError as err:
                if attempt >= self.cfg.max_retries:
                    raise
                delay = self.backoff_s(attempt, err)
                attempt += 1
                log.warning("exchange_retry", op=op, attempt=attempt, delay_s=round(delay, 3), error=str(err))
                await asyncio.sleep(delay)

    # --- bars -----------------------------------------------------------------------------

    async def fetch_bars(self, symbol: str, timeframe: str, since_ms: int, until_ms: int | None = None) -> list[Bar]:
        """Closed bars with since_ms <= ts < until_ms, oldest first (see iter_bar_pages)."""
        return [bar async for page in self.iter_bar_pages(symbol, timeframe, since_ms, until_ms) for bar in page]

    async def iter_bar_pages(
        self, symbol: str, timeframe: str, since_ms: int, until_ms: int | None = None
    ) -> AsyncIterator[list[Bar]]:
        """Pages of closed bars with since_ms <= ts < until_ms, oldest first.

        Without `until_ms` the history runs to the present and its newest row, the forming
        bar, is never yielded. Values are not validated here (the feed does that).
        """
        step = timeframe_ms(timeframe)
        cursor = -(-since_ms // step) * step
        held: list[Bar] = []  # the newest row so far: the forming bar if nothing follows it
        while until_ms is None or cursor < until_ms:
            params = {} if until_ms is None else {"until": until_ms - 1}
            rows = await self._call("fetch_ohlcv", self.ex.fetch_ohlcv, symbol, timeframe, cursor, PAGE_LIMIT, params)
            fresh = [_row_to_bar(symbol, timeframe, r) for r in rows if r[0] >= cursor and (until_ms is None or r[0] < until_ms)]
            if not fresh:
                break
            page, held = held + fresh[:-1], fresh[-1:]
            if page:
                yield page
            if len(rows) < PAGE_LIMIT:
                break
            cursor = fresh[-1].ts + step
        if until_ms is not None and held:
            yield held

    async def server_time_ms(self) -> int:
        """The exchange's clock (a replay clock on the local exchange): one weight-1 call."""
        return int(await self._call("fetch_time", self.ex.fetch_time))

    async def watch(self, streams: list[tuple[str, str]]) -> None:
        """Wait for the next websocket update of any of `streams` (subscribing on first use).

        Closed bars go to the listener; this call only keeps the subscription alive and
        surfaces connection trouble as TemporaryError.
        """
        await self._watch("watch_ohlcv", self.ex.watch_ohlcv_for_symbols, [list(s) for s in streams])

    async def watch_quotes(self, symbols: list[str]) -> None:
        """Wait for the next best bid/ask update of any of `symbols` (subscribing on first use);
        the updates go to the quote listener."""
        # ccxt picks a connection per subscription hash; the one-symbol keep-alive watch (see
        # _watch) must land on the connection the full subscription is on.
        by_hash = self.ex.options.setdefault("streamBySubscriptionsHash", {})
        full = by_hash.get("bookTicker::" + ",".join(symbols))
        if full is not None:
            by_hash["bookTicker::" + symbols[-1]] = full
        await self._watch("watch_bids_asks", self.ex.watch_bids_asks, list(symbols))

    async def _watch(self, op: str, fn: Callable[..., Awaitable[Any]], items: list[Any]) -> None:
        """Subscribe all `items` once per connection, then keep watching only the last one.

        ccxt's multi-symbol watch builds a future per item on every call, and the loops call
        it after every frame: O(items) work per frame, O(symbols^2) per second. The data
        reaches the listeners as frames are parsed anyway; the pending watch is only there to
        surface a lost connection, which rejects it whatever it waits for. After any failure,
        or when the connection it subscribed on is gone, the next call subscribes all again.
        """
        key = tuple(map(tuple, items)) if items and isinstance(items[0], list) else tuple(items)
        held = self._subscribed.get(op)
        live = {id(c) for c in (self.ex.clients or {}).values() if not c.closed()}
        full = held is None or held[0] != key or not held[1] <= live
        try:
            if full:
                await self._once(op, fn, items)
                self._subscribed[op] = (key, {id(c) for c in (self.ex.clients or {}).values()})
            else:
                await self._once(op, fn, items[-1:])
        except BaseException:
            self._subscribed.pop(op, None)
            raise

    async def keep_watching(self, watch: Callable[[], Awaitable[None]], on_lost: Callable[[str, int], None]) -> None:
        """Call `watch` (one watch_* call) forever; after a lost connection call
        `on_lost(reason, attempt)` and back off. FatalError and our own cancellation end it."""
        attempt = 0
        while True:
            try:
                await watch()
                attempt = 0
                continue
            except FatalError:
                raise
            except ExchangeFailure as err:
                reason = str(err)
            except asyncio.CancelledError:
                # ccxt cancels pending watches when it closes a client; only our own
                # cancellation (cancelling() > 0) ends the loop.
                if asyncio.current_task().cancelling():  # type: ignore[union-attr]
                    raise
                reason = "watch cancelled by ccxt"
            on_lost(reason, attempt)
            await asyncio.sleep(self.backoff_s(attempt))
            attempt += 1

    def _kline_connection(self) -> Any:
        """The open ccxt websocket client that carries the kline streams, None when there is none."""
        index = (self.ex.options.get("streamBySubscriptionsHash") or {}).get("multipleOHLCV")
        client = None if index is None else (self.ex.clients or {}).get(f"{self.ex.urls['api']['ws']['spot']}/{index}")
        return None if client is None or client.closed() else client

    def kline_frame_age_s(self) -> float | None:
        """Seconds since a data frame (a kline update or a quote; not an ack, which our own
        resubscribe provokes) arrived on the kline connection; None when it is not open or has
        received no data yet."""
        client = self._kline_connection()
        last = getattr(client, "sigd_last_frame", None)
        return None if last is None else time.monotonic() - last

    async def resubscribe(self, streams: list[tuple[str, str]]) -> bool:
        """UNSUBSCRIBE then SUBSCRIBE these (symbol, timeframe) kline streams on the open kline
        connection (two messages, whatever their number), as Binance takes them, leaving every
        other stream on it alone; False when there is no open connection (or sending failed)
        and only a reconnect can help.

        Sent as raw frames, not through ccxt's un_watch: that rejects a pending watch of the
        stream with an error the keep-alive could not tell from a real one. ccxt's own
        subscription record stays as it was, which is right: the stream is subscribed again.
        """
        client = self._kline_connection()
        if client is None:
            return False
        names = [f"{self.ex.market(sym)['lowercaseId']}@kline_{self.ex.timeframes.get(tf, tf)}" for sym, tf in streams]
        try:
            for method in ("UNSUBSCRIBE", "SUBSCRIBE"):
                await client.send({"method": method, "params": names, "id": self.ex.request_id(client.url)})
        except Exception as exc:
            log.warning("resubscribe_failed", streams=names, error=repr(exc))
            return False
        return True

    async def drop_connection(self, reason: str) -> None:
        """Close every websocket so the next watch reconnects and resubscribes."""
        for url, client in list((self.ex.clients or {}).items()):
            # Reject the pending watches with a NetworkError first: a plain close() would
            # cancel them, which the caller could not tell from its own cancellation.
            client.reset(ccxt.NetworkError(f"sigd dropped the connection: {reason}"))
            self.ex.clients.pop(url, None)
            await self._close_after_dial(client)

    @staticmethod
    async def _close_after_dial(client: Any) -> None:
        """Close a ccxt websocket client, also one that is still dialling.

        ccxt's close() does nothing while `connection` is None, and the dial then finishes
        and starts a receive loop that nothing owns: a socket (and both ends' zlib state,
        ~0.5 MB) leaked per drop that raced a connect. Wait for the dial (bounded by ccxt's
        own connection timeout) and close what it opened.
        """
        deadline = asyncio.get_running_loop().time() + (client.connectionTimeout or 10_000) / 1000 + 1
        while client.connecting and client.connection is None and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)
        await client.close()

"""Websocket kline streams (`/stream/ws/{n}`) driven by the replay clock.

Each subscribed stream (`btcusdt@kline_1m`) sends, like Binance:
- the closing update (`x: true`, final values) of every bar at the bar's close instant on the
  replay clock (event time `E` = that instant), in order, for every bar the tape has;
- updates of the forming bar (`x: false`) every 1 s (1s streams) or 2 s (others) of replay
  time, at most every 0.1 s of wall time, built only from data up to the replay instant.
A `btcusdt@bookTicker` stream sends the DERIVED best bid/ask (book.py) once per replay second
(at most every 0.1 s of wall time, and always at a minute's close), before any kline frame of
the same instant, as Binance's frame plus `E` = the replay instant.
One pump task serves every socket; faults are decided once per stream event.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import structlog
from aiohttp import WSCloseCode, WSMsgType, web

from daemon.localexchange.book import touch
from daemon.localexchange.clock import ReplayClock
from daemon.localexchange.faults import Faults
from daemon.localexchange.market import Market
from daemon.localexchange.tape import TIMEFRAME_MS

log = structlog.get_logger("localexchange.streams")
UPDATE_MS = {"1s": 1_000}  # replay ms between forming updates; Binance: 1000 for 1s, else 2000
DEFAULT_UPDATE_MS = 2_000
MIN_WALL_GAP_S = 0.1
MINUTE_MS = 60_000
IDLE_WAKE_S = 0.25
CLOSE_TIMEOUT_S = 1.0  # how long a close waits for the client's close frame
PUMP_KEY: web.AppKey[Pump] = web.AppKey("pump", object)  # type: ignore[arg-type]


def fmt(x: float) -> str:
    """A number as Binance writes it (8 decimals; exact for tape values)."""
    return f"{x:.8f}"


def bar_event(symbol: str, tf: str, bar: np.ndarray, closed: bool, event_ms: int) -> dict:
    """A Binance kline event for one bar (ts, o, h, l, c, v)."""
    t = int(bar[0])
    return {
        "e": "kline",
        "E": event_ms,
        "s": symbol,
        "k": {
            "t": t,
            "T": t + TIMEFRAME_MS[tf] - 1,
            "s": symbol,
            "i": tf,
            "f": -1,
            "L": -1,
            "o": fmt(bar[1]),
            "c": fmt(bar[4]),
            "h": fmt(bar[2]),
            "l": fmt(bar[3]),
            "v": fmt(bar[5]),
            "n": 0,
            "x": closed,
            "q": fmt(bar[5] * bar[4]),
            "V": "0",
            "Q": "0",
            "B": "0",
        },
    }


def malformed_frame(kind: str, symbol: str, tf: str, event_ms: int) -> str:
    """A deliberately broken frame (see `Faults.malformed`)."""
    if kind == "text":
        return '{"e":"kline","E":' + str(event_ms) + ',"s":"' + symbol + '","k":{"t":'
    event = bar_event(symbol, tf, np.zeros(6), True, event_ms)
    if kind == "shape":
        del event["k"]
    else:
        event["k"].update(t=event_ms - event_ms % TIMEFRAME_MS[tf], o="abc", h="NaN", l="-", c="", v="x")
    return json.dumps(event)


def broken_ohlc(bar: np.ndarray) -> np.ndarray:
    """The same bar with high below low and close above high."""
    o, h, l, c, v = bar[1:]
    return np.array([bar[0], o, l - (h - l) - 1.0, h + 1.0, h + 2.0, v])


@dataclass
class Stream:
    """One subscribed stream: its next bar to close and its forming-update pacing."""

    name: str
    market: Market
    tf: str
    next_open: int
    last_update_ms: int = 0
    last_update_wall: float = 0.0
    sockets: set[web.WebSocketResponse] = field(default_factory=set)

    @property
    def step(self) -> int:
        """Bar length in ms."""
        return TIMEFRAME_MS[self.tf]


@dataclass
class QuoteStream:
    """One subscribed bookTicker stream: the replay second it last sent."""

    name: str
    market: Market
    last_sec: int = -1
    last_wall: float = 0.0
    sockets: set[web.WebSocketResponse] = field(default_factory=set)


class Pump:
    """Sends every subscribed stream's frames on the replay clock."""

    def __init__(self, markets: dict[str, Market], clock: ReplayClock, faults: Faults, spread_bps: float = 2.0) -> None:
        self.markets, self.clock, self.faults, self.spread_bps = markets, clock, faults, spread_bps
        self.streams: dict[str, Stream] = {}
        self.quotes: dict[str, QuoteStream] = {}
        self.update_id = 0
        self.sockets: set[web.WebSocketResponse] = set()
        self.wake = asyncio.Event()
        self.frames_sent = 0
        self.subscribes: dict[str, int] = {}  # stream name -> SUBSCRIBE requests that named it
        # called as f(stream name, bar open ms, time.perf_counter()) right after a closing update
        # is written to every socket (for bar-close latency benchmarks)
        self.close_listeners: list[Callable[[str, int, float], None]] = []
        self._ended_logged = False

    # -- subscriptions ------------------------------------------------------------------
    def parse(self, name: str) -> tuple[Market, str] | None:
        """(market, timeframe or "bookTicker") of a stream name like `btcusdt@kline_1m` or
        `btcusdt@bookTicker`, None if unknown."""
        if name.endswith("@bookTicker"):
            sym, kind = name.removesuffix("@bookTicker"), "bookTicker"
        else:
            sym, _, kind = name.partition("@kline_")
        market = self.markets.get(sym.upper())
        known = kind in TIMEFRAME_MS or kind == "bookTicker"
        return (market, kind) if market and known and sym == sym.lower() else None

    def subscribe(self, ws: web.WebSocketResponse, names: list[str]) -> None:
        """Start sending `names` to `ws` from the current bar on."""
        now = self.clock.now_ms()
        for name in names:
            market, tf = self.parse(name)  # type: ignore[misc]  # validated by the caller
            self.subscribes[name] = self.subscribes.get(name, 0) + 1
            self.faults.subscribed(name)
            if tf == "bookTicker":
                self.quotes.setdefault(name, QuoteStream(name, market)).sockets.add(ws)
                continue
            stream = self.streams.get(name)
            if stream is None:
                step = TIMEFRAME_MS[tf]
                stream = self.streams[name] = Stream(name, market, tf, next_open=now - now % step)
            stream.sockets.add(ws)
        self.wake.set()

    def unsubscribe(self, ws: web.WebSocketResponse, names: list[str] | None = None) -> None:
        """Stop sending `names` (all when None) to `ws`."""
        for table in (self.streams, self.quotes):
            for name in list(table) if names is None else names:
                stream = table.get(name)
                if stream is not None:
                    stream.sockets.discard(ws)
                    if not stream.sockets:
                        del table[name]

    def subscriptions(self) -> list[str]:
        """Names of the streams with at least one socket."""
        return sorted([*self.streams, *self.quotes])

    async def drop_all(self) -> int:
        """Close every websocket (code 1001 going away)."""
        sockets = list(self.sockets)
        await asyncio.gather(
            *(ws.close(code=WSCloseCode.GOING_AWAY, message=b"local exchange: drop_websockets") for ws in sockets),
            return_exceptions=True,
        )
        return len(sockets)

    # -- the pump -----------------------------------------------------------------------
    async def run(self) -> None:
        """Forever: emit what is due, then wait (or step the clock at max speed)."""
        while True:
            self.wake.clear()
            now = self.clock.now_ms()
            try:
                for quote in list(self.quotes.values()):  # the touch first: a fill at a close sees it
                    await self._quote(quote, now)
                for stream in sorted(self.streams.values(), key=lambda s: (s.step, s.name)):
                    await self._emit(stream, now)
            except Exception:  # one bad step must not end every stream
                log.exception("pump_step_failed", replay_ms=now)
                await asyncio.sleep(IDLE_WAKE_S)
                continue
            if self.clock.ended and not self._ended_logged:
                self._ended_logged = True
                log.warning("tape_end", replay_ms=now)
            if self.clock.speed == 0 and not self.clock.paused and self.streams and not self.clock.ended:
                self.clock.advance_to(min(s.next_open + s.step for s in self.streams.values()))
                await asyncio.sleep(0)
                continue
            try:
                # Not wait_for: on Python 3.11 it swallows a cancel that lands as the event is set
                # (pause_clock then stop), and this loop would then never end.
                async with asyncio.timeout(self._sleep_s(now)):
                    await self.wake.wait()
            except TimeoutError:
                pass

    def _sleep_s(self, now: int) -> float:
        """Wall seconds until the next closing update or forming update is due."""
        wall = time.monotonic()
        delays = [IDLE_WAKE_S]
        for s in self.streams.values():
            delays.append(self.clock.wall_delay(s.next_open + s.step))
            forming_due = self.clock.wall_delay(s.last_update_ms + UPDATE_MS.get(s.tf, DEFAULT_UPDATE_MS))
            delays.append(max(forming_due, s.last_update_wall + MIN_WALL_GAP_S - wall))
        for q in self.quotes.values():
            delays.append(max(self.clock.wall_delay(q.last_sec + 1000), q.last_wall + MIN_WALL_GAP_S - wall))
        return max(min(delays), 0.0005)

    async def _quote(self, q: QuoteStream, now: int) -> None:
        """Send the touch once per replay second (wall-paced, but never skipping a minute's close)."""
        sec = now - now % 1000
        if sec == q.last_sec:
            return
        wall = time.monotonic()
        new_minute = sec // MINUTE_MS != q.last_sec // MINUTE_MS
        if not new_minute and wall - q.last_wall < MIN_WALL_GAP_S * (self.clock.speed > 0):
            return
        t = touch(q.market, now, self.spread_bps)
        q.last_sec, q.last_wall = sec, wall
        if t is None or self.faults.stalled(q.name):
            return
        self.update_id += 1
        frame = {
            "u": self.update_id,
            "s": q.market.symbol,
            "b": fmt(t.bid),
            "B": fmt(t.bid_qty),
            "a": fmt(t.ask),
            "A": fmt(t.ask_qty),
            "E": now,
        }
        frames = [json.dumps(frame)]
        if self.faults.take(self.faults.malformed_left, q.name):  # prices that are not numbers
            frames.insert(0, json.dumps({**frame, "b": "abc", "a": ""}))
        await self._broadcast(q.sockets, frames)

    async def _emit(self, stream: Stream, now: int) -> None:
        while stream.next_open + stream.step <= now:
            close_ms = stream.next_open + stream.step
            bar = stream.market.closed_bar(stream.tf, stream.next_open)
            if bar is not None:
                await self._closing(stream, bar, close_ms)
            stream.next_open = close_ms
        update_every = UPDATE_MS.get(stream.tf, DEFAULT_UPDATE_MS)
        wall = time.monotonic()
        if now - stream.last_update_ms < update_every or wall - stream.last_update_wall < MIN_WALL_GAP_S * (self.clock.speed > 0):
            return
        bar = stream.market.forming_bar(stream.tf, now)
        stream.last_update_ms, stream.last_update_wall = now, wall
        # a bar that is going to be skipped (gap fault) sends no forming updates either
        if bar is not None and not self.faults.pending(self.faults.skip_left, stream.name):
            await self._send(stream, bar_event(stream.market.symbol, stream.tf, bar, False, now), now)

    async def _closing(self, stream: Stream, bar: np.ndarray, close_ms: int) -> None:
        if self.faults.take(self.faults.skip_left, stream.name):
            log.info("fault_bar_skipped", stream=stream.name, ts=int(bar[0]))
            return
        if self.faults.take(self.faults.bad_ohlc_left, stream.name):
            bar = broken_ohlc(bar)
            log.info("fault_bad_ohlc_sent", stream=stream.name, ts=int(bar[0]))
        await self._send(stream, bar_event(stream.market.symbol, stream.tf, bar, True, close_ms), close_ms)
        sent_at = time.perf_counter()
        for listener in self.close_listeners:
            listener(stream.name, int(bar[0]), sent_at)

    async def _send(self, stream: Stream, event: dict, event_ms: int) -> None:
        if self.faults.stalled(stream.name):
            return
        frames = []
        kind = self.faults.take(self.faults.malformed_left, stream.name)
        if kind:
            frames.append(malformed_frame(kind, stream.market.symbol, stream.tf, event_ms))
        frames.append(json.dumps(event))
        await self._broadcast(stream.sockets, frames)

    async def _broadcast(self, sockets: set[web.WebSocketResponse], frames: list[str]) -> None:
        """Send `frames` to every socket; one that fails is unsubscribed, the others go on."""
        for ws in list(sockets):
            for text in frames:
                try:
                    await ws.send_str(text)
                    self.frames_sent += 1
                except Exception as e:  # a socket closing under us
                    log.info("ws_send_failed", error=repr(e))
                    self.unsubscribe(ws)
                    break


async def ws_handler(request: web.Request) -> web.WebSocketResponse:
    """`/stream/ws/{n}`: SUBSCRIBE / UNSUBSCRIBE / LIST_SUBSCRIPTIONS, acked like Binance."""
    pump: Pump = request.app[PUMP_KEY]
    ws = web.WebSocketResponse(autoping=True, timeout=CLOSE_TIMEOUT_S)
    await ws.prepare(request)
    pump.sockets.add(ws)
    log.info("ws_connected", path=request.path)
    try:
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                await _on_request(pump, ws, msg.data)
    finally:
        pump.unsubscribe(ws)
        pump.sockets.discard(ws)
        log.info("ws_closed", path=request.path)
    return ws


async def _on_request(pump: Pump, ws: web.WebSocketResponse, text: str) -> None:
    try:
        req = json.loads(text)
        method, params, rid = req["method"], req.get("params", []), req.get("id")
    except (ValueError, KeyError, TypeError) as e:
        await ws.send_json({"error": {"code": 3, "msg": f"Invalid JSON: {e}"}, "id": None})
        return
    if method == "LIST_SUBSCRIPTIONS":
        await ws.send_json(
            {"result": [n for table in (pump.streams, pump.quotes) for n, s in table.items() if ws in s.sockets], "id": rid}
        )
        return
    bad = [p for p in params if not isinstance(p, str) or pump.parse(p) is None]
    if method not in ("SUBSCRIBE", "UNSUBSCRIBE") or bad:
        await ws.send_json({"error": {"code": 2, "msg": f"Invalid request: invalid stream {bad}"}, "id": rid})
        return
    await ws.send_json({"result": None, "id": rid})  # the ack goes out before any data frame
    if method == "SUBSCRIBE":
        pump.subscribe(ws, params)
    else:
        pump.unsubscribe(ws, params)
    log.info("ws_" + method.lower(), streams=params)

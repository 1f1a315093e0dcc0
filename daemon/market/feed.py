"""The feed: closed, validated bars, exactly once and in order, into buffers, SQLite and on_bar.

Warm-up fills every ring from SQLite first and fetches over REST only what is missing. Live
bars come from the websocket (a bar is taken only on its closing update). Every stream
proves its continuity: after a reconnect, a stall (no closed bar for longer than its stall
timeout), a bad frame or a gap (a bar that is not last_ts + timeframe), the missing range
is fetched over REST before anything newer is emitted; until then the stream is degraded.

A stall of one stream is that stream's trouble: it is resubscribed alone (UNSUBSCRIBE +
SUBSCRIBE on the live connection) and the other streams on the connection never notice. Only
a sick connection, one on which no data frame at all arrived for half the shortest stall
timeout (healthy streams send forming updates every 2 s), is dropped and dialled again (every
stream then resyncs).
"""

from __future__ import annotations

import asyncio
import sqlite3
import statistics
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from daemon import events
from daemon import log as logging
from daemon.config import ExchangeConfig
from daemon.domain import Bar, BarError, timeframe_ms
from daemon.market.bars import Buffers
from daemon.market.exchange import ExchangeClient, ExchangeFailure, FatalError
from daemon.market.quotes import Quotes
from daemon.metrics import REGISTRY
from daemon.store import Store

log = logging.get("sigd.feed")
OnBar = Callable[[Bar], Awaitable[None]]
RESYNC = object()  # queue sentinel: wake the stream task to resync over REST
# Binance takes at most 5 messages a second on a connection (more: it disconnects); a resubscribe
# is two, so batches are this far apart (and streams stalling meanwhile join the next batch).
RESUBSCRIBE_SPACING_S = 0.5
RESUBSCRIBE_GATHER_S = 0.05  # streams whose bars close together stall together: one batch for them
MAX_UNSTORED = 100_000  # bars kept in memory while SQLite refuses them (older ones: REST has them)

DROPPED = REGISTRY.counter("sigd_feed_dropped_bars_total", "Bars or frames dropped as invalid, per stream")
BACKFILLED = REGISTRY.counter("sigd_feed_backfilled_bars_total", "Bars fetched over REST to restore continuity")
RECONNECTS = REGISTRY.counter("sigd_feed_reconnects_total", "Websocket reconnects")
STALLS = REGISTRY.counter("sigd_feed_stalls_total", "Streams silent beyond their stall timeout")
RESUBSCRIBES = REGISTRY.counter(
    "sigd_feed_resubscribes_total", "Stalled streams resubscribed alone on the live connection, per stream"
)
DEGRADED = REGISTRY.gauge("sigd_feed_degraded", "1 while a stream cannot prove continuity")
LATENCY = REGISTRY.histogram("sigd_bar_close_latency_ms", "Exchange closing update (event time) to bar in its ring")


@dataclass
class StreamState:
    """Continuity bookkeeping of one (symbol, timeframe) stream."""

    symbol: str
    timeframe: str
    last_ts: int | None = None
    last_wall: float | None = None
    degraded: bool = True
    needs_resync: bool = False
    reconnects: int = 0
    resubscribes: int = 0
    dropped: int = 0
    backfilled: int = 0
    stalls: int = 0
    gaps: int = 0
    from_store: int = 0
    heard: float = 0.0  # monotonic time of the last closing update from the websocket
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)
    # (close instant ms, latency ms) of the newest websocket closes: event time -> in the ring
    latencies_ms: deque = field(default_factory=lambda: deque(maxlen=1024))

    @property
    def name(self) -> str:
        """The stream's label in logs and metrics: "SYMBOL TF"."""
        return f"{self.symbol} {self.timeframe}"

    @property
    def step_ms(self) -> int:
        """Bar length in ms."""
        return timeframe_ms(self.timeframe)

    def set_degraded(self, value: bool) -> None:
        """Set the degraded flag and its gauge (and tell the bus when it changes)."""
        if value != self.degraded:
            events.publish(events.StreamHealth(self.name, value))
        self.degraded = value
        DEGRADED.set(1 if value else 0, stream=self.name)


def feed_streams(cfg: ExchangeConfig) -> list[tuple[str, str]]:
    """Every (symbol, timeframe) the config streams: each traded symbol's timeframes, then the
    reference stream once, shared by all of them."""
    streams = [(sym, tf) for sym in cfg.symbols for tf in cfg.timeframes]
    ref = (cfg.reference_symbol, cfg.reference_timeframe)
    return streams + ([ref] if ref not in streams else [])


class Feed:
    """Warm-up and live streaming of every configured stream (see module docstring)."""

    def __init__(
        self,
        client: ExchangeClient,
        store: Store,
        buffers: Buffers,
        cfg: ExchangeConfig,
        on_bar: OnBar | None = None,
        *,
        speed: float = 1.0,
        clock_ms: Callable[[], float] | None = None,
        quotes: bool = True,
    ) -> None:
        """`speed` is the replay speed of a local exchange (stall timeouts shrink with it);
        `clock_ms` is the clock the closing update's event time is compared to (latency);
        `quotes`: also stream best bid/ask (`self.quotes`; off, it never has a quote)."""
        self.client, self.store, self.buffers, self.cfg = client, store, buffers, cfg
        self.on_bar = on_bar
        self.speed = speed if speed > 0 else 1e6
        self.clock_ms = clock_ms or (lambda: time.time() * 1000)
        self.streams = {s: StreamState(*s) for s in feed_streams(cfg)}
        # Best bid/ask of the traded symbols, subscribed with the bars (the paper broker's touch).
        self.quotes = Quotes(client, cfg.symbols if quotes else (), clock_ms=self.clock_ms)
        self.socket_error: str | None = None
        self._last_drop = 0.0
        self._unstored: deque[Bar] = deque(maxlen=MAX_UNSTORED)  # bars SQLite refused, stored with the next
        self._to_resubscribe: dict[tuple[str, str], StreamState] = {}  # stalled, waiting for the next batch
        self._resubscribe_lock = asyncio.Lock()
        for sym, tf in self.streams:
            buffers.add(sym, tf, cfg.warmup_bars)

    # --- public API -----------------------------------------------------------------------

    async def run(self) -> None:
        """Warm up, then stream bars and quotes until cancelled."""
        self.client.set_listener(self)
        await self.warm_up()
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._socket_loop(), name="feed-socket")
            tg.create_task(self.quotes.run(), name="feed-quotes")
            for st in self.streams.values():
                tg.create_task(self._stream_loop(st), name=f"feed {st.name}")

    def status(self) -> dict[str, dict[str, Any]]:
        """`stream_status` keyed by the stream's label "SYMBOL TF" (JSON-ready)."""
        return {f"{sym} {tf}": row for (sym, tf), row in self.stream_status().items()}

    def stream_status(self) -> dict[tuple[str, str], dict[str, Any]]:
        """Per (symbol, timeframe): last bar ts and wall time, degraded flag and the continuity counters."""
        out: dict[tuple[str, str], dict[str, Any]] = {}
        for key, st in self.streams.items():
            lat = [ms for _, ms in st.latencies_ms]
            out[key] = {
                "symbol": st.symbol,
                "timeframe": st.timeframe,
                "last_bar_ts": st.last_ts,
                "last_bar_wall": st.last_wall,
                "degraded": st.degraded,
                "reconnects": st.reconnects,
                "resubscribes": st.resubscribes,
                "dropped_frames": st.dropped,
                "backfilled_bars": st.backfilled,
                "stalls": st.stalls,
                "gaps": st.gaps,
                "warmed_from_store": st.from_store,
                "latency_ms_p50": statistics.median(lat) if lat else None,
            }
        return out

    def newest_bar_age_s(self) -> float | None:
        """Wall seconds since the newest bar of any stream arrived (None before the first)."""
        walls = [st.last_wall for st in self.streams.values() if st.last_wall is not None]
        return time.time() - max(walls) if walls else None

    def stall_timeout_s(self, timeframe: str) -> float:
        """Silence after which a stream counts as stalled, in wall seconds."""
        return max(self.cfg.stall_floor_s, self.cfg.stall_factor * timeframe_ms(timeframe) / 1000 / self.speed)

    # --- BarListener (called synchronously from ccxt's message handler) ---------------------

    def closed_bar(self, bar: Bar, event_ms: int | None) -> None:
        """Queue a closing update for its stream's task."""
        st = self.streams.get((bar.symbol, bar.timeframe))
        if st is not None:
            st.heard = time.monotonic()
            st.queue.put_nowait((bar, event_ms))

    def bad_frame(self, symbol: str | None, timeframe: str | None, reason: str) -> None:
        """Count a frame that could not be parsed and resync its stream (every stream if unknown)."""
        st = self.streams.get((symbol, timeframe)) if symbol and timeframe else None
        if st is not None:
            self._drop(st, "malformed_frame", reason)
            return
        DROPPED.inc(stream="unknown", kind="malformed_frame")
        for other in self.streams.values():
            self._request_resync(other)

    # --- warm-up --------------------------------------------------------------------------

    async def warm_up(self) -> None:
        """Fill every ring with the newest warmup_bars closed bars: SQLite first, then REST.

        At most `warmup_concurrency` streams fetch at once (ccxt's limiter spaces the requests
        within the exchange's weight budget); a progress line is logged as each symbol is done.
        """
        gate = asyncio.Semaphore(self.cfg.warmup_concurrency)
        # One clock read for every stream (not a klines call per stream to find its forming
        # bar): bars that close meanwhile are backfilled when the stream goes live.
        now_ms = await self.client.server_time_ms()
        left = {sym: sum(1 for s, _ in self.streams if s == sym) for sym, _ in self.streams}
        started, done = time.monotonic(), [0]

        async def warm(st: StreamState) -> None:
            async with gate:
                await self._warm_stream(st, now_ms)
            left[st.symbol] -= 1
            if left[st.symbol] == 0:
                done[0] += 1
                log.info(
                    "symbol_warmed_up",
                    symbol=st.symbol,
                    done=done[0],
                    of=len(left),
                    elapsed_s=round(time.monotonic() - started, 3),
                )

        # gather, not a TaskGroup: the first failure is raised as itself (a FatalError or
        # ConfigError the caller handles), not wrapped in an ExceptionGroup.
        tasks = [asyncio.create_task(warm(st), name=f"warm {st.name}") for st in self.streams.values()]
        try:
            await asyncio.gather(*tasks)
        except BaseException:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise

    async def _warm_stream(self, st: StreamState, now_ms: int) -> None:
        step, n = st.step_ms, self.cfg.warmup_bars
        forming = now_ms - now_ms % step  # the bar forming at the exchange's `now_ms`
        start = forming - n * step
        stored = [b for b in self.store.iter_bars(st.symbol, st.timeframe, start, forming) if self._sound(st, b)]
        fetched: list[Bar] = []
        cursor = start
        for b in stored + [None]:  # fetch each hole between stored bars, then the tail
            if b is None or b.ts > cursor:
                until = None if b is None else b.ts
                got = await self.client.fetch_bars(st.symbol, st.timeframe, cursor, until)
                fetched.extend(x for x in got if x.ts >= start and self._sound(st, x))
            if b is not None:
                cursor = b.ts + step
        bars = sorted({b.ts: b for b in stored + fetched}.values(), key=lambda b: b.ts)
        ring = self.buffers.ring(st.symbol, st.timeframe)
        ring.clear()
        ring.extend(bars)
        self.store.add_bars(fetched)
        st.from_store, st.backfilled = len(stored), st.backfilled + len(fetched)
        BACKFILLED.inc(len(fetched), stream=st.name)
        st.last_ts = bars[-1].ts if bars else None
        st.last_wall = time.time()
        st.set_degraded(False)
        log.info(
            "stream_warmed_up", stream=st.name, bars=len(bars), from_store=len(stored), from_rest=len(fetched), last_ts=st.last_ts
        )

    def _sound(self, st: StreamState, bar: Bar) -> bool:
        try:
            bar.validate()
            return True
        except BarError as exc:
            self._drop(st, "invalid_bar", str(exc))
            return False

    # --- live -----------------------------------------------------------------------------

    async def _socket_loop(self) -> None:
        """Keep the websocket subscription alive; every connection loss means a resync."""
        streams = list(self.streams)

        def lost(reason: str, attempt: int) -> None:
            log.warning("feed_reconnect", reason=reason, attempt=attempt)
            for st in self.streams.values():
                st.reconnects += 1
                RECONNECTS.inc(stream=st.name)
                self._request_resync(st)

        try:
            await self.client.keep_watching(lambda: self.client.watch(streams), lost)
        except FatalError as err:
            self.socket_error = str(err)
            log.error("feed_socket_failed", error=str(err), streams=len(streams))
            raise

    async def _stream_loop(self, st: StreamState) -> None:
        """Consume one stream's closing updates; detect stalls, gaps and bad bars."""
        st.heard = time.monotonic()
        while True:
            if st.needs_resync and not await self._resync(st):
                await asyncio.sleep(self.client.backoff_s(1))
            # Silence counts from the last closing update, not from resync wake-ups.
            wait_s = st.heard + self.stall_timeout_s(st.timeframe) - time.monotonic()
            try:
                # asyncio.timeout, not wait_for: in 3.11 wait_for can swallow a cancellation
                # that lands as the queue yields an item, and the feed would never stop.
                async with asyncio.timeout(max(wait_s, 0.0)):
                    item = await st.queue.get()
            except TimeoutError:
                st.heard = time.monotonic()
                await self._on_stall(st)
                continue
            if item is not RESYNC:
                await self._ingest(st, *item)

    async def _on_stall(self, st: StreamState) -> None:
        st.stalls += 1
        STALLS.inc(stream=st.name)
        log.warning("stream_stalled", stream=st.name, silent_s=self.stall_timeout_s(st.timeframe))
        st.set_degraded(True)
        st.needs_resync = True
        if not self._connection_sick() and await self._resubscribe(st):
            return
        # One reconnect serves every stream: skip it when another stream just did one.
        if time.monotonic() - self._last_drop > self.cfg.stall_floor_s:
            self._last_drop = time.monotonic()
            await self.client.drop_connection(f"{st.name} stalled")

    async def _resubscribe(self, st: StreamState) -> bool:
        """Resubscribe `st` with every stream that stalled while the previous batch went out;
        False when it could not be sent (only a reconnect can help then)."""
        self._to_resubscribe[(st.symbol, st.timeframe)] = st
        async with self._resubscribe_lock:
            if (st.symbol, st.timeframe) not in self._to_resubscribe:
                return True  # it went out with a batch sent while this one waited
            await asyncio.sleep(RESUBSCRIBE_GATHER_S)
            batch, self._to_resubscribe = self._to_resubscribe, {}
            ok = await self.client.resubscribe(list(batch))
            if ok:
                for each in batch.values():
                    each.resubscribes += 1
                    RESUBSCRIBES.inc(stream=each.name)
                log.warning("stream_resubscribed", streams=[each.name for each in batch.values()])
            await asyncio.sleep(RESUBSCRIBE_SPACING_S)
            return ok

    def _connection_sick(self) -> bool:
        """No data frame at all on the kline connection for half the shortest stall timeout (or
        no connection): the connection, not one stream, is what is silent."""
        age = self.client.kline_frame_age_s()
        shortest = min(self.stall_timeout_s(tf) for _, tf in self.streams)
        return age is None or age >= shortest / 2

    async def _ingest(self, st: StreamState, bar: Bar, event_ms: int | None) -> None:
        if not self._sound(st, bar):
            return  # dropped, counted, resync requested
        if st.last_ts is not None and bar.ts <= st.last_ts:
            log.debug("bar_duplicate", stream=st.name, ts=bar.ts)  # already backfilled
            return
        if st.last_ts is not None and bar.ts != st.last_ts + st.step_ms:
            st.gaps += 1
            st.set_degraded(True)
            log.warning("stream_gap", stream=st.name, last_ts=st.last_ts, ts=bar.ts)
            if not await self._backfill(st, bar.ts):
                self._request_resync(st)  # the hole is not closed: this bar must wait
                return
        await self._emit(st, bar, event_ms)
        st.set_degraded(st.needs_resync)

    def _request_resync(self, st: StreamState) -> None:
        st.set_degraded(True)
        st.needs_resync = True
        st.queue.put_nowait(RESYNC)

    async def _resync(self, st: StreamState) -> bool:
        """Fetch everything after the last bar up to the forming one; True once continuous."""
        ok = await self._backfill(st, None)
        if ok:
            st.needs_resync = False
            st.set_degraded(False)
        return ok

    async def _backfill(self, st: StreamState, until_ms: int | None) -> bool:
        """Emit the closed bars from last_ts + step to until_ms (or the present) from REST.

        REST is the exchange's own record: a bar it does not have either (a real outage in
        its history) is logged as a hole and not waited for. False when REST failed or sent
        an invalid bar (a resync is then requested).
        """
        if st.last_ts is None:
            return True  # nothing to be continuous with (warm-up found no history at all)
        since = st.last_ts + st.step_ms
        try:
            bars = await self.client.fetch_bars(st.symbol, st.timeframe, since, until_ms)
        except ExchangeFailure as err:
            log.warning("backfill_failed", stream=st.name, since=since, until=until_ms, error=str(err))
            return False
        for bar in bars:
            if bar.ts <= st.last_ts:
                continue
            if not self._sound(st, bar):
                return False
            if bar.ts != st.last_ts + st.step_ms:
                log.warning("exchange_hole", stream=st.name, expected=st.last_ts + st.step_ms, ts=bar.ts)
            await self._emit(st, bar, None)
            st.backfilled += 1
            BACKFILLED.inc(stream=st.name)
        if bars:
            log.info("stream_backfilled", stream=st.name, bars=len(bars), last_ts=st.last_ts)
        return True

    async def _emit(self, st: StreamState, bar: Bar, event_ms: int | None) -> None:
        """Buffer first, then SQLite, then the consumer."""
        self.buffers.append(bar)
        if event_ms:
            latency = self.clock_ms() - event_ms
            st.latencies_ms.append((event_ms, latency))
            LATENCY.observe(latency, stream=st.name)
        self._store(st, bar)
        events.publish(events.BarClosed.of(bar))
        st.last_ts, st.last_wall = bar.ts, time.time()
        log.debug("bar_closed", stream=st.name, ts=bar.ts, close=bar.close)
        if self.on_bar is not None:
            try:
                await self.on_bar(bar)
            except Exception:
                log.exception("on_bar_failed", stream=st.name, ts=bar.ts)

    def _store(self, st: StreamState, bar: Bar) -> None:
        """Write the bar (and any SQLite refused before) to SQLite. A refusal (a full disk) does not
        stop the feed: the store counted it (health turns red), and the bar is kept to be written
        with the next one; the decision path goes on with the bar in its ring."""
        self._unstored.append(bar)
        try:
            self.store.add_bars(self._unstored)
        except sqlite3.Error as exc:
            log.error(
                "bar_store_failed", stream=st.name, ts=bar.ts, unstored=len(self._unstored), error=f"{type(exc).__name__}: {exc}"
            )
            return
        if len(self._unstored) > 1:
            log.info("bars_stored_after_failure", bars=len(self._unstored))
        self._unstored.clear()

    def _drop(self, st: StreamState, kind: str, reason: str) -> None:
        st.dropped += 1
        DROPPED.inc(stream=st.name, kind=kind)
        log.warning("bar_dropped", stream=st.name, kind=kind, reason=reason)
        self._request_resync(st)

"""Builders for feed tests: a local exchange on an ephemeral port, a real ccxt client, a feed,
and the recorded bars the buffers must equal."""

from __future__ import annotations

import asyncio
import csv
import gzip
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import numpy as np

from daemon.config import ExchangeConfig
from daemon.domain import Bar, timeframe_ms
from daemon.localexchange import LocalExchange, bundled_tape_dir
from daemon.market.bars import Buffers, Ring
from daemon.market.exchange import ExchangeClient, make_client
from daemon.market.feed import Feed
from daemon.store import Store

KEY, SECRET = "feed-test-key", "feed-test-secret"
DAY_MS = 86_400_000
# 2025-08-10T00:00:00Z: inside the bundled 1m tape, with 600 bars of every timeframe before it.
DAY = 1_754_784_000_000


def feed_config(**kw: object) -> ExchangeConfig:
    """Defaults for tests: fast backoff, short stall timeouts, no client-side throttle."""
    base = dict(
        enable_rate_limit=False,
        stall_factor=1.5,
        stall_floor_s=1.0,
        backoff_base_s=0.05,
        backoff_max_s=0.5,
        request_timeout_s=2.0,
        max_retries=6,
    )
    base.update(kw)
    return ExchangeConfig(**base)  # type: ignore[arg-type]


# The bundled May 2021 tape: BTC (reference), ETH, XRP, ADA, DOGE, LTC against USDT.
TAPE_2021 = bundled_tape_dir("2021-05")
SYMBOLS_2021 = ("ETH/USDT", "XRP/USDT", "ADA/USDT", "DOGE/USDT", "LTC/USDT")
DAY_2021 = 1_621_296_000_000  # 2021-05-18T00:00:00Z: 1440 1m bars of history before it


@asynccontextmanager
async def local_exchange(start_ms: int, speed: float, tape: Path | None = None, **kw: object) -> AsyncIterator[LocalExchange]:
    """A running local exchange on 127.0.0.1, an ephemeral port (the bundled 2025 tape by default)."""
    lx = LocalExchange(tape, start_ms=start_ms, speed=speed, api_key=KEY, api_secret=SECRET, **kw)  # type: ignore[arg-type]
    await lx.start()
    try:
        yield lx
    finally:
        await lx.stop()


@asynccontextmanager
async def exchange_client(
    lx: LocalExchange, cfg: ExchangeConfig, *, key: str = KEY, secret: str = SECRET
) -> AsyncIterator[ExchangeClient]:
    """The real ccxt client pointed at `lx`."""
    client = make_client(cfg, rest_url=lx.rest_url, ws_url=lx.ws_url, api_key=key, api_secret=secret)
    try:
        yield client
    finally:
        await client.close()


@dataclass
class Recorder:
    """on_bar that keeps every bar it is given, per stream."""

    bars: dict[tuple[str, str], list[Bar]] = field(default_factory=dict)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    order: list[Bar] = field(default_factory=list)  # every stream's bars in the order they came

    async def __call__(self, bar: Bar) -> None:
        self.bars.setdefault((bar.symbol, bar.timeframe), []).append(bar)
        self.order.append(bar)
        self.wake.set()

    async def until(self, cond: Callable[[], bool], timeout: float) -> None:
        """Wait until `cond()` holds (checked after every bar and every 50 ms)."""

        async def loop() -> None:
            while not cond():
                self.wake.clear()
                try:
                    await asyncio.wait_for(self.wake.wait(), 0.05)
                except TimeoutError:
                    pass

        await asyncio.wait_for(loop(), timeout)


@asynccontextmanager
async def running_feed(
    client: ExchangeClient, store: Store, cfg: ExchangeConfig, speed: float, recorder: Recorder | None = None
) -> AsyncIterator[Feed]:
    """A started feed (warmed up when entered); cancelled on exit."""
    await client.start()
    feed = Feed(client, store, Buffers(), cfg, recorder, speed=speed)
    task = asyncio.create_task(feed.run())
    try:
        while any(st.last_ts is None for st in feed.streams.values()):
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        yield feed
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@cache
def tape(symbol: str, timeframe: str, directory: Path | None = None) -> dict[int, tuple[float, ...]]:
    """A bundled tape of one stream (the 2025 one by default): ts -> (ts, o, h, l, c, v)."""
    path = Path(directory or bundled_tape_dir()) / f"{symbol.replace('/', '_')}-{timeframe}.csv.gz"
    with gzip.open(path, "rt") as fh:
        rows = csv.reader(fh)
        next(rows)
        return {int(r[0]): (float(r[0]), *map(float, r[1:])) for r in rows}


def expected_row(symbol: str, timeframe: str, ts: int, directory: Path | None = None) -> np.ndarray:
    """What the exchange recorded for a bar; 1h/1d are aggregated from the 1m tape where it
    covers them (as the replay does), 1s is checked by assert_seconds_match_minutes."""
    rec = tape(symbol, timeframe, directory)
    if ts in rec:
        return np.array(rec[ts])
    m1 = tape(symbol, "1m", directory)
    rows = np.array([m1[t] for t in range(ts, ts + timeframe_ms(timeframe), 60_000) if t in m1])
    assert len(rows), f"no recorded bar for {symbol} {timeframe} @{ts}"
    return np.array([ts, rows[0, 1], rows[:, 2].max(), rows[:, 3].min(), rows[-1, 4], rows[:, 5].sum()])


def assert_seconds_match_minutes(symbol: str, window: np.ndarray, directory: Path | None = None) -> None:
    """Every whole minute of 1s bars aggregates to the recorded 1m bar."""
    m1 = tape(symbol, "1m", directory)
    minutes = window[:, 0] // 60_000 * 60_000
    whole = [m for m in np.unique(minutes) if (minutes == m).sum() == 60]
    assert whole, "not one whole minute of 1s bars"
    for m in whole:
        s = window[minutes == m]
        got = [s[0, 1], s[:, 2].max(), s[:, 3].min(), s[-1, 4], s[:, 5].sum()]
        np.testing.assert_allclose(got, m1[int(m)][1:], rtol=1e-9, err_msg=f"{symbol} 1s minute {int(m)}")


def assert_ring_is_the_record(ring: Ring, n: int | None = None, directory: Path | None = None) -> None:
    """The ring holds consecutive bars equal to the recorded ones: none missing, duplicated or stale."""
    w = ring.window(n)
    assert len(w), f"{ring.symbol} {ring.timeframe}: empty ring"
    assert np.all(np.diff(w[:, 0]) == ring.step_ms), f"{ring.symbol} {ring.timeframe}: not consecutive"
    if ring.timeframe == "1s":
        assert_seconds_match_minutes(ring.symbol, w, directory)
        return
    expected = np.array([expected_row(ring.symbol, ring.timeframe, int(t), directory) for t in w[:, 0]])
    np.testing.assert_allclose(w, expected, rtol=1e-9, err_msg=f"{ring.symbol} {ring.timeframe}")


def assert_consecutive(bars: list[Bar]) -> None:
    """Bars handed to on_bar: strictly consecutive, each exactly once."""
    if not bars:
        return
    ts = [b.ts for b in bars]
    step = timeframe_ms(bars[0].timeframe)
    assert all(b - a == step for a, b in zip(ts, ts[1:])), f"{bars[0].symbol} {bars[0].timeframe}: {ts}"

"""A stall of one stream is that stream's trouble: it is resubscribed alone on the live
connection, the others never reconnect; only a connection silent as a whole is dropped.
Real ccxt against the local exchange, whose fault injection stalls one stream."""

from __future__ import annotations

import asyncio

import numpy as np

from daemon.store import Store
from tests.exchange_kit import (
    DAY,
    Recorder,
    assert_consecutive,
    assert_ring_is_the_record,
    exchange_client,
    expected_row,
    feed_config,
    local_exchange,
    running_feed,
)

STREAMS = [("ETH/USDT", "1m"), ("ETH/USDT", "1h"), ("BTC/USDT", "1m")]
WIRE = {("ETH/USDT", "1m"): "ethusdt@kline_1m", ("ETH/USDT", "1h"): "ethusdt@kline_1h", ("BTC/USDT", "1m"): "btcusdt@kline_1m"}


def _assert_store_is_the_tape(store: Store, symbol: str, timeframe: str, since_ms: int) -> int:
    """Every stored bar of the stream from `since_ms` on equals the tape, consecutively; how many."""
    bars = list(store.iter_bars(symbol, timeframe, since_ms))
    assert bars, f"{symbol} {timeframe}: nothing stored"
    got = np.array([[b.ts, b.open, b.high, b.low, b.close, b.volume] for b in bars])
    assert np.all(np.diff(got[:, 0]) == got[1, 0] - got[0, 0]) if len(got) > 1 else True
    expected = np.array([expected_row(symbol, timeframe, int(t)) for t in got[:, 0]])
    np.testing.assert_allclose(got, expected, rtol=1e-9, err_msg=f"{symbol} {timeframe}")
    return len(bars)


async def test_a_one_stream_stall_resubscribes_only_that_stream(tmp_path) -> None:
    cfg, rec, speed = feed_config(timeframes=("1m", "1h")), Recorder(), 60.0
    start = DAY + 3_600_000
    store = Store(tmp_path / "s.sqlite")
    async with local_exchange(start, speed=speed) as lx, exchange_client(lx, cfg) as client:
        async with running_feed(client, store, cfg, speed, rec) as feed:
            assert sorted(feed.streams) == sorted(STREAMS)
            await rec.until(lambda: all(WIRE[k] in lx.pump.subscribes for k in STREAMS), 10)
            connected = dict(lx.pump.subscribes)
            assert all(connected.get(WIRE[k]) == 1 for k in STREAMS), connected
            # ETH 1m is stuck on the exchange's side until it is subscribed again ...
            lx.faults.stall(WIRE[("ETH/USDT", "1m")], until_resubscribed=True)
            await rec.until(lambda: feed.status()["ETH/USDT 1m"]["resubscribes"] >= 1, 10)
            # ... and BTC 1m (the stream ccxt's pending watch waits on) is silent for 4 s whatever the client does.
            lx.faults.stall(WIRE[("BTC/USDT", "1m")], seconds=4.0)
            await rec.until(lambda: feed.status()["BTC/USDT 1m"]["resubscribes"] >= 1, 10)
            await rec.until(lambda: lx.now_ms() > start + 12 * 60_000, 40)
            await asyncio.sleep(0.5)
            status = feed.status()
            for sym, tf in STREAMS:
                s = status[f"{sym} {tf}"]
                assert s["reconnects"] == 0, (sym, tf, s)  # nothing dropped the connection
                assert_consecutive(rec.bars.get((sym, tf), []))
                assert_ring_is_the_record(feed.buffers.ring(sym, tf))
            for key in [("ETH/USDT", "1m"), ("BTC/USDT", "1m")]:
                s = status[f"{key[0]} {key[1]}"]
                assert s["stalls"] >= 1 and s["resubscribes"] >= 1 and s["backfilled_bars"] > 0, s
                assert not s["degraded"], s
            assert status["ETH/USDT 1h"]["resubscribes"] == 0 and status["ETH/USDT 1h"]["stalls"] == 0
            # On the exchange: one connection all along; the stalled streams were subscribed again
            # on it, the healthy one never.
            assert len(lx.pump.sockets) == 1
            assert lx.pump.subscribes[WIRE[("ETH/USDT", "1h")]] == 1
            assert lx.pump.subscribes[WIRE[("ETH/USDT", "1m")]] >= 2
            assert lx.pump.subscribes[WIRE[("BTC/USDT", "1m")]] >= 2
            # Bars closed during the stalls came over REST: SQLite holds the tape, none missing.
            for sym, tf in [("ETH/USDT", "1m"), ("BTC/USDT", "1m")]:
                n = _assert_store_is_the_tape(store, sym, tf, start - 10 * 60_000)
                assert n >= 21, (sym, tf, n)


async def test_a_silent_connection_is_dropped_and_every_stream_resyncs(tmp_path) -> None:
    cfg, rec, speed = feed_config(timeframes=("1m", "1h")), Recorder(), 60.0
    start = DAY + 3_600_000
    store = Store(tmp_path / "s.sqlite")
    async with local_exchange(start, speed=speed) as lx, exchange_client(lx, cfg) as client:
        async with running_feed(client, store, cfg, speed, rec) as feed:
            lx.faults.stall(None, seconds=4.0)  # every stream and the quotes: no frame at all
            await rec.until(lambda: all(s["reconnects"] >= 1 for s in feed.status().values()), 15)
            await rec.until(lambda: lx.now_ms() > start + 8 * 60_000, 40)
            await asyncio.sleep(0.5)
            for sym, tf in STREAMS:
                assert_consecutive(rec.bars.get((sym, tf), []))
                assert_ring_is_the_record(feed.buffers.ring(sym, tf))
            for sym, tf in [("ETH/USDT", "1m"), ("BTC/USDT", "1m")]:
                _assert_store_is_the_tape(store, sym, tf, start - 10 * 60_000)


async def test_streams_stalling_together_are_resubscribed_in_one_batch(tmp_path) -> None:
    cfg, rec, speed = feed_config(timeframes=("1m", "1h")), Recorder(), 60.0
    start = DAY + 3_600_000
    async with local_exchange(start, speed=speed) as lx, exchange_client(lx, cfg) as client:
        async with running_feed(client, Store(tmp_path / "s.sqlite"), cfg, speed, rec) as feed:
            await rec.until(lambda: all(WIRE[k] in lx.pump.subscribes for k in STREAMS), 10)
            sent = lx.pump.frames_sent
            requests: list[list[str]] = []
            subscribe = lx.pump.subscribe
            lx.pump.subscribe = lambda ws, names: (requests.append(list(names)), subscribe(ws, names))[1]  # type: ignore[method-assign]
            for key in [("ETH/USDT", "1m"), ("BTC/USDT", "1m")]:
                lx.faults.stall(WIRE[key], until_resubscribed=True)
            await rec.until(lambda: not lx.faults.stalls, 10)
            await rec.until(lambda: lx.now_ms() > start + 6 * 60_000, 30)
            # Binance takes 5 messages a second per connection: the two streams, whose bars close
            # together and so stall together, went out in one UNSUBSCRIBE + SUBSCRIBE.
            assert sorted(map(sorted, requests)) == [sorted([WIRE[("ETH/USDT", "1m")], WIRE[("BTC/USDT", "1m")]])], requests
            assert all(s["reconnects"] == 0 for s in feed.status().values())
            assert lx.pump.frames_sent > sent

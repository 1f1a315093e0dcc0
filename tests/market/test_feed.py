"""The feed through the real ccxt client against the local exchange: warm-up, live streams,
continuity under faults, restart from SQLite."""

from __future__ import annotations

import asyncio

from daemon.metrics import REGISTRY
from daemon.store import Store
from tests.exchange_kit import (
    DAY,
    DAY_MS,
    Recorder,
    assert_consecutive,
    assert_ring_is_the_record,
    exchange_client,
    feed_config,
    local_exchange,
    running_feed,
)

STREAMS = [("ETH/USDT", "1s"), ("ETH/USDT", "1m"), ("ETH/USDT", "1h"), ("ETH/USDT", "1d"), ("BTC/USDT", "1m")]


async def test_warm_up_fills_every_buffer_with_the_recorded_bars(tmp_path) -> None:
    cfg = feed_config()
    async with local_exchange(DAY - 90_000, speed=1.0) as lx, exchange_client(lx, cfg) as client:
        async with running_feed(client, Store(tmp_path / "s.sqlite"), cfg, 1.0) as feed:
            assert sorted(feed.streams) == sorted(STREAMS)
            for key in STREAMS:
                ring = feed.buffers.ring(*key)
                assert len(ring) == 600, key
                assert_ring_is_the_record(ring)
                # the newest bar is the last closed one, never the forming one
                assert ring.last_ts + ring.step_ms <= lx.now_ms() < ring.last_ts + 3 * ring.step_ms, key
            assert feed.store.count("bars") == 5 * 600


async def test_streamed_bars_equal_the_tape_for_every_timeframe(tmp_path) -> None:
    cfg, rec, speed = feed_config(), Recorder(), 60.0
    async with local_exchange(DAY - 90_000, speed=speed) as lx, exchange_client(lx, cfg) as client:
        async with running_feed(client, Store(tmp_path / "s.sqlite"), cfg, speed, rec) as feed:
            # the day closes at DAY: the 1d and 1h streams emit their bar, then 20 s more
            await rec.until(lambda: lx.now_ms() > DAY + 20_000 and len(rec.bars.get(("ETH/USDT", "1d"), [])) >= 1, 30)
            for key in STREAMS:
                bars = rec.bars[key]
                assert_consecutive(bars)
                assert_ring_is_the_record(feed.buffers.ring(*key))
                assert not feed.status()[f"{key[0]} {key[1]}"]["degraded"]
            assert rec.bars[("ETH/USDT", "1d")][-1].ts == DAY - DAY_MS
            assert rec.bars[("ETH/USDT", "1h")][-1].ts == DAY - 3_600_000
            assert len(rec.bars[("ETH/USDT", "1s")]) >= 60
            # the closes came over the websocket (a latency was measured for them)
            assert feed.status()["ETH/USDT 1s"]["latency_ms_p50"] is not None


async def test_faults_leave_the_buffers_equal_to_the_tape(tmp_path) -> None:
    cfg, rec, speed = feed_config(), Recorder(), 60.0
    start = DAY + 3_600_000
    async with local_exchange(start, speed=speed) as lx, exchange_client(lx, cfg) as client:
        async with running_feed(client, Store(tmp_path / "s.sqlite"), cfg, speed, rec) as feed:
            f = lx.faults
            f.skip_bars(3, "ethusdt@kline_1s")  # a gap, alone first so that it is seen as one
            await rec.until(lambda: feed.status()["ETH/USDT 1s"]["gaps"] >= 1, 10)
            f.skip_bars(1, "btcusdt@kline_1m")
            f.bad_ohlc(1, "ethusdt@kline_1s")
            f.malformed(2, "ethusdt@kline_1s", kind="json")
            f.malformed(1, "btcusdt@kline_1m", kind="shape")
            f.malformed(1, None, kind="text")
            f.stall("ethusdt@kline_1m", seconds=3.0)
            for _ in range(3):  # the socket dropped repeatedly
                await asyncio.sleep(0.7)
                f.drop_websockets()
            f.rest_error(429, count=3, retry_after=1)  # a rate-limit storm during resyncs
            f.drop_websockets()
            await rec.until(lambda: lx.now_ms() > start + 5 * 60_000, 40)
            await asyncio.sleep(0.5)
            status = feed.status()
            for key in STREAMS:
                assert_consecutive(rec.bars.get(key, []))
                assert_ring_is_the_record(feed.buffers.ring(*key))
            s1, m1 = status["ETH/USDT 1s"], status["ETH/USDT 1m"]
            assert s1["reconnects"] >= 3 and s1["gaps"] >= 1 and s1["dropped_frames"] >= 3
            assert m1["stalls"] >= 1
            assert REGISTRY.counter("sigd_bad_frames_total", "").get(stream="unknown") >= 1
            assert REGISTRY.counter("sigd_exchange_errors_total", "").get(op="fetch_ohlcv", kind="RateLimited") >= 3


async def test_restart_warms_up_from_sqlite_and_backfills_only_what_it_missed(tmp_path) -> None:
    cfg, speed = feed_config(), 60.0
    async with local_exchange(DAY + 10 * 60_000, speed=speed) as lx:
        store = Store(tmp_path / "s.sqlite")
        async with exchange_client(lx, cfg) as client:
            async with running_feed(client, store, cfg, speed, rec := Recorder()):
                await rec.until(lambda: len(rec.bars.get(("ETH/USDT", "1m"), [])) >= 2, 20)
        await asyncio.sleep(1.0)  # the daemon is down for about a replay minute
        async with exchange_client(lx, cfg) as client:
            async with running_feed(client, store, cfg, speed) as feed:
                status = feed.status()
                for key in STREAMS:
                    s = status[f"{key[0]} {key[1]}"]
                    assert s["warmed_from_store"] + s["backfilled_bars"] >= 600, key
                    assert_ring_is_the_record(feed.buffers.ring(*key))
                assert status["ETH/USDT 1d"]["backfilled_bars"] == 0
                assert status["ETH/USDT 1d"]["warmed_from_store"] == 600
                assert 0 < status["ETH/USDT 1s"]["backfilled_bars"] < 300
                assert 0 < status["ETH/USDT 1m"]["backfilled_bars"] <= 5

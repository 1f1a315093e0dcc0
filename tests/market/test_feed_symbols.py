"""Many symbols through one feed: real ccxt against the local exchange serving the bundled
May 2021 tape (BTC reference + five traded symbols)."""

from __future__ import annotations

import numpy as np
import pytest
from structlog.testing import capture_logs

from daemon.config import ConfigError
from daemon.market.feed import feed_streams
from daemon.store import Store
from tests.exchange_kit import (
    DAY_2021,
    SYMBOLS_2021,
    TAPE_2021,
    Recorder,
    assert_consecutive,
    assert_ring_is_the_record,
    exchange_client,
    expected_row,
    feed_config,
    local_exchange,
    running_feed,
)

TIMEFRAMES = ("1s", "1m", "1h", "1d")


def test_streams_are_every_symbol_times_every_timeframe_plus_the_reference_once() -> None:
    streams = feed_streams(feed_config(symbols=SYMBOLS_2021))
    assert len(streams) == len(SYMBOLS_2021) * len(TIMEFRAMES) + 1 == len(set(streams))
    assert streams[-1] == ("BTC/USDT", "1m") and sum(s == "BTC/USDT" for s, _ in streams) == 1


async def test_warm_up_of_five_symbols_within_the_concurrency_bound_on_one_socket(tmp_path) -> None:
    cfg = feed_config(symbols=SYMBOLS_2021, warmup_bars=120, warmup_concurrency=3)
    async with local_exchange(DAY_2021 + 45_000, 1.0, TAPE_2021) as lx, exchange_client(lx, cfg) as client:
        lx.faults.rest_delay(0.05, path="klines")  # a slow exchange: calls overlap when allowed to
        with capture_logs() as logs:
            async with running_feed(client, Store(tmp_path / "s.sqlite"), cfg, 1.0) as feed:
                assert lx.rest_in_flight_max == 3  # never more than the bound, and it was used
                lx.faults.clear()
                assert len(feed.streams) == 21
                for (sym, tf), ring in ((k, feed.buffers.ring(*k)) for k in feed.streams):
                    # the four alts' 1d history starts 2021-04-02 and misses two outage days
                    assert len(ring) == (120 if tf != "1d" or sym in ("ETH/USDT", "BTC/USDT") else 44), (sym, tf)
                    assert_ring_is_the_record(ring, 20 if tf == "1d" else None, directory=TAPE_2021)
                subscribed = await lx.wait_subscribed(26)  # 21 kline streams and 5 bookTickers
                assert len(subscribed) == 26 and len(lx.pump.sockets) == 1  # all on one connection
                assert set(feed.stream_status()) == set(feed.streams)
        done = [e for e in logs if e["event"] == "symbol_warmed_up"]
        assert sorted(e["symbol"] for e in done) == sorted((*SYMBOLS_2021, "BTC/USDT"))
        assert [e["done"] for e in done] == list(range(1, 7)) and {e["of"] for e in done} == {6}


async def test_one_symbol_gapped_and_another_stalled_while_the_others_keep_delivering(tmp_path) -> None:
    cfg, rec, speed = (
        feed_config(symbols=SYMBOLS_2021, timeframes=("1m", "1h"), warmup_bars=30, stall_factor=3.0),
        Recorder(),
        60.0,
    )
    store = Store(tmp_path / "s.sqlite")
    async with local_exchange(DAY_2021 + 30_000, speed, TAPE_2021) as lx, exchange_client(lx, cfg) as client:
        async with running_feed(client, store, cfg, speed, rec) as feed:
            now = lx.now_ms()
            first = now - now % 60_000  # the first bar to close live
            lx.faults.skip_bars(1, "xrpusdt@kline_1m")  # a gap (2 s silent < 3 s stall timeout): REST fills it
            lx.faults.stall("adausdt@kline_1m", seconds=5)  # silent past the stall timeout: resync
            end = first + 8 * 60_000
            await rec.until(lambda: all(rec.bars.get((s, "1m")) and rec.bars[(s, "1m")][-1].ts >= end for s in SYMBOLS_2021), 30)
            status = feed.status()
            assert status["XRP/USDT 1m"]["gaps"] >= 1 and status["XRP/USDT 1m"]["backfilled_bars"] >= 1
            assert status["ADA/USDT 1m"]["stalls"] >= 1
            assert all(status[f"{s} 1m"]["gaps"] == 0 for s in ("ETH/USDT", "DOGE/USDT", "LTC/USDT"))
            for sym in SYMBOLS_2021:
                bars = [b for b in rec.bars[(sym, "1m")] if b.ts >= first]
                assert bars[0].ts == first, sym
                assert_consecutive(bars)
                assert not status[f"{sym} 1m"]["degraded"], sym
            # the gap held back only XRP: ETH's bar of the skipped minute came before XRP's
            at = {(b.symbol, b.ts): i for i, b in enumerate(rec.order) if b.timeframe == "1m"}
            gap_ts = [b.ts for b in rec.bars[("XRP/USDT", "1m")] if b.ts >= first][:1]
            assert all(at[("ETH/USDT", t)] < at[("XRP/USDT", t)] for t in gap_ts)
        # what SQLite holds for every symbol is the tape, bar for bar
        for sym in (*SYMBOLS_2021, "BTC/USDT"):
            rows = np.array(
                [[b.ts, b.open, b.high, b.low, b.close, b.volume] for b in store.iter_bars(sym, "1m", first, end + 60_000)]
            )
            assert len(rows) == (end - first) // 60_000 + 1, sym
            expected = np.array([expected_row(sym, "1m", int(t), TAPE_2021) for t in rows[:, 0]])
            np.testing.assert_allclose(rows, expected, rtol=1e-9, err_msg=sym)


async def test_a_symbol_the_exchange_does_not_list_is_a_config_error_naming_its_key() -> None:
    cfg = feed_config(symbols=("ETH/USDT", "SOL/USDT"))
    async with local_exchange(DAY_2021, 1.0, TAPE_2021) as lx, exchange_client(lx, cfg) as client:
        with pytest.raises(ConfigError, match=r"exchange\.symbols\[1\]: 'SOL/USDT' is not a market"):
            await client.start()


async def test_more_kline_streams_than_binance_takes_on_one_connection_is_a_config_error() -> None:
    symbols = tuple(f"S{i:03d}/USDT" for i in range(256))  # 256 x 4 + 1 = 1025 streams
    cfg = feed_config(endpoint="testnet", symbols=symbols)
    async with local_exchange(DAY_2021, 1.0, TAPE_2021) as lx, exchange_client(lx, cfg) as client:
        with pytest.raises(ConfigError, match=r"exchange\.symbols: 256 symbols x 4 timeframes .* 1025 kline streams"):
            await client.start()
    ok = feed_config(endpoint="testnet", symbols=symbols[:255])  # 1021: fits (and is then checked per symbol)
    async with local_exchange(DAY_2021, 1.0, TAPE_2021) as lx, exchange_client(lx, ok) as client:
        with pytest.raises(ConfigError, match=r"exchange\.symbols\[0\]: 'S000/USDT' is not a market"):
            await client.start()

"""The reference symbol (BTC/USDT) is a feature input of every model and may be traded too: the
config and `--symbols` take it, the feed subscribes its streams once, and its windows carry
both its own keys and the reference key (real ccxt against the local exchange)."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from daemon import config
from daemon.market.feed import feed_streams
from daemon.research.backtest import with_symbols
from daemon.store import Store
from tests.exchange_kit import DAY_2021, TAPE_2021, Recorder, exchange_client, feed_config, local_exchange, running_feed

SYMBOLS = ("ETH/USDT", "BTC/USDT")


def test_the_config_and_symbols_flag_take_the_reference_symbol(write_config) -> None:
    cfg = config.load(write_config("[exchange]\nsymbols = ['ETH/USDT', 'BTC/USDT']\n"))
    assert cfg.exchange.symbols == SYMBOLS and cfg.exchange.reference_symbol == "BTC/USDT"
    assert with_symbols(cfg, "BTC/USDT,XRP/USDT").exchange.symbols == ("BTC/USDT", "XRP/USDT")
    with pytest.raises(ValueError, match="listed twice"):
        with_symbols(cfg, "BTC/USDT,BTC/USDT")


def test_the_reference_stream_is_listed_once_when_traded() -> None:
    streams = feed_streams(feed_config(symbols=SYMBOLS, timeframes=("1m", "1h")))
    assert len(streams) == len(set(streams)) == 4
    assert streams.count(("BTC/USDT", "1m")) == 1


async def test_a_traded_reference_is_subscribed_once_and_keyed_both_ways(tmp_path) -> None:
    cfg = feed_config(symbols=SYMBOLS, timeframes=("1m", "1h"), warmup_bars=60)
    rec = Recorder()
    async with local_exchange(DAY_2021 + 55_000, 20.0, TAPE_2021) as lx, exchange_client(lx, cfg) as client:
        async with running_feed(client, Store(tmp_path / "s.sqlite"), cfg, 20.0, rec) as feed:
            subscribed = await lx.wait_subscribed(6)  # 4 kline streams and 2 bookTickers, no more
            assert sorted(subscribed) == sorted({*subscribed}) and len(subscribed) == 6
            assert sum("btcusdt@kline_1m" in s for s in subscribed) == 1
            while len(rec.bars.get(("BTC/USDT", "1m"), [])) < 3:
                await asyncio.sleep(0.05)
            got = [b.ts for b in rec.bars[("BTC/USDT", "1m")]]
            assert len(got) == len(set(got))  # each closed bar delivered once
            w = feed.buffers.windows("BTC/USDT", ("1m", "1h"), "BTC/USDT", "1m")
            assert set(w) == {"1m", "1h", "btc_1m"} and np.array_equal(w["1m"], w["btc_1m"])
            eth = feed.buffers.windows("ETH/USDT", ("1m", "1h"), "BTC/USDT", "1m")
            assert set(eth) == {"1m", "1h", "btc_1m"} and np.array_equal(eth["btc_1m"], w["btc_1m"])

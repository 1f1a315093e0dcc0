"""The local exchange, part 3: the bundled May 2021 multi-symbol tape, and the DERIVED book
(bookTicker, ticker/24hr, depth; REST and websocket) through the real ccxt client."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from daemon.localexchange import LocalExchange, bundled_tape_dir, load_tape
from daemon.localexchange.market import MINUTE
from tests.localexchange.test_localexchange import LocalBinance, ex  # noqa: F401 - ex: ccxt on this module's lx

SPREAD_BPS = 4.0
HOUR, DAY = 3_600_000, 86_400_000
SYMBOLS = ("BTCUSDT", "ETHUSDT", "XRPUSDT", "ADAUSDT", "DOGEUSDT", "LTCUSDT")


def test_bundled_2021_tape_is_small_real_and_overlapping() -> None:
    files = list(bundled_tape_dir("2021-05").glob("*.csv.gz"))
    assert sum(p.stat().st_size for p in files) < 1_500_000
    tapes = load_tape(bundled_tape_dir("2021-05"))
    assert sorted(tapes) == sorted(SYMBOLS)
    firsts = {s: int(t.bars["1m"][0, 0]) for s, t in tapes.items()}
    assert set(firsts.values()) == {1_621_209_600_000}  # all from 2021-05-17T00:00Z
    start = 1_621_209_600_000 + DAY  # the default replay start
    for sym, t in tapes.items():
        m1 = t.bars["1m"]
        assert np.all(np.diff(m1[:, 0]) == MINUTE), sym  # no gap inside the slice
        assert (m1[:, 0] + MINUTE <= start).sum() == 1440
        assert (t.bars["1h"][:, 0] + HOUR <= start).sum() >= 600, sym


@pytest.fixture
async def lx():
    async with LocalExchange(bundled_tape_dir("2021-05"), speed=0, paused=True, spread_bps=SPREAD_BPS) as server:
        yield server


def assert_touch(lx: LocalExchange, sym: str, bid: float, ask: float) -> None:
    market = lx.markets[sym.replace("/", "")]
    price, tick = market.price(lx.now_ms()), 10.0**-market.price_decimals
    assert bid < price < ask or (bid <= price <= ask and SPREAD_BPS == 0)
    assert ask - bid <= price * SPREAD_BPS / 1e4 + 2 * tick, (sym, bid, ask, price)
    assert abs((bid + ask) / 2 - price) <= tick, (sym, bid, ask, price)


async def test_book_ticker_ticker_and_depth_are_derived_around_the_replay_price(lx: LocalExchange, ex: LocalBinance) -> None:
    lx.advance(37_000)  # inside a minute: the price is a derived second's
    books = await ex.fetch_bids_asks(["XRP/USDT", "ETH/USDT", "DOGE/USDT"])
    assert sorted(books) == ["DOGE/USDT", "ETH/USDT", "XRP/USDT"]
    for sym, b in books.items():
        assert_touch(lx, sym, b["bid"], b["ask"])
    t = await ex.fetch_ticker("ADA/USDT")
    assert_touch(lx, "ADA/USDT", t["bid"], t["ask"])
    m1 = lx.markets["ADAUSDT"].m1
    day = m1[(m1[:, 0] >= lx.now_ms() - DAY) & (m1[:, 0] < lx.now_ms())]
    assert t["last"] == lx.markets["ADAUSDT"].price(lx.now_ms())
    assert t["high"] >= day[:, 2].max() and t["low"] <= day[:, 3].min() and t["open"] == day[0, 1]
    book = await ex.fetch_order_book("LTC/USDT", 20)
    assert len(book["bids"]) == len(book["asks"]) == 20
    assert_touch(lx, "LTC/USDT", book["bids"][0][0], book["asks"][0][0])
    assert all(a[0] > b[0] for a, b in zip(book["bids"], book["bids"][1:]))
    assert all(a[0] < b[0] for a, b in zip(book["asks"], book["asks"][1:]))
    with pytest.raises(Exception, match="Illegal"):
        await ex.fetch_order_book("LTC/USDT", 7)


async def test_book_ticker_stream_sends_the_touch_each_second_before_the_close(lx: LocalExchange, ex: LocalBinance) -> None:
    got: list[tuple[int, str, float, float]] = []
    watch = asyncio.create_task(_collect(ex, got))
    await lx.wait_subscribed(2)
    assert "xrpusdt@bookTicker" in lx.pump.subscriptions()
    for _ in range(3):
        lx.advance(1_000)
        await asyncio.sleep(0.05)
    watch.cancel()
    await asyncio.gather(watch, return_exceptions=True)
    assert {s for _, s, _, _ in got} == {"XRP/USDT", "ETH/USDT"}
    assert len({ts for ts, _, _, _ in got}) >= 3  # one per replay second
    for ts, sym, bid, ask in got:
        price = lx.markets[sym.replace("/", "")].price(ts)
        assert bid < price < ask, (ts, sym, bid, ask, price)


async def _collect(ex: LocalBinance, got: list[tuple[int, str, float, float]]) -> None:
    while True:
        tickers = await ex.watch_bids_asks(["XRP/USDT", "ETH/USDT"])
        for sym, t in tickers.items():
            got.append((t["timestamp"], sym, t["bid"], t["ask"]))


async def test_synthetic_symbols_are_time_shifted_copies_served_like_the_real_ones() -> None:
    async with LocalExchange(bundled_tape_dir("2021-05"), speed=0, paused=True, synthetic=12) as lx:
        client = LocalBinance(lx)
        try:
            await client.load_markets()
            assert {f"SYN{i:03d}/USDT" for i in range(1, 13)} <= set(client.markets)
            sources = sorted(s for s in SYMBOLS if s != "BTCUSDT")  # cycled through, the reference left out
            now = lx.now_ms() - lx.now_ms() % MINUTE
            for i in (1, 7, 12):
                rows = await client.fetch_ohlcv(f"SYN{i:03d}/USDT", "1m", now - 10 * MINUTE, 5)
                src = lx.markets[sources[(i - 1) % len(sources)]]
                for r in rows:
                    assert r[1:5] == list(src.closed_bar("1m", r[0] - i * MINUTE)[1:5]), (i, r)
            hours = await client.fetch_ohlcv("SYN005/USDT", "1h", now - 10 * HOUR, 5)
            assert len(hours) == 5  # aggregated from the shifted 1m bars
        finally:
            await client.close()

"""Live best bid/ask through the real ccxt client: the local exchange's bookTicker stream,
derived from its replay, on the same connection as the bars."""

from __future__ import annotations

import asyncio

from daemon.domain import Bar
from daemon.store import Store
from tests.exchange_kit import (
    DAY_2021, SYMBOLS_2021, TAPE_2021, Recorder, exchange_client, feed_config, local_exchange, running_feed,
)

SPREAD_BPS = 10.0


class CloseQuotes(Recorder):
    """Keeps, for every closed 1m bar, the quote the feed held when on_bar ran."""

    def __init__(self) -> None:
        super().__init__()
        self.feed = None
        self.at_close: list[tuple[Bar, tuple[float, float, int] | None]] = []

    async def __call__(self, bar: Bar) -> None:
        if self.feed is not None and bar.timeframe == "1m" and bar.symbol != "BTC/USDT":
            self.at_close.append((bar, self.feed.quotes.quote(bar.symbol)))
        await super().__call__(bar)


def market_id(symbol: str) -> str:
    return symbol.replace("/", "")


async def test_quotes_track_the_replay_price_within_the_spread_on_the_bars_socket(tmp_path) -> None:
    cfg, rec, speed = feed_config(symbols=SYMBOLS_2021, timeframes=("1m",), warmup_bars=20), CloseQuotes(), 60.0
    async with local_exchange(DAY_2021 + 50_000, speed, TAPE_2021, spread_bps=SPREAD_BPS) as lx, \
            exchange_client(lx, cfg) as client:
        async with running_feed(client, Store(tmp_path / "s.sqlite"), cfg, speed, rec) as feed:
            rec.feed = feed
            await lx.wait_subscribed(len(SYMBOLS_2021) * 2 + 1)
            assert len(lx.pump.sockets) == 1 and client.connections() == 1  # bars and quotes share it
            await rec.until(lambda: len(rec.at_close) >= 6 * len(SYMBOLS_2021), 20)
            for _ in range(20):  # sample the live quotes against the replay
                await asyncio.sleep(0.05)
                for sym in SYMBOLS_2021:
                    q = feed.quotes.quote(sym)
                    assert q is not None, sym
                    bid, ask, ts = q
                    market = lx.markets[market_id(sym)]
                    price, tick = market.price(ts), 10.0 ** -market.price_decimals
                    assert ts <= lx.now_ms()
                    assert bid < ask <= bid + price * SPREAD_BPS / 1e4 + 2 * tick, (sym, q)
                    assert bid - tick <= price * (1 - SPREAD_BPS / 2e4) and price * (1 + SPREAD_BPS / 2e4) <= ask + tick
            # at every close the feed already held a touch from that close (the local exchange
            # sends it before the closing kline frame), around the price at that instant
            for bar, q in rec.at_close[3 * len(SYMBOLS_2021):]:  # past warm-up's catch-up
                assert q is not None and bar.ts + 60_000 <= q[2] < bar.ts + 60_000 + 1_000, (bar, q)
                price = lx.markets[market_id(bar.symbol)].price(q[2])
                assert q[0] <= price <= q[1], (bar, q, price)
            assert feed.quotes.status()["failed"] is None


async def test_quotes_vanish_on_a_lost_connection_and_come_back(tmp_path) -> None:
    cfg, speed = feed_config(symbols=SYMBOLS_2021[:2], timeframes=("1m",), warmup_bars=20), 30.0
    async with local_exchange(DAY_2021 + 50_000, speed, TAPE_2021) as lx, exchange_client(lx, cfg) as client:
        async with running_feed(client, Store(tmp_path / "s.sqlite"), cfg, speed) as feed:
            quotes = feed.quotes

            async def until(cond, timeout: float) -> None:
                async with asyncio.timeout(timeout):
                    while not cond():
                        await asyncio.sleep(0.005)

            await until(lambda: all(quotes.quote(s) for s in SYMBOLS_2021[:2]), 10)
            lx.faults.drop_websockets()
            await until(lambda: quotes.quote(SYMBOLS_2021[0]) is None, 5)  # no stale touch meanwhile
            before = lx.now_ms()
            await until(lambda: all(quotes.quote(s) and quotes.quote(s)[2] >= before for s in SYMBOLS_2021[:2]), 10)

"""Live best bid/ask through the real ccxt client: the local exchange's bookTicker stream,
derived from its replay, on the same connection as the bars."""

from __future__ import annotations

import asyncio

from daemon.domain import Bar
from daemon.store import Store
from tests.exchange_kit import (
    DAY_2021,
    SYMBOLS_2021,
    TAPE_2021,
    Recorder,
    exchange_client,
    feed_config,
    local_exchange,
    running_feed,
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
    async with (
        local_exchange(DAY_2021 + 50_000, speed, TAPE_2021, spread_bps=SPREAD_BPS) as lx,
        exchange_client(lx, cfg) as client,
    ):
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
                    price, tick = market.price(ts), 10.0**-market.price_decimals
                    assert ts <= lx.now_ms()
                    assert bid < ask <= bid + price * SPREAD_BPS / 1e4 + 2 * tick, (sym, q)
                    assert bid - tick <= price * (1 - SPREAD_BPS / 2e4) and price * (1 + SPREAD_BPS / 2e4) <= ask + tick
            # at every close the feed already held a touch from that close (the local exchange
            # sends it before the closing kline frame), around the price at that instant
            for bar, q in rec.at_close[3 * len(SYMBOLS_2021) :]:  # past warm-up's catch-up
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


async def test_a_paper_market_order_at_a_close_fills_at_the_ask_the_exchange_sent_at_that_close(tmp_path) -> None:
    from daemon.trading.orders import OrderIntent
    from daemon.trading.paper import PaperBroker
    from tests.engine_parts import ListSink

    cfg, speed = feed_config(symbols=("XRP/USDT",), timeframes=("1m",), warmup_bars=20), 30.0
    store = Store(tmp_path / "s.sqlite")
    paper = PaperBroker(store, ListSink(), fee=0.0, slippage=0.0)
    fills: list[tuple[Bar, tuple[float, float, int] | None]] = []

    class BuyOnClose(Recorder):
        async def __call__(self, bar: Bar) -> None:
            await super().__call__(bar)
            if bar.symbol == "XRP/USDT" and len(fills) < 2 and bar.ts >= live_from:
                quote = paper.quotes.quote(bar.symbol)  # what the broker is about to fill at
                await paper.submit(
                    OrderIntent(bar.symbol, 10.0 * (len(fills) + 1), bar.close, bar.ts, bar.ts + 60_000, "confidence")
                )
                fills.append((bar, quote))

    rec = BuyOnClose()
    async with (
        local_exchange(DAY_2021 + 50_000, speed, TAPE_2021, spread_bps=SPREAD_BPS) as lx,
        exchange_client(lx, cfg) as client,
    ):
        live_from = DAY_2021 + 60_000  # the first bar closing on the websocket
        async with running_feed(client, store, cfg, speed, rec) as feed:
            paper.quotes = feed.quotes
            await paper.start()
            await rec.until(lambda: len(fills) == 2, 20)
    for k, (bar, quote) in enumerate(fills):
        assert quote is not None and quote[2] >= bar.ts + 60_000  # a touch from the close itself
        rows = store.db.conn.execute("SELECT price, ts FROM fills ORDER BY ts").fetchall()
        price, ts = rows[k]
        assert (price, ts) == (quote[1], quote[2])  # filled at once, at that ask: no wait for a bar
        market = lx.markets["XRPUSDT"]
        assert quote[0] < market.price(ts) < quote[1]


async def test_a_malformed_quote_frame_is_counted_and_resyncs_no_bar_stream(tmp_path) -> None:
    from daemon.metrics import REGISTRY

    cfg, speed = feed_config(symbols=SYMBOLS_2021[:2], timeframes=("1m",), warmup_bars=20), 30.0
    bad, dropped = REGISTRY.counter("sigd_bad_frames_total", ""), REGISTRY.counter("sigd_feed_dropped_bars_total", "")
    before, unknown = bad.get(stream="XRP/USDT bookTicker"), dropped.get(stream="unknown", kind="malformed_frame")
    async with local_exchange(DAY_2021 + 50_000, speed, TAPE_2021) as lx, exchange_client(lx, cfg) as client:
        async with running_feed(client, Store(tmp_path / "s.sqlite"), cfg, speed) as feed:
            async with asyncio.timeout(10):
                while not feed.quotes.quote("XRP/USDT"):
                    await asyncio.sleep(0.01)
                lx.faults.malformed(1, "xrpusdt@bookTicker")
                while bad.get(stream="XRP/USDT bookTicker") == before:
                    await asyncio.sleep(0.01)
                seen = lx.now_ms()
                while (feed.quotes.quote("XRP/USDT") or (0, 0, 0))[2] <= seen:  # the next good one is taken
                    await asyncio.sleep(0.01)
            assert dropped.get(stream="unknown", kind="malformed_frame") == unknown  # no resync of every bar stream
            assert all(s["dropped_frames"] == 0 and s["reconnects"] == 0 for s in feed.status().values())
            assert not any(s["degraded"] for s in feed.status().values())

"""The local exchange, part 1: tape, aggregation, derived 1s, REST through the real ccxt client."""

from __future__ import annotations

import asyncio
import gzip
from pathlib import Path

import aiohttp
import ccxt.pro as ccxtpro
import numpy as np
import pytest

from daemon.localexchange import DEV_API_KEY, DEV_API_SECRET, LocalExchange, TapeError, bundled_tape_dir, load_tape
from daemon.localexchange.market import MINUTE, Market, aggregate
from daemon.localexchange.seconds import derive_minute, volume_units

HOUR, DAY = 3_600_000, 86_400_000
TAPE = load_tape(bundled_tape_dir())


class LocalBinance(ccxtpro.binance):
    """ccxt's binance pointed at a local exchange; keeps every closing update (k.x) it receives."""

    def __init__(self, lx: LocalExchange, **config: object) -> None:
        super().__init__(
            {
                "apiKey": DEV_API_KEY,
                "secret": DEV_API_SECRET,
                "enableRateLimit": False,
                "options": {"fetchMarkets": {"types": ["spot"]}, "fetchCurrencies": False, "fetchMargins": False},
                **config,
            }
        )
        self.urls["api"]["public"] = self.urls["api"]["private"] = lx.rest_url
        self.urls["api"]["v1"] = lx.base_url + "/api/v1"
        self.urls["api"]["ws"]["spot"] = lx.ws_url
        self.closed_frames: list[tuple[str, str, list[float]]] = []
        self.forming_frames = 0

    def handle_ohlcv(self, client: object, message: dict) -> None:
        k = message.get("k") or {}
        if k.get("x"):
            self.closed_frames.append((k["s"], k["i"], [k["t"], *(_number(k.get(f)) for f in "ohlcv")]))
        elif "t" in k:
            self.forming_frames += 1
        return super().handle_ohlcv(client, message)


def _number(value: object) -> float:
    """A frame's number as float; NaN when it is not one (malformed-frame faults)."""
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return float("nan")


def tape_rows(symbol: str, tf: str) -> np.ndarray:
    """The recorded rows of the bundled tape."""
    return TAPE[symbol].bars[tf]


# -- tape reader --------------------------------------------------------------------------
def write_tape(directory: Path, name: str, lines: list[str]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    with gzip.open(path, "wt") as f:
        f.write("\n".join(lines) + "\n")
    return path


GOOD = ["timestamp,open,high,low,close,volume", "60000,10,12,9,11,1.5", "120000,11,11,10,10.5,0"]


@pytest.mark.parametrize(
    "bad_line, why",
    [
        ("180000,10,12,9,x,1", "not a number"),
        ("150000,10,12,9,11,1", "not aligned"),
        ("60000,10,12,9,11,1", "not after the previous row"),
        ("180000,10,9,9,11,1", "invariant"),
        ("180000,10,12,9,11", "expected 6 columns"),
    ],
)
def test_malformed_tape_names_file_and_line(tmp_path: Path, bad_line: str, why: str) -> None:
    path = write_tape(tmp_path, "AAA_USDT-1m.csv.gz", [*GOOD, bad_line])
    with pytest.raises(TapeError, match=why) as e:
        load_tape(tmp_path)
    assert f"{path}:4" in str(e.value)


def test_tape_header_and_missing_1m_are_named(tmp_path: Path) -> None:
    write_tape(tmp_path / "a", "AAA_USDT-1m.csv.gz", ["ts,o,h,l,c,v", "60000,1,1,1,1,1"])
    with pytest.raises(TapeError, match=r"AAA_USDT-1m.csv.gz:1: header"):
        load_tape(tmp_path / "a")
    write_tape(tmp_path / "b", "AAA_USDT-1h.csv.gz", ["timestamp,open,high,low,close,volume"])
    with pytest.raises(TapeError, match="AAA_USDT-1m.csv"):
        load_tape(tmp_path / "b")
    with pytest.raises(TapeError, match="does not exist"):
        load_tape(tmp_path / "nowhere")


def test_bundled_tape_is_small_and_has_600_bar_windows_at_the_default_start() -> None:
    size = sum(p.stat().st_size for p in bundled_tape_dir().glob("*.csv.gz"))
    assert size < 3_000_000
    for sym in ("BTCUSDT", "ETHUSDT"):
        m1 = tape_rows(sym, "1m")
        start = int(m1[0, 0]) + DAY
        assert (m1[-1, 0] - m1[0, 0]) / DAY >= 13.5
        assert int(m1[-1, 0]) == 1755541620000  # the shared data's last 1m bar, 2025-08-18T18:27Z
        for tf, step in (("1m", MINUTE), ("1h", HOUR), ("1d", DAY)):
            closed_before = tape_rows(sym, tf)[:, 0] + step <= start
            assert closed_before.sum() >= 600, (sym, tf)


# -- aggregation and derived 1s -----------------------------------------------------------
@pytest.mark.parametrize("sym", ["BTCUSDT", "ETHUSDT"])
def test_aggregated_1h_1d_equal_the_recorded_rows(sym: str) -> None:
    market = Market(TAPE[sym], seed=7)
    for tf, step, least in (("1h", HOUR, 300), ("1d", DAY, 13)):
        recorded = tape_rows(sym, tf)
        inside = recorded[recorded[:, 0] >= market.first_ms]
        assert len(inside) >= least
        m1 = market.m1
        for row in inside:
            minutes = m1[(m1[:, 0] >= row[0]) & (m1[:, 0] < row[0] + step)]
            agg = aggregate(minutes)
            assert np.array_equal(agg[:5], row[:5]) and volume_units(agg[5]) == volume_units(row[5]), (tf, row[0])
            assert np.array_equal(market.closed_bar(tf, int(row[0])), agg)


def test_derived_1s_cache_stays_small_over_a_long_replay() -> None:
    """Replaying many market hours must not keep every derived minute (RSS grew linearly)."""
    market = Market(TAPE["ETHUSDT"], seed=7)
    minutes = market.m1[:600, 0].astype(np.int64)  # 10 market hours
    first = market.minute_seconds(int(minutes[0])).copy()
    for ts in minutes:
        market.minute_seconds(int(ts))
        market.forming_bar("1s", int(ts) + 30_500)
    assert len(market._minutes) <= 64  # ~3 KB each: a bounded, small cache
    assert np.array_equal(market.minute_seconds(int(minutes[0])), first)  # re-derived identically


def test_derived_1s_respects_every_minute_exactly() -> None:
    m1 = tape_rows("ETHUSDT", "1m")
    rng = np.random.default_rng(0)
    for row in m1[rng.choice(len(m1), 300, replace=False)]:
        secs = derive_minute(row, seed=7, symbol="ETHUSDT")
        assert secs.shape == (60, 6)
        assert np.array_equal(secs[:, 0], row[0] + 1000 * np.arange(60))
        assert secs[0, 1] == row[1] and secs[-1, 4] == row[4]
        assert secs[:, 2].max() == row[2] and secs[:, 3].min() == row[3]
        assert volume_units(secs[:, 5]).sum() == volume_units(row[5])
        assert np.all(secs[:, 3] <= np.minimum(secs[:, 1], secs[:, 4]))
        assert np.all(np.maximum(secs[:, 1], secs[:, 4]) <= secs[:, 2])
        assert np.all(secs[1:, 1] == secs[:-1, 4])  # each second opens at the previous close
    row = m1[100]
    assert np.array_equal(derive_minute(row, 7, "ETHUSDT"), derive_minute(row, 7, "ETHUSDT"))
    assert not np.array_equal(derive_minute(row, 7, "ETHUSDT"), derive_minute(row, 8, "ETHUSDT"))


# -- REST through ccxt ----------------------------------------------------------------------
@pytest.fixture
async def lx():
    async with LocalExchange(speed=0, paused=True) as server:
        yield server


@pytest.fixture
async def ex(lx: LocalExchange):
    client = LocalBinance(lx)
    await client.load_markets()
    yield client
    await client.close()


async def test_klines_paging_reproduces_the_tape(lx: LocalExchange, ex: LocalBinance) -> None:
    now = lx.now_ms()
    m1 = tape_rows("BTCUSDT", "1m")
    since, got = now - 2500 * MINUTE + MINUTE, []
    while True:  # page forward with since = last + 1m, 1000 at a time
        page = await ex.fetch_ohlcv("BTC/USDT", "1m", since=since, limit=1000)
        if not page:
            break
        got += page
        since = page[-1][0] + MINUTE
    want = m1[(m1[:, 0] >= now - 2500 * MINUTE + MINUTE) & (m1[:, 0] < now)]
    assert len(got) == min(len(want), 2499) and np.array_equal(np.array(got), want)
    for tf, step in (("1h", HOUR), ("1d", DAY)):
        rows = np.array(await ex.fetch_ohlcv("ETH/USDT", tf, limit=600))
        assert len(rows) == 600 and rows[-1, 0] + step <= now  # start is on a day boundary: no forming bar
        rec = tape_rows("ETHUSDT", tf)
        assert np.array_equal(rows, rec[np.isin(rec[:, 0], rows[:, 0])])


async def test_klines_limit_start_end_semantics(lx: LocalExchange) -> None:
    now = lx.now_ms()
    async with aiohttp.ClientSession() as http:

        async def get(**q: object) -> tuple[int, object]:
            async with http.get(lx.rest_url + "/klines", params={"symbol": "BTCUSDT", **q}) as r:
                return r.status, await r.json()

        status, rows = await get(interval="1m")
        assert status == 200 and len(rows) == 500 and rows[-1][0] == now - MINUTE
        assert rows[-1][6] == rows[-1][0] + MINUTE - 1 and len(rows[0]) == 12
        _, rows = await get(interval="1m", startTime=now - 10 * MINUTE - 1, limit=3)
        assert [r[0] for r in rows] == [now - 10 * MINUTE + i * MINUTE for i in range(3)]  # open >= startTime
        _, rows = await get(interval="1m", endTime=now - 100 * MINUTE, limit=2)
        assert [r[0] for r in rows] == [now - 101 * MINUTE, now - 100 * MINUTE]  # the last `limit` up to endTime
        _, rows = await get(interval="1m", startTime=now - 5 * MINUTE, endTime=now + DAY, limit=1000)
        assert len(rows) == 5  # nothing after the replay instant
        assert (await get(interval="1m", limit=1001))[1]["code"] == -1130
        assert (await get(interval="7m"))[1]["code"] == -1120
        assert (await get(interval="1m", startTime=2, endTime=1))[1]["code"] == -1023
        async with http.get(lx.rest_url + "/klines", params={"symbol": "XYZ", "interval": "1m"}) as r:
            assert (await r.json())["code"] == -1121


async def test_forming_bar_is_last_and_uses_nothing_after_the_replay_instant(lx: LocalExchange, ex: LocalBinance) -> None:
    lx.clock.advance_to(lx.now_ms() + 37 * MINUTE + 29_500)  # mid-hour, mid-minute, mid-second
    now = lx.now_ms()
    market = lx.markets["BTCUSDT"]
    minute = now - now % MINUTE
    seconds = market.minute_seconds(minute)
    done = seconds[seconds[:, 0] < now - now % 1000]
    for tf, step in (("1s", 1000), ("1m", MINUTE), ("1h", HOUR), ("1d", DAY)):
        rows = await ex.fetch_ohlcv("BTC/USDT", tf, limit=5)
        last = rows[-1]
        assert last[0] == now - now % step and all(r[0] <= now for r in rows), tf
        assert last[4] == market.price(now), tf
    one_minute = (await ex.fetch_ohlcv("BTC/USDT", "1m", limit=1))[0]
    assert one_minute[1:] == pytest.approx(list(aggregate(done)[1:]), abs=1e-8)
    recorded = market.m1_row(minute)
    assert one_minute[5] < recorded[5] and one_minute[2] <= recorded[2] and one_minute[3] >= recorded[3]
    assert (await ex.fetch_time()) == now


# -- orders and balances ----------------------------------------------------------------------
async def test_market_and_limit_orders_fill_and_move_balances(lx: LocalExchange, ex: LocalBinance) -> None:
    price = lx.markets["BTCUSDT"].price(lx.now_ms())
    o = await ex.create_order("BTC/USDT", "market", "buy", 0.01)
    assert o["status"] == "closed" and o["average"] == price and o["filled"] == 0.01
    bal = await ex.fetch_balance()
    assert bal["BTC"]["free"] == pytest.approx(1.01) and bal["USDT"]["free"] == pytest.approx(100_000 - 0.01 * price)
    o = await ex.create_order("ETH/USDT", "market", "sell", 1.0, 4000.0)  # with a price: sent as quoteOrderQty
    eth_px = lx.markets["ETHUSDT"].price(lx.now_ms())
    assert o["status"] == "closed" and o["filled"] == pytest.approx(
        np.floor(4000.0 / eth_px * 1e4) / 1e4
    )  # floored to the lot step
    # a limit buy below the market fills when the replayed price comes down to it
    future = tape_rows("BTCUSDT", "1m")
    ahead = future[(future[:, 0] >= lx.now_ms()) & (future[:, 0] < lx.now_ms() + 30 * MINUTE)]
    limit_px = round(float(ahead[:, 3].min()) + 0.01, 2)
    assert limit_px < price
    o = await ex.create_order("BTC/USDT", "limit", "buy", 0.02, limit_px, {"newClientOrderId": "lim-1"})
    assert o["status"] == "open"
    assert (await ex.fetch_balance())["USDT"]["used"] == pytest.approx(0.02 * limit_px)
    assert [x["clientOrderId"] for x in await ex.fetch_open_orders("BTC/USDT")] == ["lim-1"]
    async with aiohttp.ClientSession() as http:  # the control endpoint moves the paused clock
        async with http.post(lx.base_url + "/_control/advance", json={"ms": 30 * MINUTE}) as r:
            assert (await r.json())["result"] == lx.now_ms()
    by_client = await ex.fetch_order(None, "BTC/USDT", {"origClientOrderId": "lim-1"})
    assert by_client["status"] == "closed" and by_client["price"] == limit_px and by_client["id"] == o["id"]
    bal = await ex.fetch_balance()
    assert bal["BTC"]["free"] == pytest.approx(1.03) and bal["USDT"]["used"] == 0
    assert await ex.fetch_open_orders("BTC/USDT") == []


async def test_cancel_duplicate_and_insufficient_funds(lx: LocalExchange, ex: LocalBinance) -> None:
    o = await ex.create_order("BTC/USDT", "limit", "buy", 0.01, 50_000.0, {"newClientOrderId": "dup-1"})
    with pytest.raises(ccxtpro.InvalidOrder, match="Duplicate order sent"):
        await ex.create_order("BTC/USDT", "limit", "buy", 0.01, 50_000.0, {"newClientOrderId": "dup-1"})
    assert (await ex.cancel_order(o["id"], "BTC/USDT"))["status"] == "canceled"
    with pytest.raises(ccxtpro.OrderNotFound):
        await ex.cancel_order(o["id"], "BTC/USDT")
    with pytest.raises(ccxtpro.OrderNotFound):
        await ex.fetch_order("999999", "BTC/USDT")
    assert (await ex.fetch_balance())["USDT"]["free"] == pytest.approx(100_000)
    with pytest.raises(ccxtpro.InsufficientFunds):
        await ex.create_order("BTC/USDT", "market", "buy", 5.0)


@pytest.mark.parametrize(
    "config, error",
    [
        ({"secret": "wrong-secret"}, ccxtpro.AuthenticationError),
        ({"apiKey": "wrong-key"}, ccxtpro.AuthenticationError),
        (
            {
                "options": {
                    "fetchMarkets": {"types": ["spot"]},
                    "fetchCurrencies": False,
                    "fetchMargins": False,
                    "timeDifference": 600_000,
                }
            },
            ccxtpro.InvalidNonce,
        ),
    ],
)
async def test_signing_errors(lx: LocalExchange, config: dict, error: type) -> None:
    client = LocalBinance(lx, **config)
    try:
        with pytest.raises(error):
            await client.fetch_balance()
    finally:
        await client.close()


# -- REST faults ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "status, error",
    [
        (429, ccxtpro.DDoSProtection),
        (418, ccxtpro.DDoSProtection),
        (503, ccxtpro.ExchangeNotAvailable),
        (500, ccxtpro.ExchangeNotAvailable),
    ],
)
async def test_rest_error_fault(lx: LocalExchange, ex: LocalBinance, status: int, error: type) -> None:
    lx.faults.rest_error(status=status, count=2, retry_after=3)
    for _ in range(2):
        with pytest.raises(error):
            await ex.fetch_ohlcv("BTC/USDT", "1m", limit=2)
        if status in (418, 429):
            assert ex.last_response_headers.get("Retry-After") == "3"
    assert len(await ex.fetch_ohlcv("BTC/USDT", "1m", limit=2)) == 2


async def test_rest_timeout_fault_and_control_endpoint(lx: LocalExchange, ex: LocalBinance) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.post(lx.base_url + "/_control/rest_timeout", json={"count": 1, "hang_s": 5}) as r:
            assert r.status == 200 and (await r.json())["status"]["faults"]["rest"]["kind"] == "timeout"
        async with http.post(lx.base_url + "/_control/explode", json={}) as r:
            assert r.status == 400 and "unknown action" in (await r.json())["error"]
        async with http.post(lx.base_url + "/_control/rest_error", json={"status": 200}) as r:
            assert r.status == 400
    ex.timeout = 300
    with pytest.raises(ccxtpro.RequestTimeout):
        await ex.fetch_ohlcv("BTC/USDT", "1m", limit=2)
    assert len(await ex.fetch_ohlcv("BTC/USDT", "1m", limit=2)) == 2


async def test_wrong_start_is_refused() -> None:
    with pytest.raises(TapeError, match=r"replay start 1970-01-01T00:00:00Z outside the 1m tape \[2025-"):
        LocalExchange(start_ms=0)
    with pytest.raises(ValueError, match="non-loopback"):
        LocalExchange(host="0.0.0.0")
    await asyncio.sleep(0)


def test_sigd_check_validates_the_local_exchange(write_config, tmp_path: Path) -> None:
    from daemon.config import load
    from daemon.service.check import run_checks, symbol_problems
    from daemon.service.cli import main

    assert run_checks(load(write_config('[local_exchange]\nstart = "2025-08-10T00:00:00Z"\n'))) == []
    problems = run_checks(load(write_config('[local_exchange]\nstart = "2019-01-01"\n')))
    assert len(problems) == 1 and problems[0].startswith("local_exchange.start:")
    assert run_checks(load(write_config('[local_exchange]\nstart = "yesterday"\n')))[0].startswith("local_exchange.start")
    write_tape(tmp_path / "t", "BTC_USDT-1m.csv.gz", GOOD)
    path = write_config(
        f'[local_exchange]\ntape = "{tmp_path / "t"}"\nstart = "1970-01-01T00:01:30Z"\n[exchange]\nsymbols = ["ETH/USDT"]\n'
    )
    assert run_checks(load(path)) == []
    assert symbol_problems(load(path)) == [
        f"exchange.symbols[0]: 'ETH/USDT' is not a market on the exchange (endpoint 'local') (no 1m tape in {tmp_path / 't'})"
    ]
    assert main(["check", "-c", str(path)]) == 2  # a config error: exit 2 naming file and key

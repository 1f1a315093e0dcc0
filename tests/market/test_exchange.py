"""ExchangeClient against the local exchange: paging, rate limits, retries, signing, orders."""

from __future__ import annotations

import asyncio
import io
import time

import pytest

from daemon import log
from daemon.config import ExchangeConfig
from daemon.market.exchange import AuthError, RateLimited, TemporaryError, make_client
from daemon.metrics import REGISTRY
from tests.exchange_kit import DAY, KEY, SECRET, exchange_client, expected_row, feed_config, local_exchange

ERRORS = REGISTRY.counter("sigd_exchange_errors_total", "")


async def test_fetch_bars_pages_and_never_returns_the_forming_bar() -> None:
    cfg = feed_config()
    async with local_exchange(DAY, speed=1.0) as lx, exchange_client(lx, cfg) as client:
        await client.start()
        since = DAY - 2500 * 60_000  # three pages of 1m
        bars = await client.fetch_bars("ETH/USDT", "1m", since)
        assert [b.ts for b in bars] == list(range(since, DAY, 60_000))
        assert bars[-1].close == expected_row("ETH/USDT", "1m", bars[-1].ts)[4]
        ranged = await client.fetch_bars("ETH/USDT", "1h", DAY - 10 * 3_600_000, DAY - 3_600_000)
        assert [b.ts for b in ranged] == list(range(DAY - 10 * 3_600_000, DAY - 3_600_000, 3_600_000))


async def test_rate_limit_storm_backs_off_at_least_retry_after_and_recovers() -> None:
    cfg = feed_config()
    async with local_exchange(DAY, speed=1.0) as lx, exchange_client(lx, cfg) as client:
        await client.start()
        before = ERRORS.get(op="fetch_ohlcv", kind="RateLimited")
        lx.faults.rest_error(429, count=1, retry_after=1)
        t0 = time.monotonic()
        bars = await client.fetch_bars("ETH/USDT", "1m", DAY - 10 * 60_000, DAY)
        assert time.monotonic() - t0 >= 1.0  # waited for Retry-After, not the 0.05 s backoff
        assert len(bars) == 10
        lx.faults.rest_error(418, count=1, retry_after=0)  # an IP ban is a rate limit too
        assert len(await client.fetch_bars("ETH/USDT", "1m", DAY - 10 * 60_000, DAY)) == 10
        assert ERRORS.get(op="fetch_ohlcv", kind="RateLimited") == before + 2


async def test_temporary_errors_are_retried_then_reported() -> None:
    cfg = feed_config(max_retries=2)
    async with local_exchange(DAY, speed=1.0) as lx, exchange_client(lx, cfg) as client:
        await client.start()
        lx.faults.rest_error(503, count=2)
        assert len(await client.fetch_bars("ETH/USDT", "1m", DAY - 5 * 60_000, DAY)) == 5
        lx.faults.rest_error(500, count=10)
        with pytest.raises(TemporaryError):
            await client.fetch_bars("ETH/USDT", "1m", DAY - 5 * 60_000, DAY)
        lx.faults.clear()
        lx.faults.rest_error(429, count=10, retry_after=0)
        with pytest.raises(RateLimited):
            await client.fetch_bars("ETH/USDT", "1m", DAY - 5 * 60_000, DAY)


@pytest.mark.parametrize("key,secret", [(KEY, "wrong-secret"), ("wrong-key", SECRET)])
async def test_signing_errors_are_reported_loudly_and_not_retried(key: str, secret: str) -> None:
    out = io.StringIO()
    log.setup("info", "json", out)
    cfg = feed_config()
    async with local_exchange(DAY, speed=1.0) as lx, exchange_client(lx, cfg, key=key, secret=secret) as client:
        await client.start()
        before = ERRORS.get(op="fetch_balance", kind="AuthError")
        with pytest.raises(AuthError, match="fetch_balance"):
            await client.fetch_balance()
        assert ERRORS.get(op="fetch_balance", kind="AuthError") == before + 1
    assert '"exchange_auth_failed"' in out.getvalue()
    assert secret not in out.getvalue()


async def test_orders_fill_balances_move_and_a_client_id_is_placed_once() -> None:
    cfg = feed_config()
    # A replay clock running 60x: signed requests must stay valid however far it runs ahead.
    async with local_exchange(DAY, speed=60.0) as lx, exchange_client(lx, cfg) as client:
        await client.start()
        await asyncio.sleep(0.5)
        before = await client.fetch_balance()
        order = await client.create_order("ETH/USDT", "buy", "market", 0.5, None, "sigd-test-1")
        assert order["status"] == "closed" and order["clientOrderId"] == "sigd-test-1"
        again = await client.create_order("ETH/USDT", "buy", "market", 0.5, None, "sigd-test-1")
        assert again["id"] == order["id"]  # a resend returns the placed order, no second fill
        after = await client.fetch_balance()
        assert after["ETH"] == pytest.approx(before.get("ETH", 0.0) + 0.5)
        assert after["USDT"] < before["USDT"]
        assert (await client.fetch_order("sigd-test-1", "ETH/USDT"))["id"] == order["id"]
        assert await client.fetch_order("sigd-never-sent", "ETH/USDT") is None
        price = float(order["average"]) * 0.5
        limit = await client.create_order("ETH/USDT", "buy", "limit", 0.1, price, "sigd-test-2")
        assert [o["clientOrderId"] for o in await client.fetch_open_orders("ETH/USDT")] == ["sigd-test-2"]
        assert (await client.cancel_order("sigd-test-2", "ETH/USDT"))["status"] == "canceled"
        assert await client.cancel_order("sigd-test-2", "ETH/USDT") is None
        assert limit["status"] == "open"


def test_local_endpoint_needs_the_local_urls() -> None:
    with pytest.raises(ValueError, match="rest_url"):
        make_client(ExchangeConfig(endpoint="local"), api_key="k", api_secret="s")


def test_check_names_missing_exchange_keys_for_testnet(write_config, monkeypatch) -> None:
    from daemon.config import load
    from daemon.service.check import run_checks

    monkeypatch.delenv("SIGD_TEST_NO_KEY", raising=False)
    cfg = load(write_config('[exchange]\nendpoint = "testnet"\napi_key_env = "SIGD_TEST_NO_KEY"\n'))
    assert any("exchange.api_key_env" in p and "SIGD_TEST_NO_KEY" in p for p in run_checks(cfg))


@pytest.mark.parametrize("endpoint", ["local", "testnet", "live"])
async def test_every_endpoint_is_the_same_client_with_other_urls(endpoint: str) -> None:
    cfg = feed_config(endpoint=endpoint)
    async with local_exchange(DAY, speed=1.0) as lx, exchange_client(lx, cfg) as client:
        await client.start()
        assert client.ex.urls["api"]["public"] == lx.rest_url
        assert client.ex.urls["api"]["ws"]["spot"] == lx.ws_url
        assert len(await client.fetch_bars("BTC/USDT", "1m", DAY - 3 * 60_000, DAY)) == 3
        assert (await client.fetch_balance())["USDT"] > 0


async def test_an_ambiguous_order_outcome_is_looked_up_before_resending() -> None:
    cfg = feed_config()
    async with local_exchange(DAY, speed=1.0) as lx, exchange_client(lx, cfg) as client:
        await client.start()
        before = await client.fetch_balance()
        lx.faults.rest_error(503, count=1, path="/order")  # the first send fails with a 5xx
        order = await client.create_order("ETH/USDT", "sell", "market", 0.25, None, "sigd-ambiguous-1")
        assert order["status"] == "closed"
        after = await client.fetch_balance()
        assert after["ETH"] == pytest.approx(before["ETH"] - 0.25)  # filled exactly once
        assert ERRORS.get(op="create_order", kind="TemporaryError") >= 1


async def test_dropping_a_connection_that_is_still_dialling_leaves_no_socket_open() -> None:
    """A drop that races the dial must close what the dial opens (a socket leaked per race)."""
    cfg = feed_config()
    async with local_exchange(DAY, speed=1.0) as lx, exchange_client(lx, cfg) as client:
        await client.start()
        watch = asyncio.create_task(client.watch([("ETH/USDT", "1m")]))
        while not any(c.connecting for c in (client.ex.clients or {}).values()):
            await asyncio.sleep(0)
        await client.drop_connection("test")
        await asyncio.gather(watch, return_exceptions=True)
        await asyncio.sleep(0.3)  # an orphaned dial would have connected by now
        assert not client.ex.clients and len(lx.pump.sockets) == 0

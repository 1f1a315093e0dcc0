"""Orders the exchange would accept: sized from the target minus the position, rounded to the
market's steps and checked against its minimums as ccxt reports them; the local exchange
enforces the same Binance filters, so an order that does not fit is rejected there (real
ccxt, the built-in local exchange)."""

from __future__ import annotations

import math
from pathlib import Path

import ccxt.async_support as ccxt_async
import pytest

from daemon.domain import OrderStatus, Position
from daemon.localexchange import LocalExchange
from daemon.market.orders import MarketLimits
from daemon.store import Store
from daemon.trading.broker import TestnetBroker
from daemon.trading.orders import SKIPPED_ORDERS, OrderIntent, order_for
from daemon.trading.paper import PaperBroker
from tests.engine_parts import T0, ListSink
from tests.trading.test_broker import KEY, SECRET, exchange  # noqa: F401 - the fixture: local exchange + ccxt client

SYM = "ETH/USDT"
MIN = 60_000


def price_now(lx: LocalExchange) -> float:
    price = lx.markets["ETHUSDT"].price(lx.now_ms())
    assert price is not None
    return price


def intent(target: float, price: float, ts: int = T0) -> OrderIntent:
    return OrderIntent(SYM, target, price, ts, ts + MIN, "confidence")


# -- sizing, pure ----------------------------------------------------------------------------
def test_amounts_round_down_to_the_step_and_small_orders_are_skipped() -> None:
    limits = MarketLimits(amount_step=0.0001, price_step=0.01, min_amount=0.0001, min_notional=5.0)
    assert limits.amount(0.123456789) == 0.1234
    assert limits.amount(0.3) == 0.3  # decimal arithmetic: not 0.29989999
    assert limits.price(3001.236) == 3001.24
    assert limits.fit(0.123456789, 4000.0) == (0.1234, None)
    assert limits.fit(0.00005, 4000.0) == (0.0, "min_amount")
    assert limits.fit(0.0012, 4000.0) == (0.0, "min_notional")  # 4.8 USDT < 5
    capped = MarketLimits(amount_step=0.01, max_amount=2.0)
    assert capped.fit(7.0, 10.0) == (2.0, None)
    assert MarketLimits().fit(0.123456789, 1.0) == (0.123456789, None)  # no limits: unchanged


def test_the_order_is_the_rounded_difference_between_target_and_position() -> None:
    limits = MarketLimits(amount_step=0.001, min_amount=0.001, min_notional=10.0)
    order = order_for(intent(0.5, 100.0), Position(SYM, 0.1234, 100.0), OrderStatus.PENDING, limits)
    assert order is not None and order.side == "buy" and order.amount == 0.376
    before = SKIPPED_ORDERS.get(symbol=SYM, reason="min_notional")
    assert order_for(intent(0.2, 100.0), Position(SYM, 0.15, 100.0), OrderStatus.PENDING, limits) is None
    assert SKIPPED_ORDERS.get(symbol=SYM, reason="min_notional") == before + 1


# -- what ccxt reports and the local exchange enforces ------------------------------------------
async def test_ccxt_reports_the_local_exchange_filters(exchange) -> None:
    lx, client = exchange
    limits = client.limits(SYM)
    f = lx.markets["ETHUSDT"].filters
    assert limits is not None
    assert limits.amount_step == float(f.step) and limits.min_amount == float(f.step)
    assert limits.price_step == float(f.tick) and limits.min_notional == float(f.min_notional) == 5.0
    assert math.isfinite(limits.max_amount) and client.limits("NOPE/USDT") is None


async def test_an_order_under_the_minimum_notional_is_skipped_and_never_sent(exchange, tmp_path: Path) -> None:
    lx, client = exchange
    store = Store(tmp_path / "s.sqlite")
    broker = TestnetBroker(store, ListSink(), client, symbols=[SYM])
    await broker.start()
    px = price_now(lx)
    before = SKIPPED_ORDERS.get(symbol=SYM, reason="min_notional")
    tiny = 4.0 / px  # 4 USDT: above the lot step, below the 5 USDT minimum notional
    assert await broker.submit(intent(tiny, px)) is None
    assert SKIPPED_ORDERS.get(symbol=SYM, reason="min_notional") == before + 1
    assert not store.orders(list(OrderStatus))  # no order row either
    assert lx.account.orders == {}  # nothing reached the exchange


async def test_a_precision_rounded_order_fills(exchange, tmp_path: Path) -> None:
    lx, client = exchange
    broker = TestnetBroker(Store(tmp_path / "s.sqlite"), ListSink(), client, symbols=[SYM])
    await broker.start()
    eth_before = (await client.fetch_balance())["ETH"]
    order = await broker.submit(intent(0.123456789, price_now(lx)))
    assert order is not None and order.status == OrderStatus.FILLED and order.amount == 0.1234
    assert broker.position(SYM).amount == pytest.approx(0.1234, abs=1e-12)
    assert (await client.fetch_balance())["ETH"] == pytest.approx(eth_before + 0.1234, abs=1e-9)
    assert await broker.check_position(SYM) == pytest.approx(0.0, abs=1e-9)


async def test_paper_orders_are_sized_to_the_exchange_limits(exchange, tmp_path: Path) -> None:
    lx, client = exchange
    broker = PaperBroker(Store(tmp_path / "s.sqlite"), ListSink(), limits=client.limits)
    await broker.start()
    px = price_now(lx)
    assert broker.prepare(intent(2.0 / px, px)) is None  # 2 USDT: skipped, as the exchange would refuse it
    order = broker.prepare(intent(0.123456789, px))
    assert order is not None and order.amount == 0.1234


@pytest.mark.parametrize(
    "params, message",
    [
        ({"type": "MARKET", "quantity": "0.12345"}, "Filter failure: LOT_SIZE"),  # off the 0.0001 step
        ({"type": "MARKET", "quantity": "0.0001"}, "Filter failure: NOTIONAL"),  # about 0.4 USDT
        ({"type": "MARKET", "quantity": "0.123456789"}, "Precision is over the maximum"),  # 9 decimals
        ({"type": "LIMIT", "quantity": "0.1", "price": "3000.005", "timeInForce": "GTC"}, "Filter failure: PRICE_FILTER"),
        ({"type": "MARKET", "quantity": "9000001"}, "Filter failure: LOT_SIZE"),  # above maxQty
    ],
)
async def test_a_raw_unrounded_order_is_rejected_by_the_local_exchange(exchange, params: dict, message: str) -> None:
    lx, _ = exchange
    # ccxt rounds every order it builds; its raw endpoint sends the parameters as they are.
    ex = ccxt_async.binance(
        {
            "apiKey": KEY,
            "secret": SECRET,
            "options": {
                "defaultType": "spot",
                "fetchMarkets": {"types": ["spot"]},
                "fetchCurrencies": False,
                "fetchMargins": False,
            },
        }
    )
    ex.urls["api"]["public"] = ex.urls["api"]["private"] = lx.rest_url
    try:
        with pytest.raises(ccxt_async.ExchangeError, match=message):  # InvalidOrder or BadRequest, by message
            await ex.private_post_order({"symbol": "ETHUSDT", "side": "BUY", "newClientOrderId": "raw-1", **params})
    finally:
        await ex.close()
    assert lx.account.orders == {}

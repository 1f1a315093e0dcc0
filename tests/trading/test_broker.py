"""Testnet broker against the real local exchange through the real ccxt client: store before
send, deterministic ids, crash → reconcile → no duplicate, ambiguous outcomes stay UNKNOWN."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from daemon.config import ExchangeConfig
from daemon.domain import Order, OrderStatus, Position
from daemon.localexchange import LocalExchange
from daemon.market.exchange import ExchangeClient, make_client
from daemon.store import Store
from daemon.trading.broker import TestnetBroker
from daemon.trading.orders import Ledger, OrderIntent, client_order_id, order_for
from tests.engine_parts import T0, ListSink

KEY, SECRET = "test-key-engine", "test-secret-engine"
SYM = "ETH/USDT"
MIN = 60_000


class Clock:
    """A wall clock the test moves by hand (for the UNKNOWN grace period)."""

    def __init__(self) -> None:
        self.now = 1_000_000

    def __call__(self) -> int:
        return self.now


@pytest.fixture
async def exchange() -> AsyncIterator[tuple[LocalExchange, ExchangeClient]]:
    lx = LocalExchange(api_key=KEY, api_secret=SECRET)
    await lx.start()
    cfg = ExchangeConfig(endpoint="local", request_timeout_s=1.0, max_retries=0, enable_rate_limit=False)
    client = make_client(cfg, rest_url=lx.rest_url, ws_url=lx.ws_url, api_key=KEY, api_secret=SECRET)
    await client.start()
    yield lx, client
    await client.close()
    await lx.stop()


def intent(target: float, ts: int = T0, price: float = 4000.0) -> OrderIntent:
    return OrderIntent(SYM, target, price, ts, ts + MIN, "confidence")


async def test_a_market_order_fills_and_moves_position_and_balance(exchange, tmp_path: Path) -> None:
    lx, client = exchange
    sink = ListSink()
    broker = TestnetBroker(Store(tmp_path / "s.sqlite"), sink, client, symbols=[SYM])
    await broker.start()
    eth_before = (await client.fetch_balance())["ETH"]
    order = await broker.submit(intent(0.5))
    assert order is not None and order.status == OrderStatus.FILLED and order.exchange_id
    assert order.client_order_id == client_order_id(SYM, T0, "confidence", 0)
    pos = broker.position(SYM)
    assert pos.amount == pytest.approx(0.5) and pos.entry_price > 0
    assert (await client.fetch_balance())["ETH"] == pytest.approx(eth_before + 0.5)
    fill = sink.of("fill")[0]
    assert fill["client_order_id"] == order.client_order_id and fill["price"] == pytest.approx(pos.entry_price)
    assert await broker.check_position(SYM) == pytest.approx(0.0)
    assert await broker.submit(intent(0.5, T0 + MIN)) is None  # already there


async def test_crash_between_store_and_send_reconciles_without_sending(exchange, tmp_path: Path) -> None:
    _, client = exchange
    path, clock = tmp_path / "s.sqlite", Clock()
    store = Store(path)
    # The first run stores the order (as submit does), then dies before sending it.
    first = Ledger(store, ListSink(), clock)
    order = order_for(intent(0.5), first.position(SYM), OrderStatus.PENDING)
    assert order is not None and first.record_new(order, T0 + MIN)
    store.close()

    store = Store(path)
    broker = TestnetBroker(store, ListSink(), client, unknown_grace_ms=5_000, clock_ms=clock)
    await broker.start()  # not at the exchange yet, but too young to be sure: stays unresolved
    assert store.orders(client_order_id=order.client_order_id)[0][0].status == OrderStatus.PENDING
    assert await broker.submit(intent(0.8, T0 + MIN)) is None  # nothing new while unresolved
    clock.now += 6_000
    await broker.reconcile()
    assert store.orders(client_order_id=order.client_order_id)[0][0].status == OrderStatus.REJECTED
    assert await client.fetch_order(order.client_order_id, SYM) is None  # never sent
    # The same decision again (replayed bar): same id, already stored → not sent.
    assert await broker.submit(intent(0.5)) is None
    assert await client.fetch_order(order.client_order_id, SYM) is None
    assert await client.fetch_open_orders(SYM) == []


async def test_crash_after_send_is_settled_from_the_exchange_and_never_resent(exchange, tmp_path: Path) -> None:
    _, client = exchange
    path = tmp_path / "s.sqlite"
    store = Store(path)
    first = Ledger(store, ListSink())
    order = order_for(intent(0.5), first.position(SYM), OrderStatus.PENDING)
    assert order is not None and first.record_new(order, T0 + MIN)
    # The request reached the exchange; the process died before it recorded the answer.
    await client.create_order(SYM, "buy", "market", 0.5, None, order.client_order_id)
    store.close()

    store, sink = Store(path), ListSink()
    broker = TestnetBroker(store, sink, client, unknown_grace_ms=0)
    await broker.start()
    settled = store.orders(client_order_id=order.client_order_id)[0][0]
    assert settled.status == OrderStatus.FILLED and settled.exchange_id
    assert broker.position(SYM).amount == pytest.approx(0.5)
    assert len(sink.of("fill")) == 1
    await broker.start()  # a second restart changes nothing
    assert broker.position(SYM).amount == pytest.approx(0.5) and len(sink.of("fill")) == 1
    assert await broker.submit(intent(0.5)) is None  # same decision: never twice
    # Sending the same client id again is idempotent: the exchange rejects the duplicate and the
    # client answers with the order already placed, so nothing fills twice.
    balance = await client.fetch_balance()
    again = await client.create_order(SYM, "buy", "market", 0.5, None, order.client_order_id)
    assert again["clientOrderId"] == order.client_order_id and str(again["id"]) == settled.exchange_id
    assert await client.fetch_balance() == balance


async def test_a_timeout_leaves_the_order_unknown_until_reconciled(exchange, tmp_path: Path) -> None:
    lx, client = exchange
    store, clock = Store(tmp_path / "s.sqlite"), Clock()
    broker = TestnetBroker(store, ListSink(), client, unknown_grace_ms=10_000, clock_ms=clock)
    await broker.start()
    lx.faults.rest_timeout(count=1, hang_s=3.0, path="/api/v3/order")
    order = await broker.submit(intent(0.5))
    assert order is not None and order.status == OrderStatus.UNKNOWN
    assert await broker.submit(intent(0.5, T0 + MIN)) is None  # blocked while unknown
    clock.now += 11_000
    await broker.reconcile()
    assert store.orders(client_order_id=order.client_order_id)[0][0].status == OrderStatus.REJECTED
    retry = await broker.submit(intent(0.5, T0 + MIN))
    assert retry is not None and retry.status == OrderStatus.FILLED
    assert broker.position(SYM).amount == pytest.approx(0.5)


async def test_an_exchange_rejection_is_final(exchange, tmp_path: Path) -> None:
    _, client = exchange
    sink = ListSink()
    broker = TestnetBroker(Store(tmp_path / "s.sqlite"), sink, client)
    await broker.start()
    order = await broker.submit(intent(1_000.0))  # far more ETH than 100 000 USDT buys
    assert order is not None and order.status == OrderStatus.REJECTED
    assert sink.of("order")[-1]["status"] == "rejected" and broker.position(SYM).amount == 0.0


def test_an_intent_becomes_the_market_order_for_the_difference() -> None:
    order = order_for(intent(-0.25), Position(SYM, 0.5, 100.0), OrderStatus.PENDING)
    assert isinstance(order, Order) and (order.side, order.amount, order.type) == ("sell", 0.75, "market")
    assert order_for(intent(0.5), Position(SYM, 0.5, 100.0), OrderStatus.PENDING) is None


class Observed:
    """The real client, noting what our database said at the moment each order went out."""

    def __init__(self, client: ExchangeClient, store: Store) -> None:
        self.client, self.store = client, store
        self.seen: list[OrderStatus | None] = []

    async def create_order(
        self, symbol: str, side: str, type: str, amount: float, price: float | None, client_order_id: str
    ) -> dict:
        rows = self.store.orders(client_order_id=client_order_id)
        self.seen.append(rows[0][0].status if rows else None)
        return await self.client.create_order(symbol, side, type, amount, price, client_order_id)

    async def fetch_order(self, client_order_id: str, symbol: str) -> dict | None:
        return await self.client.fetch_order(client_order_id, symbol)

    async def fetch_balance(self) -> dict[str, float]:
        return await self.client.fetch_balance()


async def test_every_order_is_stored_before_it_is_sent(exchange, tmp_path: Path) -> None:
    _, client = exchange
    store = Store(tmp_path / "s.sqlite")
    observed = Observed(client, store)
    broker = TestnetBroker(store, ListSink(), observed)
    await broker.start()
    await broker.submit(intent(0.5))
    await broker.submit(intent(-0.5, T0 + MIN))
    assert observed.seen == [OrderStatus.PENDING, OrderStatus.PENDING]
    assert broker.position(SYM).amount == pytest.approx(-0.5)


async def test_the_engine_commits_the_order_with_its_signal_then_sends_it(exchange, tmp_path: Path) -> None:
    from daemon.trading.engine import Engine
    from strategies.confidence import ConfidenceStrategy
    from strategies.risk import RiskParams
    from tests.engine_parts import FixedPredictor, buffers, series

    lx, client = exchange
    store, sink = Store(tmp_path / "s.sqlite"), ListSink()
    broker = TestnetBroker(store, sink, client, symbols=[SYM])
    rings = buffers()
    engine = Engine(
        store=store,
        buffers=rings,
        predictors={"a": FixedPredictor("a"), "b": FixedPredictor("b")},
        sink=sink,
        broker=broker,
        strategies=[ConfidenceStrategy(combine="both")],
        wait_for_decision=True,
        risk_params=RiskParams(position_fraction=0.01, max_position=1e9),
    )
    await engine.start()
    eth_before = (await client.fetch_balance())["ETH"]
    for b in series([2000.0, 2000.0]):
        rings.append(b)
        await engine.on_bar(b)
    await engine.close()
    [signal] = sink.of("signal")
    [(order, _)] = store.orders()
    assert order.status == OrderStatus.FILLED and order.bar_ts == signal["bar_ts"] == T0
    assert [(t, p.get("status")) for t, p, _ in sink.events] == [("signal", None), ("order", "open"), ("fill", None)]
    assert broker.position(SYM).amount == pytest.approx(order.amount)
    assert (await client.fetch_balance())["ETH"] == pytest.approx(eth_before + order.amount)

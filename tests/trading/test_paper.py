"""Paper broker: next-price fills with fee and slippage, PnL by hand, state across a restart."""

from __future__ import annotations

from pathlib import Path

import pytest

from daemon.domain import Fill, OrderStatus, Position
from daemon.store import Store
from daemon.trading.orders import OrderIntent, apply_fill, client_order_id
from daemon.trading.paper import PaperBroker
from tests.engine_parts import T0, ListSink, bar

SYM = "ETH/USDT"
MIN = 60_000


def intent(target: float, ts: int, strategy: str = "confidence") -> OrderIntent:
    return OrderIntent(SYM, target, 0.0, ts, ts + MIN, strategy)


async def test_fills_at_next_open_with_fee_and_slippage_and_pnl_by_hand(tmp_path: Path) -> None:
    store, sink = Store(tmp_path / "s.sqlite"), ListSink()
    paper = PaperBroker(store, sink, fee=0.001, slippage=0.0005)
    await paper.start()
    order = await paper.submit(intent(2.0, T0))
    assert order is not None and order.side == "buy" and order.amount == 2.0
    await paper.on_bar(bar(T0, 99.0))  # the decision bar itself: not the next price
    assert paper.position(SYM).amount == 0.0
    await paper.on_bar(bar(T0 + MIN, 101.0, open=100.0))  # opens at the decision bar's close
    # buy 2 at 100 * 1.0005 = 100.05; fee 0.001 * 100.05 * 2 = 0.2001
    pos = paper.position(SYM)
    assert (pos.amount, pos.entry_price, pos.fees) == (2.0, pytest.approx(100.05), pytest.approx(0.2001))
    await paper.submit(intent(0.0, T0 + MIN))
    await paper.on_bar(bar(T0 + 2 * MIN, 111.0, open=110.0))
    # sell 2 at 110 * 0.9995 = 109.945; fee 0.001 * 109.945 * 2 = 0.21989
    pos = paper.position(SYM)
    assert pos.amount == 0.0
    assert pos.realized_pnl == pytest.approx((109.945 - 100.05) * 2)  # 19.79
    assert pos.fees == pytest.approx(0.2001 + 0.21989)
    assert pos.realized_pnl - pos.fees == pytest.approx(19.79 - 0.41999)  # net of fees
    fills = sink.of("fill")
    assert [f["side"] for f in fills] == ["buy", "sell"]
    assert fills[0]["price"] == pytest.approx(100.05) and fills[0]["ts"] == T0 + MIN
    assert [o["status"] for o in sink.of("order")] == ["open", "open"]
    assert store.count("orders", "status='filled'") == 2


async def test_a_restart_continues_position_and_pending_orders(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    store = Store(path)
    first = PaperBroker(store, ListSink(), fee=0.0, slippage=0.0)
    await first.start()
    await first.submit(intent(-3.0, T0))  # a short
    await first.on_bar(bar(T0 + MIN, 50.0, open=50.0))
    await first.submit(intent(1.0, T0 + MIN))  # flip to long: pending at the "crash"
    store.close()

    store = Store(path)
    sink = ListSink()
    second = PaperBroker(store, sink, fee=0.0, slippage=0.0)
    await second.start()
    assert second.position(SYM) == Position(SYM, -3.0, 50.0, 0.0, 0.0)
    await second.on_bar(bar(T0 + 2 * MIN, 40.0, open=40.0))
    pos = second.position(SYM)
    # Bought 4: 3 cover the short at 40 (+30), 1 opens a long at 40.
    assert (pos.amount, pos.entry_price, pos.realized_pnl) == (1.0, 40.0, pytest.approx(30.0))
    assert len(sink.of("fill")) == 1


async def test_the_same_decision_never_orders_twice(tmp_path: Path) -> None:
    store, sink = Store(tmp_path / "s.sqlite"), ListSink()
    paper = PaperBroker(store, sink, fee=0.0, slippage=0.0)
    await paper.start()
    assert await paper.submit(intent(1.0, T0)) is not None
    await paper.on_bar(bar(T0 + MIN, 10.0))
    # The same bar and strategy again (e.g. replayed after a restart): same id, refused.
    assert await paper.submit(intent(5.0, T0)) is None
    assert store.count("orders") == 1
    assert await paper.submit(intent(1.0, T0 + MIN)) is None  # already there: nothing to do


def test_client_order_ids_are_deterministic_and_binance_legal() -> None:
    a = client_order_id(SYM, T0, "confidence", 0)
    assert a == client_order_id(SYM, T0, "confidence", 0)
    others = {
        client_order_id(SYM, T0 + MIN, "confidence", 0),
        client_order_id(SYM, T0, "risk", 0),
        client_order_id(SYM, T0, "confidence", 1),
        client_order_id("BTC/USDT", T0, "confidence", 0),
    }
    assert a not in others and len(others) == 4
    assert len(a) <= 36 and all(c.isalnum() or c in "-_" for c in a)


def test_position_accounting_on_increase_reduce_and_flip() -> None:
    pos = Position(SYM)
    pos = apply_fill(pos, Fill("a", SYM, "buy", 100.0, 1.0, 0.1, T0))
    pos = apply_fill(pos, Fill("b", SYM, "buy", 110.0, 1.0, 0.1, T0))
    assert (pos.amount, pos.entry_price) == (2.0, pytest.approx(105.0))
    pos = apply_fill(pos, Fill("c", SYM, "sell", 120.0, 0.5, 0.1, T0))
    assert (pos.amount, pos.entry_price, pos.realized_pnl) == (1.5, pytest.approx(105.0), pytest.approx(7.5))
    pos = apply_fill(pos, Fill("d", SYM, "sell", 100.0, 2.5, 0.1, T0))
    # 1.5 closed at -5 each (-7.5), then 1 short opened at 100.
    assert (pos.amount, pos.entry_price, pos.realized_pnl) == (-1.0, 100.0, pytest.approx(0.0))
    assert pos.fees == pytest.approx(0.4)


def test_negative_fee_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="fee and slippage"):
        PaperBroker(Store(tmp_path / "s.sqlite"), ListSink(), fee=-0.001)


async def test_a_fill_commits_with_its_event_or_not_at_all(tmp_path: Path) -> None:
    store, sink = Store(tmp_path / "s.sqlite"), ListSink()
    paper = PaperBroker(store, sink, fee=0.0, slippage=0.0)
    await paper.start()
    await paper.submit(intent(1.0, T0))
    sink.fail = True  # the outbox is broken: a fill without its event must not exist
    await paper.on_bar(bar(T0 + MIN, 10.0))  # a broken sink does not break the bar path
    assert store.get_position(SYM).amount == 0.0 and store.count("fills") == 0
    assert store.orders(client_order_id=client_order_id(SYM, T0, "confidence"))[0][0].status == OrderStatus.OPEN
    sink.fail = False
    await paper.on_bar(bar(T0 + 2 * MIN, 11.0))  # still pending: fills at the next price
    assert store.get_position(SYM).amount == 1.0 and paper.position(SYM).entry_price == 11.0
    assert [p["id"] for p in sink.of("fill")] == [f"fill-{client_order_id(SYM, T0, 'confidence')}"]


async def test_a_market_order_fills_at_the_live_quote_when_one_is_fresh(tmp_path: Path) -> None:
    class Quotes:
        def __init__(self) -> None:
            self.book: dict[str, tuple[float, float, int]] = {}

        def quote(self, symbol: str) -> tuple[float, float, int] | None:
            return self.book.get(symbol)

    quotes = Quotes()
    store, sink = Store(tmp_path / "s.sqlite"), ListSink()
    paper = PaperBroker(store, sink, fee=0.001, slippage=0.0005, quotes=quotes)
    await paper.start()
    quotes.book[SYM] = (99.0, 101.0, T0 + MIN - 5)  # a quote from before the decision bar closed: stale
    await paper.submit(intent(1.0, T0))
    assert paper.position(SYM).amount == 0.0  # falls back to the next bar's open
    await paper.on_bar(bar(T0 + MIN, 50.0, open=50.0))
    assert paper.position(SYM).entry_price == pytest.approx(50.0 * 1.0005)
    quotes.book[SYM] = (99.0, 101.0, T0 + 2 * MIN + 3)  # fresh: sell at the bid at once
    await paper.submit(intent(0.0, T0 + MIN))
    pos = paper.position(SYM)
    assert pos.amount == 0.0 and pos.realized_pnl == pytest.approx(99.0 * 0.9995 - 50.0 * 1.0005)
    fill = sink.of("fill")[-1]
    assert (fill["side"], fill["price"], fill["ts"]) == ("sell", pytest.approx(99.0 * 0.9995), T0 + 2 * MIN + 3)
    quotes.book[SYM] = (99.0, 101.0, T0 + 3 * MIN)
    await paper.submit(intent(2.0, T0 + 2 * MIN))  # a buy pays the ask
    assert paper.position(SYM).entry_price == pytest.approx(101.0 * 1.0005)


async def test_a_late_decision_fills_at_the_same_next_price(tmp_path: Path) -> None:
    # Live: the next 1s bars arrive while the models still run; the fill must not move.
    store, sink = Store(tmp_path / "s.sqlite"), ListSink()
    paper = PaperBroker(store, sink, fee=0.0, slippage=0.0)
    await paper.start()
    for k, price in enumerate([50.0, 51.0, 52.0]):
        await paper.on_bar(bar(T0 + MIN - 1000 + k * 1000, price, timeframe="1s"))
    await paper.submit(intent(1.0, T0))  # decided at the close of T0 (T0 + 1 min)
    assert paper.position(SYM) == Position(SYM, 1.0, 51.0, 0.0, 0.0)  # the 1s bar at T0 + 1 min
    assert sink.of("fill")[0]["ts"] == T0 + MIN

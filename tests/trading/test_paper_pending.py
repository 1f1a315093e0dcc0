"""Paper broker: "an order is pending for this symbol" without a SQLite read per decision, and
still right when the order's decision was rolled back or its execution raised (real SQLite)."""

from __future__ import annotations

from pathlib import Path

import pytest

from daemon.store import Store
from daemon.trading.paper import PaperBroker
from tests.engine_parts import T0, ListSink, bar
from tests.trading.test_paper import MIN, SYM, intent


async def test_an_order_prepared_in_the_open_cycle_blocks_a_second_one(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.sqlite")
    paper = PaperBroker(store, ListSink(), fee=0.0, slippage=0.0)
    await paper.start()
    with store.transaction():
        first = paper.prepare(intent(1.0, T0))
        second = paper.prepare(intent(2.0, T0, strategy="other"))  # same cycle, uncommitted
    assert first is not None and second is None
    await paper.execute(first)  # no next price yet: it waits
    assert paper.prepare(intent(3.0, T0 + MIN)) is None  # still pending
    await paper.on_bar(bar(T0 + MIN, 100.0, open=100.0))
    assert paper.position(SYM).amount == 1.0
    assert paper.prepare(intent(0.0, T0 + MIN)) is not None  # filled: the symbol trades again


async def test_a_rolled_back_decision_does_not_block_the_symbol(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.sqlite")
    paper = PaperBroker(store, ListSink(), fee=0.0, slippage=0.0)
    await paper.start()
    with pytest.raises(RuntimeError), store.transaction():
        assert paper.prepare(intent(1.0, T0)) is not None
        raise RuntimeError("the decision failed after its order was stored")
    assert store.count("orders") == 0
    again = paper.prepare(intent(1.0, T0))  # the same decision, decided again: not blocked
    assert again is not None and store.count("orders") == 1


async def test_an_order_whose_execution_raised_still_blocks_the_symbol(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.sqlite")
    paper = PaperBroker(store, ListSink(), fee=0.0, slippage=0.0)
    await paper.start()
    await paper.on_bar(bar(T0 + MIN, 100.0, open=100.0))  # the next price is already known
    order = paper.prepare(intent(1.0, T0))
    assert order is not None

    def broken(*args: object) -> None:
        raise OSError("disk full")

    paper._fill = broken  # type: ignore[method-assign]
    with pytest.raises(OSError):
        await paper.execute(order)
    assert store.count("orders", "status='open'") == 1  # committed, never filled
    assert paper.prepare(intent(2.0, T0 + MIN)) is None  # deciding on top of it would double the trade

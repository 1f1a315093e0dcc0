"""Typed rows out: what the dashboard, the registry and the replay start read back from the store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon.domain import Bar, Fill, Order, OrderStatus, Prediction, Side, Signal
from daemon.store import SignalMark, Store, StoredOrder


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "s.sqlite")
    yield s
    s.close()


def test_newest_bar_per_timeframe(store: Store) -> None:
    assert store.newest_bar_ts() == {}
    store.add_bars([Bar(s, tf, ts, 1, 1, 1, 1, 1) for s, tf, ts in [("A", "1m", 60_000), ("B", "1m", 120_000), ("A", "1h", 0)]])
    assert store.newest_bar_ts() == {"1m": 120_000, "1h": 0}


def test_closes_at_the_wanted_times_only(store: Store) -> None:
    store.add_bars([Bar("A", "1m", ts, 1, 1, 1, float(ts), 1) for ts in range(0, 700 * 60_000, 60_000)])
    wanted = list(range(0, 700 * 60_000, 120_000)) + [10**15]  # more than one chunk; one time never stored
    closes = store.closes_at("A", "1m", wanted)
    assert closes == {ts: float(ts) for ts in wanted[:-1]}
    assert store.closes_at("A", "1h", wanted) == {} and store.closes_at("A", "1m", []) == {}


def test_signal_rows_filter_and_keep_their_types(store: Store) -> None:
    for ts, symbol in [(60_000, "A"), (120_000, "A"), (120_000, "B")]:
        store.add_signal(Signal(symbol, ts, Side.SHORT, 0.6, 2.0, "s", ("r1", "r2"), {"m": "v"}), 4.5, 1)
    rows = store.signal_rows(symbol="A")
    assert [(r.id, r.signal.bar_ts) for r in rows] == [(2, 120_000), (1, 60_000)]  # newest first
    assert rows[0].signal == Signal("A", 120_000, Side.SHORT, 0.6, 2.0, "s", ("r1", "r2"), {"m": "v"})
    assert rows[0].latency_ms == 4.5
    assert [r.id for r in store.signal_rows(since_ts=120_000)] == [3, 2]
    assert [r.id for r in store.signal_rows(symbol="A", bar_ts=60_000)] == [1]
    assert [r.id for r in store.signal_rows(limit=1)] == [3]
    assert store.signal_marks("A", 0, 5) == [
        SignalMark(2, 120_000, Side.SHORT, 0.6, 2.0, "s"),
        SignalMark(1, 60_000, Side.SHORT, 0.6, 2.0, "s"),
    ]
    assert [m.id for m in store.signal_marks("A", 120_000, 5)] == [2] and [m.id for m in store.signal_marks("A", 0, 1)] == [2]
    assert store.signals(symbol="B") == [(3, Signal("B", 120_000, Side.SHORT, 0.6, 2.0, "s", ("r1", "r2"), {"m": "v"}))]


def test_latest_predictions_are_those_of_the_newest_bar(store: Store) -> None:
    def prediction(model: str, ts: int, p_long: float) -> Prediction:
        return Prediction(
            model, "v1", ts, {"p_short": 0.1, "p_flat": 0.9 - p_long, "p_long": p_long, "return": 0.01}, Side.LONG, p_long, 0.5
        )

    assert store.latest_predictions("A") == []
    store.add_predictions("A", [prediction("b", 60_000, 0.6), prediction("a", 60_000, 0.7)], 1)
    store.add_predictions("A", [prediction("b", 120_000, 0.8)], 2)
    assert [(p.bar_ts, p.model) for p in store.model_predictions("A", "b", 0, 120_000)] == [(60_000, "b"), (120_000, "b")]
    assert [p.bar_ts for p in store.model_predictions("A", "b", 60_000, 10**15)] == [120_000]
    [row] = store.latest_predictions("A")
    assert (row.bar_ts, row.model, row.side, row.confidence) == (120_000, "b", Side.LONG, 0.8)
    assert row.scores["return"] == 0.01 and row.scores["p_long"] == pytest.approx(0.8, rel=1e-9)


def test_recent_orders_carry_their_signal_reasons(store: Store) -> None:
    store.add_signal(Signal("A", 60_000, Side.LONG, 0.7, 1.0, "s", ("why",)), 1.0, 1)
    store.put_order(Order("c1", "A", "buy", "market", 1.0, None, 60_000), 10)
    store.put_order(Order("c2", "A", "sell", "market", 1.0, None, 120_000), 20)  # a flatten: no signal
    store.set_order_status("c1", OrderStatus.FILLED, 30, exchange_id="x1", error=None)
    rows = store.recent_orders(5)
    assert [r.order.client_order_id for r in rows] == ["c2", "c1"]
    assert rows[1] == StoredOrder(
        Order("c1", "A", "buy", "market", 1.0, None, 60_000, OrderStatus.FILLED, "x1"), None, 10, "s", ("why",)
    )
    assert (rows[0].strategy, rows[0].reasons) == (None, ())
    assert [r.order.client_order_id for r in store.recent_orders(1)] == ["c2"]


def test_fills_newest_since_and_by_time(store: Store) -> None:
    for cid, ts in [("a", 300), ("b", 100), ("c", 200)]:
        store.add_fill(Fill(cid, "A", "buy", 1.0, 1.0, 0.0, ts))
    assert [f.client_order_id for f in store.fills()] == ["a", "b", "c"]  # as stored
    assert [f.client_order_id for f in store.fills(newest=2)] == ["b", "c"]
    assert [f.client_order_id for f in store.fills(since_ts=200)] == ["a", "c"]
    assert [f.client_order_id for f in store.fills_by_time(2)] == ["b", "c"]  # bar time


def test_registry_paths_and_the_last_decided_bar(store: Store) -> None:
    first = store.record_model("m", "v1", "/old/path", "current", "{}", 0)
    assert store.set_model_paths([(first, "file:///old/path")]) == 1
    row = store.current_model("m")
    assert row is not None and row["path"] == "file:///old/path"
    assert store.last_decided_ts("A") is None
    store.mark_decided("A", "1m", 60_000, 0, 1)
    store.mark_decided("A", "1m", 120_000, 0, 1)
    assert store.last_decided_ts("A") == 120_000
    assert not store.in_transaction()
    with store.transaction():
        assert store.in_transaction()

"""What happens once is unique in SQL: a second row for a bar, a decision, a prediction, a
signal, an order intent, a fill, an outbox delivery or a current model is refused by SQLite
itself, whoever writes it (raw SQL here, past every method); the store's methods answer a
repeat with "not added" instead."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon.domain import Bar, Fill, Order, Prediction, Side, Signal
from daemon.store import Reason, Store


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "s.sqlite")
    yield s
    s.close()


# (what must not happen twice, the first row, the second one: same key, other values)
REPEATS = [
    (
        "a bar stored twice",
        "INSERT INTO bars (symbol, timeframe, ts, close) VALUES ('ETH/USDT', '1m', 60000, 1.0)",
        "INSERT INTO bars (symbol, timeframe, ts, close) VALUES ('ETH/USDT', '1m', 60000, 2.0)",
    ),
    (
        "a bar decided twice",
        "INSERT INTO decisions (symbol, timeframe, bar_ts, reason) VALUES ('ETH/USDT', '1m', 60000, 'decided')",
        "INSERT INTO decisions (symbol, timeframe, bar_ts, reason) VALUES ('ETH/USDT', '1m', 60000, 'missed')",
    ),
    (
        "a model predicting a bar twice",
        "INSERT INTO predictions (symbol, model, bar_ts, version) VALUES ('ETH/USDT', 'mtf', 60000, 'v1')",
        "INSERT INTO predictions (symbol, model, bar_ts, version) VALUES ('ETH/USDT', 'mtf', 60000, 'v2')",
    ),
    (
        "a strategy signalling a bar twice",
        "INSERT INTO signals (symbol, strategy, bar_ts, side) VALUES ('ETH/USDT', 's', 60000, 1)",
        "INSERT INTO signals (symbol, strategy, bar_ts, side) VALUES ('ETH/USDT', 's', 60000, -1)",
    ),
    (
        "a signal event published twice",
        "INSERT INTO signals (symbol, strategy, bar_ts, event_id) VALUES ('ETH/USDT', 'a', 60000, 'signal-1')",
        "INSERT INTO signals (symbol, strategy, bar_ts, event_id) VALUES ('ETH/USDT', 'b', 60000, 'signal-1')",
    ),
    (
        "an order intent stored (and sent) twice",
        "INSERT INTO orders (client_order_id, symbol, amount) VALUES ('sigd-abc-0', 'ETH/USDT', 1.0)",
        "INSERT INTO orders (client_order_id, symbol, amount) VALUES ('sigd-abc-0', 'ETH/USDT', 2.0)",
    ),
    (
        "an order filled twice",
        "INSERT INTO fills (client_order_id, price, event_id) VALUES ('sigd-abc-0', 1.0, 'fill-sigd-abc-0')",
        "INSERT INTO fills (client_order_id, price, event_id) VALUES ('sigd-abc-0', 2.0, 'fill-other')",
    ),
    (
        "a fill event published twice",
        "INSERT INTO fills (client_order_id, event_id) VALUES ('a', 'fill-a')",
        "INSERT INTO fills (client_order_id, event_id) VALUES ('b', 'fill-a')",
    ),
    (
        "an event queued twice for a channel",
        "INSERT INTO outbox (id, event_id, channel, status) VALUES ('signal-1/log', 'signal-1', 'log', 'pending')",
        "INSERT INTO outbox (id, event_id, channel, status) VALUES ('signal-1/log#2', 'signal-1', 'log', 'pending')",
    ),
    (
        "two current models of one name",
        "INSERT INTO models (name, version, status) VALUES ('m', 'v1', 'current')",
        "INSERT INTO models (name, version, status) VALUES ('m', 'v2', 'current')",
    ),
    (
        "two previous models of one name",
        "INSERT INTO models (name, version, status) VALUES ('m', 'v1', 'previous')",
        "INSERT INTO models (name, version, status) VALUES ('m', 'v2', 'previous')",
    ),
    (
        "an outbox row delivered twice (a finished row set pending again)",
        "INSERT INTO outbox (id, event_id, channel, status) VALUES ('signal-1/log', 'signal-1', 'log', 'sent')",
        "UPDATE outbox SET status='pending' WHERE id='signal-1/log'",
    ),
]


@pytest.mark.parametrize(("what", "first", "second"), REPEATS, ids=[r[0] for r in REPEATS])
def test_sqlite_refuses_the_second(store: Store, what: str, first: str, second: str) -> None:
    store.conn.execute(first)
    before = store.conn.execute("SELECT total_changes()").fetchone()[0]
    with pytest.raises(sqlite3.IntegrityError):
        store.conn.execute(second)
    assert store.conn.execute("SELECT total_changes()").fetchone()[0] == before, what


def test_what_may_repeat_still_does(store: Store) -> None:
    # The keys are no wider than the invariants: other symbols, bars, models and statuses pass.
    conn = store.conn
    conn.execute("INSERT INTO models (name, version, status) VALUES ('m', 'v1', 'current'), ('n', 'v1', 'current')")
    conn.execute("INSERT INTO models (name, version, status) VALUES ('m', 'v2', 'rejected'), ('m', 'v3', 'rejected')")
    conn.execute("INSERT INTO fills (client_order_id, event_id) VALUES (NULL, NULL), (NULL, NULL)")
    conn.execute("INSERT INTO outbox (id, event_id, channel, status) VALUES ('e/log', 'e', 'log', 'sent')")
    conn.execute("UPDATE outbox SET status='sent', sent_ms=5 WHERE id='e/log'")  # the same status again is no change
    conn.execute("INSERT INTO outbox (id, event_id, channel, status) VALUES ('f/log', 'f', 'log', 'pending')")
    conn.execute("UPDATE outbox SET status='dead' WHERE id='f/log'")
    assert store.count("models") == 4 and store.count("fills") == 2


def test_the_methods_answer_a_repeat_with_not_added(store: Store) -> None:
    bar = Bar("ETH/USDT", "1m", 60_000, 1.0, 2.0, 0.5, 1.5, 3.0)
    store.add_bars([bar, bar])
    assert store.count("bars") == 1
    assert store.mark_decided("ETH/USDT", "1m", 60_000, 0, 1) is True
    assert store.mark_decided("ETH/USDT", "1m", 60_000, 0, 2, Reason.MISSED) is False
    prediction = Prediction("mtf", "v1", 60_000, {"p_short": 0.2, "p_flat": 0.3, "p_long": 0.5}, Side.LONG, 0.5, 0.4)
    store.add_predictions("ETH/USDT", [prediction, prediction], 1)
    assert store.count("predictions") == 1
    signal = Signal("ETH/USDT", 60_000, Side.LONG, 0.7, 1.5, "s", ("up",))
    assert store.add_signal(signal, 10.0, 1) == 1 and store.add_signal(signal, 10.0, 1) is None
    order = Order("sigd-abc-0", "ETH/USDT", "buy", "market", 1.0, None, 60_000)
    assert store.put_order(order, 1) is True and store.put_order(order, 2) is False
    fill = Fill("sigd-abc-0", "ETH/USDT", "buy", 1.5, 1.0, 0.01, 120_000)
    assert store.add_fill(fill) is True and store.add_fill(fill) is False
    row = {"id": "signal-1/log", "event_id": "signal-1", "channel": "log", "status": "pending", "created_ms": 1}
    assert store.add_outbox([row, row]) == 1
    store.record_model("m", "v1", "", "current", "{}", 0)
    store.record_model("m", "v2", "", "current", "{}", 0)
    store.record_model("m", "v3", "", "current", "{}", 0)
    assert [r["status"] for r in store.model_rows("m")] == ["current", "previous", "retired"]

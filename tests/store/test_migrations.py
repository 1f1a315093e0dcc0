"""Migrations from every released schema (tests/store/data/schema_<commit>.sql, dumped from what
that commit's Store created): a database written by each, with rows in every table (repeats
too, where that schema let them in), opens at SCHEMA_VERSION with the same tables, indexes and
triggers as a new database, its rows kept and its repeats resolved the documented way."""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from daemon.health import FAILURES
from daemon.store import MIGRATIONS, SCHEMA_VERSION, Reason, Store
from daemon.store.migrations import migrate

DATA = Path(__file__).parent / "data"
RELEASED = sorted(DATA.glob("schema_*.sql"))


def _version(script: Path) -> int:
    found = re.search(r"PRAGMA user_version = (\d+);", script.read_text())
    assert found, script
    return int(found.group(1))


def _columns(conn: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}


def _tables(conn: sqlite3.Connection) -> set[str]:
    return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def _try(conn: sqlite3.Connection, sql: str, params: list[Any]) -> bool:
    """Insert a row the old schema may refuse (a repeat where it had a unique key already)."""
    try:
        conn.execute(sql, params)
    except sqlite3.IntegrityError:
        return False
    return True


def _old_database(path: Path, script: Path) -> dict[str, bool]:
    """A database as the sigd of `script` left it: its schema and rows in every table; which
    repeats it took."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.executescript(script.read_text())
    took: dict[str, bool] = {}
    conn.executemany("INSERT INTO bars VALUES ('ETH/USDT', '1m', ?, 1.0, 2.0, 0.5, 1.5, 10.0)", [(60_000,), (120_000,)])
    if "p_short" in _columns(conn, "predictions"):
        sql = (
            "INSERT INTO predictions (symbol, bar_ts, model, version, p_short, p_flat, p_long, side, confidence, "
            "threshold, inference_ms, created_ms) VALUES ('ETH/USDT', ?, 'mtf', ?, 0.2, 0.3, 0.5, 1, 0.5, 0.4, 3.0, 1)"
        )
    else:
        sql = (
            "INSERT INTO predictions (symbol, bar_ts, model, version, scores, side, confidence, threshold, inference_ms, "
            """created_ms) VALUES ('ETH/USDT', ?, 'mtf', ?, '{"p_short": 0.2, "p_flat": 0.3, "p_long": 0.5}', 1, 0.5, 0.4, 3.0, 1)"""
        )
    conn.execute(sql, [60_000, "v1"])
    took["prediction"] = _try(conn, sql, [60_000, "v-repeat"])
    signal = (
        "INSERT INTO signals (symbol, bar_ts, strategy, side, confidence, price, reasons, model_versions, latency_ms, "
        "created_ms, event_id) VALUES ('ETH/USDT', 60000, ?, 1, 0.7, 1.5, '[\"up\"]', '{\"mtf\": \"v1\"}', 12.5, 1, ?)"
    )
    conn.execute(signal, ["s", "signal-1"])
    took["signal"] = _try(conn, signal, ["s", "signal-2"])
    conn.execute(signal, ["other", "signal-1"])  # an event id twice: never written, but no key refused it
    conn.execute(
        "INSERT INTO orders VALUES ('cid-1', 'ETH/USDT', 'buy', 'market', 1.0, NULL, 60000, 'filled', 'x1', NULL, 5, 6, NULL)"
    )
    fill = "INSERT INTO fills (client_order_id, symbol, side, price, amount, fee, ts, event_id) VALUES (?, 'ETH/USDT', 'buy', ?, 1.0, 0.01, 120000, ?)"
    conn.execute(fill, ["cid-1", 1.5, "fill-cid-1"])
    conn.execute(fill, ["cid-1", 9.9, "fill-cid-1"])  # a second fill of the order: the first stays
    conn.execute(fill, ["cid-2", 1.6, "fill-cid-2"])
    conn.execute("INSERT INTO positions VALUES ('ETH/USDT', 1.0, 1.5, 0.0, 0.01, 7)")
    outbox = "INSERT INTO outbox VALUES (?, 'signal-1', ?, 'signal', '{}', 'sent', 1, 0, '', ?, 9)"
    conn.execute(outbox, ["signal-1/log", "log", 1])
    conn.execute(outbox, ["signal-1/log-again", "log", 2])  # the same (event, channel) under another id
    conn.execute(outbox, ["signal-1/webhook:a", "webhook:a", 3])
    model = "INSERT INTO models (name, version, path, status, metrics, created_ms) VALUES ('m', ?, '', ?, '{}', 0)"
    for version, status in (("v1", "previous"), ("v2", "current"), ("v3", "previous"), ("v4", "current")):
        conn.execute(model, [version, status])
    conn.execute("INSERT INTO kv VALUES ('paused', '1')")
    if "decisions" in _tables(conn):
        if "timeframe" in _columns(conn, "decisions"):
            conn.execute("INSERT INTO decisions VALUES ('ETH/USDT', '1m', 60000, 'decided', '', 1, 1)")
        else:
            conn.execute("INSERT INTO decisions VALUES ('ETH/USDT', 60000, 1, 1)")
    conn.close()
    return took


def _shape(conn: sqlite3.Connection) -> dict[str, Any]:
    """Tables' columns, indexes (unique, partial, columns) and triggers: what a schema is."""
    shape: dict[str, Any] = {}
    for table in sorted(_tables(conn)):
        indexes = {}
        for _, name, unique, origin, partial in conn.execute(f"PRAGMA index_list({table})"):
            cols = [r[2] for r in conn.execute(f"PRAGMA index_info([{name}])")]
            indexes[name] = (unique, origin, partial, cols)
        shape[table] = ([tuple(r[1:]) for r in conn.execute(f"PRAGMA table_info({table})")], indexes)
    shape["triggers"] = sorted(
        " ".join(r[1].split()) for r in conn.execute("SELECT name, sql FROM sqlite_master WHERE type='trigger'")
    )
    return shape


def test_every_released_schema_is_kept_here() -> None:
    # A new step makes the schema before it a released one to migrate from: dump it here.
    versions = {_version(s) for s in RELEASED}
    assert versions == set(range(SCHEMA_VERSION)), f"released schema dumps cover {sorted(versions)}"
    assert [n for n, _ in MIGRATIONS] == list(range(1, SCHEMA_VERSION + 1))


@pytest.mark.parametrize("script", RELEASED, ids=lambda p: p.stem)
def test_a_released_database_migrates_to_the_new_schema_with_its_rows(tmp_path: Path, script: Path) -> None:
    old, new = tmp_path / "old.sqlite", tmp_path / "new.sqlite"
    took = _old_database(old, script)
    store, fresh = Store(old), Store(new)
    assert store.schema_version() == fresh.schema_version() == SCHEMA_VERSION
    assert _shape(store.conn) == _shape(fresh.conn)
    fresh.close()

    assert [b.ts for b in store.latest_bars("ETH/USDT", "1m", 5)] == [60_000, 120_000]
    predictions = store.latest_predictions("ETH/USDT")
    assert [(p.version, p.scores) for p in predictions] == [("v1", {"p_short": 0.2, "p_flat": 0.3, "p_long": 0.5})]
    assert store.prediction_rows("ETH/USDT") == [(60_000, "mtf", "v1", 0.2, 0.3, 0.5, 1, 0.5, 0.4)]
    signals = store.signal_rows()
    # The first of each repeat stays: (symbol, strategy, bar) and, here, event id.
    assert [(r.signal.strategy, r.signal.reasons, r.latency_ms) for r in signals] == [("s", ("up",), 12.5)]
    assert took["prediction"] == took["signal"] == script.stem.endswith("4b2c0b5")
    assert [(f.client_order_id, f.price) for f in store.fills()] == [("cid-1", 1.5), ("cid-2", 1.6)]
    assert [o.client_order_id for o, _ in store.orders()] == ["cid-1"]
    assert store.get_position("ETH/USDT").entry_price == 1.5
    assert [r["id"] for r in store.outbox_rows()] == ["signal-1/log", "signal-1/webhook:a"]
    assert [(r["version"], r["status"]) for r in store.model_rows("m")] == [
        ("v4", "current"),
        ("v3", "previous"),
        ("v2", "retired"),
        ("v1", "retired"),
    ]
    assert store.get_kv("paused") == "1"
    decisions = [(r["timeframe"], r["bar_ts"], r["reason"]) for r in store.decision_rows()]
    if _version(script) == 0 and "decisions" not in script.read_text():
        assert decisions == []
    else:
        assert decisions == [("1m" if _version(script) else "", 60_000, Reason.DECIDED)]
    store.close()

    again = Store(old)  # opening again runs no step twice and keeps every row
    assert migrate(again.conn, old, again.transaction) == []
    assert len(again.fills()) == 2 and len(again.model_rows()) == 4
    again.close()


def test_a_new_database_runs_every_step_once(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "s.sqlite", isolation_level=None)

    @contextmanager
    def transaction() -> Iterator[None]:
        conn.execute("BEGIN")
        yield
        conn.execute("COMMIT")

    assert migrate(conn, tmp_path / "s.sqlite", transaction) == list(range(1, SCHEMA_VERSION + 1))
    conn.close()
    store = Store(tmp_path / "s.sqlite")
    assert migrate(store.conn, store.path, store.transaction) == []
    assert store.schema_version() == SCHEMA_VERSION
    store.close()


def test_a_step_that_fails_leaves_the_database_at_the_version_before(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    _old_database(path, DATA / "schema_596f1bc.sql")
    with sqlite3.connect(path) as conn:  # a table the step creates an index on is gone: the step raises
        conn.execute("DROP TABLE outbox")
    conn.close()
    try:
        with pytest.raises(sqlite3.OperationalError, match="no such table: outbox"):
            Store(path)
    finally:
        FAILURES.clear()  # the failed step counted as a failed commit (health red): not this test's to keep
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
    assert [r[0] for r in conn.execute("SELECT COUNT(*) FROM fills")] == [3]  # its deletes were rolled back
    conn.close()


def test_released_scores_keep_their_values(tmp_path: Path) -> None:
    # The 4b2c0b5 columns fold into JSON that the dashboard reads back as numbers.
    path = tmp_path / "old.sqlite"
    _old_database(path, DATA / "schema_4b2c0b5.sql")
    store = Store(path)
    raw = store.conn.execute("SELECT scores FROM predictions").fetchone()[0]
    assert json.loads(raw) == {"p_short": 0.2, "p_flat": 0.3, "p_long": 0.5}
    store.close()


def test_two_processes_opening_an_old_database_at_once_migrate_it_once(tmp_path: Path) -> None:
    # The daemon upgrading while `sigd status` opens the same file: the second process read the
    # old version, then waits for the first's write lock, and then finds the step done.
    path = tmp_path / "old.sqlite"
    _old_database(path, DATA / "schema_596f1bc.sql")
    conn = sqlite3.connect(path, isolation_level=None)
    locks = []

    @contextmanager
    def transaction() -> Iterator[None]:
        if not locks:
            Store(path).close()  # the other process migrates between this one's read and its lock
        locks.append(1)
        conn.execute("BEGIN IMMEDIATE")
        yield
        conn.execute("COMMIT")

    assert migrate(conn, path, transaction) == [] and locks == [1]
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    conn.close()

"""Numbered schema migrations: a state database written by the sigd before them (PRAGMA
user_version 0, decision rows keyed (symbol, bar_ts) without a reason) opens, is migrated once
to SCHEMA_VERSION with its rows kept, and ends up with the same decisions table a new database
gets; the engine then gives the old rows its trigger timeframe and never decides them again."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from daemon.config import ConfigError
from daemon.store import SCHEMA_VERSION, Reason, Store
from tests.engine_parts import series
from tests.trading.test_engine import CLOSES, feed, make_engine

V0 = Path(__file__).parent.parent / "store" / "data" / "schema_84dcdd1.sql"  # the last schema before numbering


def _v0_database(path: Path, decided_ts: list[int]) -> None:
    with sqlite3.connect(path) as conn:
        conn.executescript(V0.read_text())
        conn.executemany(
            "INSERT INTO decisions (symbol, bar_ts, signals, created_ms) VALUES ('ETH/USDT', ?, 0, 1)",
            [(ts,) for ts in decided_ts],
        )
    conn.close()


def _table_shape(conn: sqlite3.Connection, table: str) -> list[tuple]:
    return [tuple(r[1:]) for r in conn.execute(f"PRAGMA table_info({table})").fetchall()]


def test_a_v0_database_is_migrated_once_to_the_new_schema(tmp_path: Path) -> None:
    old, new = tmp_path / "old.sqlite", tmp_path / "new.sqlite"
    bars = series(CLOSES[:3])
    _v0_database(old, [b.ts for b in bars])
    store = Store(old)
    assert store.schema_version() == SCHEMA_VERSION
    fresh = Store(new)
    assert fresh.schema_version() == SCHEMA_VERSION
    assert _table_shape(store.db.conn, "decisions") == _table_shape(fresh.db.conn, "decisions")
    rows = store.decision_rows("ETH/USDT")
    assert [(r["bar_ts"], r["timeframe"], r["reason"]) for r in rows] == [(b.ts, "", Reason.DECIDED) for b in bars]
    # (symbol, timeframe, bar_ts) is unique in SQL, whoever writes.
    with pytest.raises(sqlite3.IntegrityError):
        store.db.conn.execute(
            "INSERT INTO decisions (symbol, timeframe, bar_ts, reason) VALUES ('ETH/USDT', '', ?, 'x')", [bars[0].ts]
        )
    store.close()
    again = Store(old)  # opening again runs no step twice
    assert again.schema_version() == SCHEMA_VERSION and len(again.decision_rows()) == len(bars)
    again.close()


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "future.sqlite"
    Store(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(ConfigError, match="store.path: .* newer than this sigd knows"):
        Store(path)


async def test_the_engine_adopts_migrated_rows_and_decides_them_never_again(tmp_path: Path) -> None:
    path = tmp_path / "sigd.sqlite"
    bars = series(CLOSES[:5])
    _v0_database(path, [b.ts for b in bars[:3]])
    engine, buffers, _ = make_engine(tmp_path, store=Store(path))
    await engine.start()
    await feed(engine, buffers, bars)  # the first three were decided before the upgrade
    await engine.close()
    mtf = engine.predictors["mtf"]
    assert mtf.calls == [b.ts for b in bars[3:]]  # type: ignore[attr-defined]
    rows = engine.store.decision_rows("ETH/USDT")
    assert [(r["bar_ts"], r["timeframe"]) for r in rows] == [(b.ts, "1m") for b in bars]

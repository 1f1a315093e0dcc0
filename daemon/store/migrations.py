"""Numbered schema migrations: the only place that creates or changes the state database's tables.

`PRAGMA user_version` holds the number of the newest step applied. Opening a database runs
the steps numbered above it, oldest first, each in its own transaction together with the
`user_version` it sets, so a step is applied once or not at all. A new database is an empty
one at version 0 and runs every step: there is no second copy of the schema to drift.

Released schemas (each reproduced by tests/store/data/schema_<commit>.sql):
- before numbering, 2026-11-21 (4b2c0b5): version 0, predictions with p_short/p_flat/p_long
  columns, no decisions table, no unique keys beyond the primary keys;
- before numbering, 2026-11-30 (84dcdd1): version 0, predictions.scores (JSON), decisions keyed
  (symbol, bar_ts), one prediction per (symbol, model, bar) and one signal per (symbol,
  strategy, bar) unique;
- version 1, 2026-12-07 (596f1bc): decisions keyed (symbol, timeframe, bar_ts) with a reason.

Append only: a released step never changes, since databases in the field already ran it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

from daemon.config import ConfigError

# The tables as the last sigd before numbering created them (84dcdd1): step 1 starts from here.
_V0_PREDICTIONS = """CREATE TABLE IF NOT EXISTS "predictions" ("id" INTEGER PRIMARY KEY NOT NULL, "symbol" TEXT,
  "bar_ts" INTEGER, "model" TEXT, "version" TEXT, "scores" TEXT, "side" INTEGER, "confidence" REAL, "threshold" REAL,
  "inference_ms" REAL, "created_ms" INTEGER)"""
_V0_TABLES = f"""
CREATE TABLE IF NOT EXISTS "bars" ("symbol" TEXT NOT NULL, "timeframe" TEXT NOT NULL, "ts" INTEGER NOT NULL,
  "open" REAL, "high" REAL, "low" REAL, "close" REAL, "volume" REAL, PRIMARY KEY ("symbol", "timeframe", "ts"));
{_V0_PREDICTIONS};
CREATE TABLE IF NOT EXISTS "signals" ("id" INTEGER PRIMARY KEY NOT NULL, "symbol" TEXT, "bar_ts" INTEGER,
  "strategy" TEXT, "side" INTEGER, "confidence" REAL, "price" REAL, "reasons" TEXT, "model_versions" TEXT,
  "latency_ms" REAL, "created_ms" INTEGER, "event_id" TEXT);
CREATE TABLE IF NOT EXISTS "orders" ("client_order_id" TEXT PRIMARY KEY NOT NULL, "symbol" TEXT, "side" TEXT,
  "type" TEXT, "amount" REAL, "price" REAL, "bar_ts" INTEGER, "status" TEXT, "exchange_id" TEXT, "error" TEXT,
  "created_ms" INTEGER, "updated_ms" INTEGER, "not_before_ts" INTEGER);
CREATE TABLE IF NOT EXISTS "fills" ("id" INTEGER PRIMARY KEY NOT NULL, "client_order_id" TEXT, "symbol" TEXT,
  "side" TEXT, "price" REAL, "amount" REAL, "fee" REAL, "ts" INTEGER, "event_id" TEXT);
CREATE TABLE IF NOT EXISTS "positions" ("symbol" TEXT PRIMARY KEY NOT NULL, "amount" REAL, "entry_price" REAL,
  "realized_pnl" REAL, "fees" REAL, "updated_ms" INTEGER);
CREATE TABLE IF NOT EXISTS "outbox" ("id" TEXT PRIMARY KEY NOT NULL, "event_id" TEXT, "channel" TEXT, "type" TEXT,
  "payload" TEXT, "status" TEXT, "attempts" INTEGER, "next_attempt_ms" INTEGER, "last_error" TEXT,
  "created_ms" INTEGER, "sent_ms" INTEGER);
CREATE TABLE IF NOT EXISTS "models" ("id" INTEGER PRIMARY KEY NOT NULL, "name" TEXT, "version" TEXT, "path" TEXT,
  "status" TEXT, "metrics" TEXT, "created_ms" INTEGER);
CREATE TABLE IF NOT EXISTS "kv" ("key" TEXT PRIMARY KEY NOT NULL, "value" TEXT);
CREATE TABLE IF NOT EXISTS "decisions" ("symbol" TEXT NOT NULL, "bar_ts" INTEGER NOT NULL, "signals" INTEGER,
  "created_ms" INTEGER, PRIMARY KEY ("symbol", "bar_ts"));
CREATE INDEX IF NOT EXISTS "idx_predictions_bar_ts" ON "predictions" ("bar_ts");
CREATE INDEX IF NOT EXISTS "idx_signals_bar_ts" ON "signals" ("bar_ts");
CREATE INDEX IF NOT EXISTS "idx_orders_status" ON "orders" ("status");
CREATE INDEX IF NOT EXISTS "idx_fills_client_order_id" ON "fills" ("client_order_id");
CREATE INDEX IF NOT EXISTS "idx_outbox_channel_status_next_attempt_ms" ON "outbox" ("channel", "status", "next_attempt_ms");
CREATE INDEX IF NOT EXISTS "idx_models_name_status" ON "models" ("name", "status");
"""


def _keep_first(conn: sqlite3.Connection, table: str, key: str, order: str = "rowid") -> None:
    """Delete the rows of `table` that repeat an earlier row's `key` columns (the first stays),
    then make `key` unique. Rows with a NULL in the key are left alone (SQL: never equal)."""
    cols = [c.strip() for c in key.split(",")]
    not_null = " AND ".join(f"{c} IS NOT NULL" for c in cols)
    conn.execute(
        f"DELETE FROM [{table}] WHERE {not_null} AND {order} NOT IN "
        f"(SELECT MIN({order}) FROM [{table}] WHERE {not_null} GROUP BY {key})"
    )
    conn.execute(f"CREATE UNIQUE INDEX IF NOT EXISTS [uq_{table}_{'_'.join(cols)}] ON [{table}] ({key})")


def _v1_numbered(conn: sqlite3.Connection) -> None:
    """Version 1: any database from before numbering (or an empty one) to the first numbered
    schema. Predictions' p_short/p_flat/p_long columns fold into `scores` JSON; one
    prediction per (symbol, model, bar) and one signal per (symbol, strategy, bar), the first
    kept; decision rows carry the trigger timeframe and a reason, keyed (symbol, timeframe,
    bar_ts). Older rows were all decisions; their timeframe is unknown here ('') until the
    engine adopts them (Store.adopt_decisions)."""
    for statement in _V0_TABLES.split(";"):
        if statement.strip():
            conn.execute(statement)
    columns = {row[1] for row in conn.execute("PRAGMA table_info(predictions)")}
    if "p_short" in columns:  # written before Prediction.scores (4b2c0b5)
        conn.execute("ALTER TABLE predictions RENAME TO predictions_v0")  # its index goes with it
        conn.execute(_V0_PREDICTIONS)
        conn.execute(
            "INSERT INTO predictions (id, symbol, bar_ts, model, version, scores, side, confidence, threshold, "
            "inference_ms, created_ms) SELECT id, symbol, bar_ts, model, version, "
            "json_object('p_short', p_short, 'p_flat', p_flat, 'p_long', p_long), side, confidence, threshold, "
            "inference_ms, created_ms FROM predictions_v0"
        )
        conn.execute("DROP TABLE predictions_v0")
        conn.execute('CREATE INDEX "idx_predictions_bar_ts" ON "predictions" ("bar_ts")')
    _keep_first(conn, "predictions", "symbol, model, bar_ts", "id")
    _keep_first(conn, "signals", "symbol, strategy, bar_ts", "id")
    conn.execute("ALTER TABLE decisions RENAME TO decisions_v0")
    conn.execute(
        'CREATE TABLE "decisions" ("symbol" TEXT NOT NULL, "timeframe" TEXT NOT NULL, '
        '"bar_ts" INTEGER NOT NULL, "reason" TEXT, "detail" TEXT, "signals" INTEGER, "created_ms" INTEGER, '
        'PRIMARY KEY ("symbol", "timeframe", "bar_ts"))'
    )
    conn.execute(
        "INSERT INTO decisions (symbol, timeframe, bar_ts, reason, detail, signals, created_ms) "
        "SELECT symbol, '', bar_ts, 'decided', '', signals, created_ms FROM decisions_v0"
    )
    conn.execute("DROP TABLE decisions_v0")


def _v2_never_twice(conn: sqlite3.Connection) -> None:
    """Version 2: what happens once is unique in SQL, whoever writes. One fill per order, one
    event id per signal and per fill, one outbox row per (event, channel), one current and one
    previous model per name; a finished outbox row (sent, skipped, dead) never changes status
    again, so it is never delivered twice. Older repeats: the first row stays (an extra
    current or previous model is retired)."""
    conn.execute("DROP INDEX IF EXISTS idx_fills_client_order_id")  # the unique index replaces it
    _keep_first(conn, "fills", "client_order_id", "id")
    _keep_first(conn, "fills", "event_id", "id")
    _keep_first(conn, "signals", "event_id", "id")
    _keep_first(conn, "outbox", "event_id, channel")
    conn.execute(
        "UPDATE models SET status='retired' WHERE status IN ('current', 'previous') AND id NOT IN "
        "(SELECT MAX(id) FROM models WHERE status IN ('current', 'previous') GROUP BY name, status)"
    )
    conn.execute("CREATE UNIQUE INDEX uq_models_name_current ON models (name) WHERE status = 'current'")
    conn.execute("CREATE UNIQUE INDEX uq_models_name_previous ON models (name) WHERE status = 'previous'")
    conn.execute(
        "CREATE TRIGGER outbox_finished_once BEFORE UPDATE OF status ON outbox "
        "WHEN OLD.status IN ('sent', 'skipped', 'dead') AND NEW.status IS NOT OLD.status "
        "BEGIN SELECT RAISE(ABORT, 'outbox row already finished: it is never delivered twice'); END"
    )


# Numbered steps, oldest first: (the user_version it sets, the step). Append only.
MIGRATIONS: list[tuple[int, Callable[[sqlite3.Connection], None]]] = [
    (1, _v1_numbered),
    (2, _v2_never_twice),
]
SCHEMA_VERSION = MIGRATIONS[-1][0]  # PRAGMA user_version of a database with every step applied


def user_version(conn: sqlite3.Connection) -> int:
    """The database's `PRAGMA user_version`: the newest migration step applied."""
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def migrate(conn: sqlite3.Connection, path: Path, transaction: Callable[[], AbstractContextManager[None]]) -> list[int]:
    """Run the steps numbered above the database's version, each in its own transaction; the
    numbers run. A database newer than this sigd is refused (ConfigError naming store.path)."""
    version = user_version(conn)
    if version > SCHEMA_VERSION:
        raise ConfigError(
            f"store.path: {path}: state schema version {version} is newer than this sigd "
            f"knows ({SCHEMA_VERSION}); run the newer sigd, or move the state file away"
        )
    ran = []
    for number, step in MIGRATIONS:
        if number <= version:
            continue
        with transaction():  # BEGIN IMMEDIATE: the write lock, so a second process waits here
            if user_version(conn) >= number:  # and finds the step done by the first (sigd status at an upgrade)
                continue
            step(conn)
            conn.execute(f"PRAGMA user_version = {number}")
        ran.append(number)
    return ran

"""SQLite state (sqlite-utils, WAL): bars, predictions, signals, orders, fills, positions,
the alert outbox, the model registry and a small key-value table.

One Store per process, used from the event-loop thread only (one thread owns the state).
Every write commits at once, so a SIGKILL loses nothing that a method returned from.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any, Iterable, Iterator

import sqlite_utils

from daemon.domain import Bar

# Table name -> (columns, primary key). Columns map to sqlite-utils types.
SCHEMA: dict[str, tuple[dict[str, type], str | tuple[str, ...]]] = {
    "bars": (
        {"symbol": str, "timeframe": str, "ts": int, "open": float, "high": float,
         "low": float, "close": float, "volume": float},
        ("symbol", "timeframe", "ts"),
    ),
    "predictions": (
        {"id": int, "symbol": str, "bar_ts": int, "model": str, "version": str, "p_short": float,
         "p_flat": float, "p_long": float, "side": int, "confidence": float, "threshold": float,
         "inference_ms": float, "created_ms": int},
        "id",
    ),
    "signals": (
        {"id": int, "symbol": str, "bar_ts": int, "strategy": str, "side": int, "confidence": float,
         "price": float, "reasons": str, "model_versions": str, "latency_ms": float, "created_ms": int},
        "id",
    ),
    "orders": (
        {"client_order_id": str, "symbol": str, "side": str, "type": str, "amount": float,
         "price": float, "bar_ts": int, "status": str, "exchange_id": str, "error": str,
         "created_ms": int, "updated_ms": int},
        "client_order_id",
    ),
    "fills": (
        {"id": int, "client_order_id": str, "symbol": str, "side": str, "price": float,
         "amount": float, "fee": float, "ts": int},
        "id",
    ),
    "positions": (
        {"symbol": str, "amount": float, "entry_price": float, "realized_pnl": float,
         "fees": float, "updated_ms": int},
        "symbol",
    ),
    "outbox": (
        {"id": str, "event_id": str, "channel": str, "type": str, "payload": str, "status": str,
         "attempts": int, "next_attempt_ms": int, "last_error": str, "created_ms": int,
         "sent_ms": int},
        "id",
    ),
    "models": (
        {"id": int, "name": str, "version": str, "path": str, "status": str, "metrics": str,
         "created_ms": int},
        "id",
    ),
    "kv": ({"key": str, "value": str}, "key"),
}
INDEXES: list[tuple[str, tuple[str, ...]]] = [
    ("predictions", ("bar_ts",)),
    ("signals", ("bar_ts",)),
    ("orders", ("status",)),
    ("outbox", ("status", "next_attempt_ms")),
    ("models", ("name", "status")),
]


class Store:
    """The daemon's SQLite database."""

    def __init__(self, path: str | Path) -> None:
        path = Path(path)
        if str(path) != ":memory:":
            path.parent.mkdir(parents=True, exist_ok=True)
        # check_same_thread=False only so that tests and the shutdown path may close it
        # from another thread; all writes still happen on the event loop.
        conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self.db = sqlite_utils.Database(conn)
        self.path = path
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("PRAGMA busy_timeout=5000")
        self._migrate()

    def _migrate(self) -> None:
        for name, (columns, pk) in SCHEMA.items():
            table = self.db[name]
            if not table.exists():
                table.create(columns, pk=pk, not_null=set(pk) if isinstance(pk, tuple) else {pk})
        for name, cols in INDEXES:
            self.db[name].create_index(cols, if_not_exists=True)

    def close(self) -> None:
        """Close the connection."""
        self.db.conn.close()

    # --- bars -----------------------------------------------------------------------------

    def add_bars(self, bars: Iterable[Bar]) -> None:
        """Insert closed bars; a bar already stored (same symbol, timeframe, ts) is replaced."""
        # Plain executemany: this runs for every closed bar of every stream, and
        # sqlite-utils' insert_all costs several times more per row.
        rows = [(b.symbol, b.timeframe, b.ts, b.open, b.high, b.low, b.close, b.volume) for b in bars]
        if not rows:
            return
        conn = self.db.conn
        conn.execute("BEGIN")  # one commit for the whole batch (autocommit mode otherwise)
        try:
            conn.executemany(
                "INSERT OR REPLACE INTO bars (symbol, timeframe, ts, open, high, low, close, volume) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def latest_bars(self, symbol: str, timeframe: str, n: int) -> list[Bar]:
        """The newest `n` stored bars of a stream, oldest first."""
        cur = self.db.execute(
            "SELECT ts, open, high, low, close, volume FROM bars WHERE symbol=? AND timeframe=? "
            "ORDER BY ts DESC LIMIT ?",
            [symbol, timeframe, n],
        )
        return [Bar(symbol, timeframe, *row) for row in reversed(cur.fetchall())]

    def iter_bars(self, symbol: str, timeframe: str, start: int = 0, end: int | None = None) -> Iterator[Bar]:
        """Stored bars of a stream with start <= ts < end, oldest first."""
        cur = self.db.execute(
            "SELECT ts, open, high, low, close, volume FROM bars WHERE symbol=? AND timeframe=? "
            "AND ts>=? AND ts<? ORDER BY ts",
            [symbol, timeframe, start, end if end is not None else 2**62],
        )
        for row in cur:
            yield Bar(symbol, timeframe, *row)

    # --- key-value ------------------------------------------------------------------------

    def get_kv(self, key: str, default: str | None = None) -> str | None:
        """A small persistent setting (e.g. the pause flag)."""
        row = self.db.execute("SELECT value FROM kv WHERE key=?", [key]).fetchone()
        return row[0] if row else default

    def set_kv(self, key: str, value: str) -> None:
        """Set a small persistent setting."""
        self.db["kv"].insert({"key": key, "value": value}, replace=True)

    def count(self, table: str, where: str = "", params: Any = ()) -> int:
        """Row count of a table, optionally filtered."""
        sql = f"SELECT COUNT(*) FROM [{table}]" + (f" WHERE {where}" if where else "")
        return int(self.db.execute(sql, list(params)).fetchone()[0])

"""SQLite state (sqlite-utils, WAL): bars, predictions, signals, orders, fills, positions,
the alert outbox, the model registry and a small key-value table.

One Store per process, used from the event-loop thread only (one thread owns the state).
Every write commits at once, so a SIGKILL loses nothing that a method returned from; writes
that belong together (one decision: predictions, signal, its outbox rows, the order intent)
go inside `transaction()`, which nests (savepoints), so they commit all or nothing.
"""

from __future__ import annotations

import json
import sqlite3
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

# sqlite-utils imports pandas (~100 MB of RSS) only to convert pandas values, which sigd never
# stores: hidden during that import unless something loaded it already (bench service: measured).
_HIDE_PANDAS = "pandas" not in sys.modules
if _HIDE_PANDAS:
    sys.modules["pandas"] = None  # type: ignore[assignment]  # import pandas -> ImportError
try:
    import sqlite_utils
finally:
    if _HIDE_PANDAS:
        del sys.modules["pandas"]

from daemon.config import ConfigError
from daemon.domain import Bar, Fill, Order, OrderStatus, Position, Prediction, Side, Signal, class_scores
from daemon.health import FAILURES

# Table name -> (columns, primary key). Columns map to sqlite-utils types.
SCHEMA: dict[str, tuple[dict[str, type], str | tuple[str, ...]]] = {
    "bars": (
        {"symbol": str, "timeframe": str, "ts": int, "open": float, "high": float, "low": float, "close": float, "volume": float},
        ("symbol", "timeframe", "ts"),
    ),
    "predictions": (
        # scores: JSON {name: value}, the class probabilities p_short/p_flat/p_long and any other
        # output of the model's family (Prediction.scores); no column per class.
        {
            "id": int,
            "symbol": str,
            "bar_ts": int,
            "model": str,
            "version": str,
            "scores": str,
            "side": int,
            "confidence": float,
            "threshold": float,
            "inference_ms": float,
            "created_ms": int,
        },
        "id",
    ),
    "signals": (
        {
            "id": int,
            "symbol": str,
            "bar_ts": int,
            "strategy": str,
            "side": int,
            "confidence": float,
            "price": float,
            "reasons": str,
            "model_versions": str,
            "latency_ms": float,
            "created_ms": int,
            "event_id": str,
        },
        "id",
    ),
    "orders": (
        {
            "client_order_id": str,
            "symbol": str,
            "side": str,
            "type": str,
            "amount": float,
            "price": float,
            "bar_ts": int,
            "status": str,
            "exchange_id": str,
            "error": str,
            "created_ms": int,
            "updated_ms": int,
            "not_before_ts": int,
        },
        "client_order_id",
    ),
    "fills": (
        {
            "id": int,
            "client_order_id": str,
            "symbol": str,
            "side": str,
            "price": float,
            "amount": float,
            "fee": float,
            "ts": int,
            "event_id": str,
        },
        "id",
    ),
    "positions": (
        {"symbol": str, "amount": float, "entry_price": float, "realized_pnl": float, "fees": float, "updated_ms": int},
        "symbol",
    ),
    "outbox": (
        {
            "id": str,
            "event_id": str,
            "channel": str,
            "type": str,
            "payload": str,
            "status": str,
            "attempts": int,
            "next_attempt_ms": int,
            "last_error": str,
            "created_ms": int,
            "sent_ms": int,
        },
        "id",
    ),
    "models": (
        {"id": int, "name": str, "version": str, "path": str, "status": str, "metrics": str, "created_ms": int},
        "id",
    ),
    "kv": ({"key": str, "value": str}, "key"),
    # One row per trigger bar and symbol, whatever became of it (the audit trail): `reason`
    # says what (DECIDED, PAUSED, HALTED: decided in the decision's own transaction; SUPERSEDED,
    # MISSED, FAILED, FAILED_COMMIT: not decided, and why). The key is unique in SQL, so a bar is never
    # decided twice, not even across a restart.
    "decisions": (
        {"symbol": str, "timeframe": str, "bar_ts": int, "reason": str, "detail": str, "signals": int, "created_ms": int},
        ("symbol", "timeframe", "bar_ts"),
    ),
}


class Reason:
    """What became of a trigger bar: its decision row's `reason` (docs/concepts/audit-trail.md)."""

    DECIDED, PAUSED, HALTED = "decided", "paused", "halted"  # decided; paused/halted: no new entries
    SUPERSEDED = "superseded"  # a newer bar of the symbol arrived while this one waited: not decided
    MISSED = "missed"  # closed while sigd was down or warming up: never reached the engine
    FAILED = "failed"  # the decision raised (a bug): rolled back, not retried
    FAILED_COMMIT = "failed_commit"  # SQLite refused the decision's writes, also when retried


SCHEMA_VERSION = 1  # PRAGMA user_version of a database with every step of MIGRATIONS applied
INDEXES: list[tuple[str, tuple[str, ...]]] = [
    ("predictions", ("bar_ts",)),
    ("signals", ("bar_ts",)),
    ("orders", ("status",)),
    ("fills", ("client_order_id",)),
    ("outbox", ("channel", "status", "next_attempt_ms")),
    ("models", ("name", "status")),
]
# A decision is made once: one prediction per (symbol, model, bar), one signal per
# (symbol, strategy, bar). Older state files may hold duplicates; the first row stays.
UNIQUE: list[tuple[str, tuple[str, ...]]] = [
    ("predictions", ("symbol", "model", "bar_ts")),
    ("signals", ("symbol", "strategy", "bar_ts")),
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
        self._savepoints = 0  # savepoints made so far (their names)
        self._depth = 0  # transaction() blocks open now, the outer one included
        self._lost = ""  # the error after which SQLite rolled the open transaction back
        self._after_commit: list[Callable[[], None]] = []  # run once the open transaction commits
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("PRAGMA busy_timeout=5000")
        self._migrate()

    def _migrate(self) -> None:
        """Bring any older database to SCHEMA_VERSION; a new one is created at it.

        Steps before numbering (prediction scores, unique indexes) are idempotent and run on
        every open; numbered steps (MIGRATIONS) run once each, in order, each in its own
        transaction together with the `PRAGMA user_version` it sets.
        """
        version = int(self.db.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise ConfigError(
                f"store.path: {self.path}: state schema version {version} is newer than this sigd "
                f"knows ({SCHEMA_VERSION}); run the newer sigd, or move the state file away"
            )
        fresh = not self.db["decisions"].exists()
        self._migrate_prediction_scores()
        self._create_tables()
        if fresh:
            self.db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            return
        for number, step in MIGRATIONS:
            if number > version:
                with self.transaction():
                    step(self.db.conn)
                    self.db.conn.execute(f"PRAGMA user_version = {number}")

    def schema_version(self) -> int:
        """The database's `PRAGMA user_version`: the newest migration step applied."""
        return int(self.db.execute("PRAGMA user_version").fetchone()[0])

    def _create_tables(self) -> None:
        for name, (columns, pk) in SCHEMA.items():
            table = self.db[name]
            if not table.exists():
                table.create(columns, pk=pk, not_null=set(pk) if isinstance(pk, tuple) else {pk})
        for name, cols in INDEXES:
            self.db[name].create_index(cols, if_not_exists=True)
        for name, cols in UNIQUE:
            index = f"uq_{name}_{'_'.join(cols)}"
            if self.db.execute("SELECT 1 FROM sqlite_master WHERE type='index' AND name=?", [index]).fetchone():
                continue
            key = ", ".join(cols)
            self.db.execute(f"DELETE FROM [{name}] WHERE id NOT IN (SELECT MIN(id) FROM [{name}] GROUP BY {key})")
            self.db.execute(f"CREATE UNIQUE INDEX [{index}] ON [{name}] ({key})")

    def _migrate_prediction_scores(self) -> None:
        """Databases written before Prediction.scores: fold p_short/p_flat/p_long into `scores`."""
        table = self.db["predictions"]
        if not table.exists() or "p_short" not in table.columns_dict:
            return
        with self.transaction():
            table.add_column("scores", str)
            self.db.execute("UPDATE predictions SET scores = json_object('p_short', p_short, 'p_flat', p_flat, 'p_long', p_long)")
            table.transform(drop={"p_short", "p_flat", "p_long"})

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
        with self.transaction():  # one commit for the whole batch (autocommit mode otherwise)
            self.db.conn.executemany(
                "INSERT OR REPLACE INTO bars (symbol, timeframe, ts, open, high, low, close, volume) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )

    def latest_bars(self, symbol: str, timeframe: str, n: int) -> list[Bar]:
        """The newest `n` stored bars of a stream, oldest first."""
        cur = self.db.execute(
            "SELECT ts, open, high, low, close, volume FROM bars WHERE symbol=? AND timeframe=? ORDER BY ts DESC LIMIT ?",
            [symbol, timeframe, n],
        )
        return [Bar(symbol, timeframe, *row) for row in reversed(cur.fetchall())]

    def iter_bars(self, symbol: str, timeframe: str, start: int = 0, end: int | None = None) -> Iterator[Bar]:
        """Stored bars of a stream with start <= ts < end, oldest first."""
        cur = self.db.execute(
            "SELECT ts, open, high, low, close, volume FROM bars WHERE symbol=? AND timeframe=? AND ts>=? AND ts<? ORDER BY ts",
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
        """Set a small persistent setting (raw SQL: it may run inside a decision's transaction)."""
        self.db.conn.execute("INSERT OR REPLACE INTO kv (key, value) VALUES (?, ?)", [key, value])

    def count(self, table: str, where: str = "", params: Any = ()) -> int:
        """Row count of a table, optionally filtered."""
        sql = f"SELECT COUNT(*) FROM [{table}]" + (f" WHERE {where}" if where else "")
        return int(self.db.execute(sql, list(params)).fetchone()[0])

    # --- model registry (app: daemon/retrain/nightly.py) ------------------------------------------

    def current_model(self, name: str) -> dict[str, Any] | None:
        """The registry row of the model now serving under `name`, or None."""
        rows = list(self.db["models"].rows_where("name=? AND status='current'", [name], order_by="id DESC", limit=1))
        return rows[0] if rows else None

    def model_rows(self, name: str | None = None) -> list[dict[str, Any]]:
        """Registry rows, newest first (all models, or one)."""
        where, params = ("name=?", [name]) if name else (None, [])
        return list(self.db["models"].rows_where(where, params, order_by="id DESC"))

    def record_model(self, name: str, version: str, path: str, status: str, metrics: str, now_ms: int) -> int:
        """Add a registry row; a new "current" demotes the old current to "previous" and the old
        previous to "retired", in one transaction."""
        conn = self.db.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            if status == "current":
                conn.execute("UPDATE models SET status='retired' WHERE name=? AND status='previous'", [name])
                conn.execute("UPDATE models SET status='previous' WHERE name=? AND status='current'", [name])
            cur = conn.execute(
                "INSERT INTO models (name, version, path, status, metrics, created_ms) VALUES (?, ?, ?, ?, ?, ?)",
                [name, version, path, status, metrics, now_ms],
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return int(cur.lastrowid or 0)

    # --- engine: predictions, signals, orders, fills, positions (owner: engine) -----------
    # Raw SQL only in this section: sqlite-utils' helpers commit by themselves, which would
    # end a transaction() early.

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Group writes into one commit (all or nothing).

        Nestable: inside an open transaction this is a savepoint, so an inner block that
        raises undoes only its own writes and the outer one decides whether to commit.
        On some errors (a full disk, an I/O error) SQLite rolls the whole transaction back by
        itself: every later block of it then raises too, instead of writing outside it
        (autocommit), and the outer one raises rather than commit nothing.
        """
        conn = self.db.conn
        if self._depth:
            if not conn.in_transaction:
                raise sqlite3.OperationalError(f"SQLite rolled the transaction back after: {self._lost or 'an error'}")
            self._savepoints += 1
            self._depth += 1
            name, pending = f"sp{self._savepoints}", len(self._after_commit)
            conn.execute(f"SAVEPOINT {name}")
            try:
                yield
            except BaseException as exc:
                if conn.in_transaction:
                    conn.execute(f"ROLLBACK TO {name}")
                    conn.execute(f"RELEASE {name}")
                else:
                    self._lost = self._lost or f"{type(exc).__name__}: {exc}"
                del self._after_commit[pending:]  # what this block announced did not happen
                raise
            finally:
                self._savepoints -= 1
                self._depth -= 1
            if not conn.in_transaction:
                raise sqlite3.OperationalError(f"SQLite rolled the transaction back after: {self._lost or 'an error'}")
            conn.execute(f"RELEASE {name}")
            return
        self._depth, self._lost = 1, ""
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                self._after_commit.clear()
                raise
            if not conn.in_transaction:
                raise sqlite3.OperationalError(f"SQLite rolled the transaction back after: {self._lost or 'an error'}")
            try:
                conn.execute("COMMIT")
            except sqlite3.Error:
                if conn.in_transaction:  # a failed COMMIT may leave it open: never carry it into the next
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:  # full disk, read-only file, ...: health counts it (daemon/health.py)
            self._after_commit.clear()
            FAILURES.failed("commit", f"{type(exc).__name__}: {exc}")
            raise
        finally:
            self._depth = 0
        FAILURES.succeeded("commit")
        callbacks, self._after_commit = self._after_commit, []
        for fn in callbacks:
            fn()

    def after_commit(self, fn: Callable[[], None]) -> None:
        """Run `fn` once the writes made so far are committed: now outside a transaction,
        else after the outermost COMMIT (never after a rollback). For live pushes (daemon.events);
        `fn` must not raise (the commit has happened)."""
        if self.db.conn.in_transaction:
            self._after_commit.append(fn)
        else:
            fn()

    def decided(self, symbol: str, bar_ts: int) -> bool:
        """Whether the trigger bar of `symbol` at `bar_ts` was decided (and committed) before."""
        return (
            self.db.conn.execute("SELECT 1 FROM decisions WHERE symbol=? AND bar_ts=?", [symbol, bar_ts]).fetchone() is not None
        )

    def mark_decided(
        self,
        symbol: str,
        timeframe: str,
        bar_ts: int,
        signals: int,
        created_ms: int,
        reason: str = Reason.DECIDED,
        detail: str = "",
    ) -> bool:
        """Record what became of a trigger bar (inside the decision's transaction, or alone for
        a bar that was not decided); False when the bar already has its row (the first stays)."""
        cur = self.db.conn.execute(
            "INSERT OR IGNORE INTO decisions (symbol, timeframe, bar_ts, reason, detail, signals, created_ms) "
            "VALUES (?,?,?,?,?,?,?)",
            [symbol, timeframe, bar_ts, reason, detail[:300], signals, created_ms],
        )
        return cur.rowcount > 0

    def adopt_decisions(self, timeframe: str) -> int:
        """Give rows written before schema version 1 (no timeframe then) the trigger timeframe
        they were decided on; how many. The engine calls it at start with its own."""
        with self.transaction():
            cur = self.db.conn.execute("UPDATE OR IGNORE decisions SET timeframe=? WHERE timeframe=''", [timeframe])
        return cur.rowcount

    def decision_rows(self, symbol: str | None = None) -> list[dict[str, Any]]:
        """Every decision row (of `symbol`), oldest bar first."""
        sql = "SELECT symbol, timeframe, bar_ts, reason, detail, signals, created_ms FROM decisions"
        cur = self.db.conn.execute(
            sql + (" WHERE symbol=?" if symbol else "") + " ORDER BY bar_ts, symbol", [symbol] if symbol else []
        )
        return self._outbox_dicts(cur)

    def add_predictions(self, symbol: str, predictions: Sequence[Prediction], created_ms: int) -> None:
        """Store one trigger bar's predictions (one already stored for the model and bar stays)."""
        self.db.conn.executemany(
            "INSERT OR IGNORE INTO predictions (symbol, bar_ts, model, version, scores, side, "
            "confidence, threshold, inference_ms, created_ms) VALUES (?,?,?,?,?,?,?,?,?,?)",
            [
                (
                    symbol,
                    p.bar_ts,
                    p.model,
                    p.version,
                    json.dumps({**class_scores(p.probs), **p.scores}),
                    int(p.side),
                    float(p.confidence),
                    float(p.threshold),
                    float(p.inference_ms),
                    created_ms,
                )
                for p in predictions
            ],
        )

    def add_signal(self, signal: Signal, latency_ms: float, created_ms: int) -> int | None:
        """Store a signal with its event id "signal-<row id>"; None when the strategy already
        signalled on this symbol's bar (a decision is made once)."""
        conn = self.db.conn
        with self.transaction():
            cur = conn.execute(
                "INSERT OR IGNORE INTO signals (symbol, bar_ts, strategy, side, confidence, price, reasons, "
                "model_versions, latency_ms, created_ms) VALUES (?,?,?,?,?,?,?,?,?,?)",
                [
                    signal.symbol,
                    signal.bar_ts,
                    signal.strategy,
                    int(signal.side),
                    signal.confidence,
                    signal.price,
                    json.dumps(list(signal.reasons)),
                    json.dumps(dict(signal.model_versions)),
                    latency_ms,
                    created_ms,
                ],
            )
            if cur.rowcount != 1:
                return None
            signal_id = int(cur.lastrowid or 0)
            conn.execute("UPDATE signals SET event_id=? WHERE id=?", [f"signal-{signal_id}", signal_id])
        return signal_id

    def _signal(self, row: sqlite3.Row | tuple) -> Signal:
        symbol, bar_ts, strategy, side, conf, price, reasons, versions = row
        return Signal(
            symbol, bar_ts, Side(side), conf, price, strategy, tuple(json.loads(reasons or "[]")), json.loads(versions or "{}")
        )

    def signals(self, *, symbol: str | None = None, limit: int = 100) -> list[tuple[int, Signal]]:
        """(id, Signal), newest first (all symbols, or one)."""
        where, params = ("WHERE symbol=?", [symbol]) if symbol else ("", [])
        cur = self.db.conn.execute(
            "SELECT id, symbol, bar_ts, strategy, side, confidence, price, reasons, model_versions "
            f"FROM signals {where} ORDER BY id DESC LIMIT ?",
            [*params, limit],
        )
        return [(row[0], self._signal(row[1:])) for row in cur.fetchall()]

    def put_order(self, order: Order, created_ms: int, not_before_ts: int | None = None) -> bool:
        """Insert an order unless its client id exists; True when it was inserted."""
        cur = self.db.conn.execute(
            "INSERT OR IGNORE INTO orders (client_order_id, symbol, side, type, amount, price, bar_ts, "
            "status, exchange_id, created_ms, updated_ms, not_before_ts) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            [
                order.client_order_id,
                order.symbol,
                order.side,
                order.type,
                order.amount,
                order.price,
                order.bar_ts,
                order.status.value,
                order.exchange_id,
                created_ms,
                created_ms,
                not_before_ts,
            ],
        )
        return cur.rowcount == 1

    def set_order_status(
        self,
        client_order_id: str,
        status: OrderStatus,
        updated_ms: int,
        *,
        exchange_id: str | None = None,
        error: str | None = None,
    ) -> None:
        """Update an order's status (keeping a known exchange id and error)."""
        self.db.conn.execute(
            "UPDATE orders SET status=?, exchange_id=COALESCE(?, exchange_id), error=COALESCE(?, error), "
            "updated_ms=? WHERE client_order_id=?",
            [status.value, exchange_id, error, updated_ms, client_order_id],
        )

    def orders(
        self, statuses: Iterable[OrderStatus] | None = None, symbol: str | None = None, client_order_id: str | None = None
    ) -> list[tuple[Order, int | None]]:
        """(Order, not_before_ts) filtered by status / symbol / client id, oldest first."""
        clauses, params = [], []
        if statuses is not None:
            values = [s.value for s in statuses]
            clauses.append(f"status IN ({','.join('?' * len(values))})")
            params += values
        for column, value in (("symbol", symbol), ("client_order_id", client_order_id)):
            if value is not None:
                clauses.append(f"{column}=?")
                params.append(value)
        where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
        cur = self.db.conn.execute(
            "SELECT client_order_id, symbol, side, type, amount, price, bar_ts, status, exchange_id, "
            f"not_before_ts FROM orders {where} ORDER BY created_ms, rowid",
            params,
        )
        return [(Order(*row[:7], status=OrderStatus(row[7]), exchange_id=row[8]), row[9]) for row in cur]

    def order_created_ms(self, client_order_id: str) -> int:
        """Wall-clock ms at which an order was stored (KeyError when unknown)."""
        row = self.db.conn.execute("SELECT created_ms FROM orders WHERE client_order_id=?", [client_order_id]).fetchone()
        if row is None:
            raise KeyError(f"no order with client id {client_order_id!r}")
        return int(row[0])

    def add_fill(self, fill: Fill) -> bool:
        """Insert the fill of an order unless that order already has one; True when inserted."""
        cur = self.db.conn.execute(
            "INSERT INTO fills (client_order_id, symbol, side, price, amount, fee, ts, event_id) "
            "SELECT ?,?,?,?,?,?,?,? WHERE NOT EXISTS (SELECT 1 FROM fills WHERE client_order_id=?)",
            [
                fill.client_order_id,
                fill.symbol,
                fill.side,
                fill.price,
                fill.amount,
                fill.fee,
                fill.ts,
                f"fill-{fill.client_order_id}",
                fill.client_order_id,
            ],
        )
        return cur.rowcount == 1

    def fills(self, *, symbol: str | None = None) -> list[Fill]:
        """Fills oldest first (all symbols, or one)."""
        where = "WHERE symbol=?" if symbol else ""
        cur = self.db.conn.execute(
            f"SELECT client_order_id, symbol, side, price, amount, fee, ts FROM fills {where} ORDER BY id",
            [symbol] if symbol else [],
        )
        return [Fill(*row) for row in cur]

    def get_position(self, symbol: str) -> Position:
        """The stored position (flat when none)."""
        row = self.db.conn.execute(
            "SELECT amount, entry_price, realized_pnl, fees FROM positions WHERE symbol=?", [symbol]
        ).fetchone()
        return Position(symbol, *row) if row else Position(symbol)

    def put_position(self, position: Position, updated_ms: int) -> None:
        """Store a position."""
        self.db.conn.execute(
            "INSERT OR REPLACE INTO positions (symbol, amount, entry_price, realized_pnl, fees, updated_ms) VALUES (?,?,?,?,?,?)",
            [position.symbol, position.amount, position.entry_price, position.realized_pnl, position.fees, updated_ms],
        )

    # --- outbox (daemon/alerts/outbox.py) --------------------------------------------------------
    # Row status: pending -> sent | skipped | dead. `id` is "<event_id>/<channel>", so adding
    # the same event twice is a no-op (INSERT OR IGNORE), which makes publish idempotent.

    _OUTBOX_COLUMNS = (
        "id",
        "event_id",
        "channel",
        "type",
        "payload",
        "status",
        "attempts",
        "next_attempt_ms",
        "last_error",
        "created_ms",
        "sent_ms",
    )

    def add_outbox(self, rows: list[dict[str, Any]]) -> int:
        """Insert outbox rows in one transaction; rows whose id exists are ignored. Returns rows added."""
        cols = self._OUTBOX_COLUMNS
        sql = f"INSERT OR IGNORE INTO outbox ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"
        conn = self.db.conn
        with self.transaction():
            before = conn.total_changes
            conn.executemany(sql, [[r.get(c) for c in cols] for r in rows])
        return conn.total_changes - before

    def due_outbox(self, channel: str, now_ms: int, limit: int = 50) -> list[dict[str, Any]]:
        """Pending rows of a channel whose next attempt is due, oldest first."""
        cur = self.db.execute(
            "SELECT * FROM outbox WHERE channel=? AND status='pending' AND next_attempt_ms<=? ORDER BY created_ms, rowid LIMIT ?",
            [channel, now_ms, limit],
        )
        return self._outbox_dicts(cur)

    def next_outbox_due_ms(self, channel: str) -> int | None:
        """When the channel's earliest pending row becomes due (None when nothing is pending)."""
        row = self.db.execute(
            "SELECT MIN(next_attempt_ms) FROM outbox WHERE channel=? AND status='pending'", [channel]
        ).fetchone()
        return row[0] if row and row[0] is not None else None

    def update_outbox(self, row_id: str, **fields: Any) -> None:
        """Set columns of one outbox row (status, attempts, next_attempt_ms, last_error, sent_ms)."""
        unknown = set(fields) - set(self._OUTBOX_COLUMNS)
        if unknown:
            raise ValueError(f"unknown outbox column(s): {sorted(unknown)}")
        assignments = ", ".join(f"{k}=?" for k in fields)
        self.db.execute(f"UPDATE outbox SET {assignments} WHERE id=?", [*fields.values(), row_id])

    def outbox_depth(self) -> dict[tuple[str, str], int]:
        """Count of pending and dead rows per (channel, status)."""
        cur = self.db.execute(
            "SELECT channel, status, COUNT(*) FROM outbox WHERE status IN ('pending', 'dead') GROUP BY channel, status"
        )
        return {(ch, st): n for ch, st, n in cur.fetchall()}

    def outbox_rows(self, channel: str | None = None, status: str | None = None) -> list[dict[str, Any]]:
        """Outbox rows (optionally of one channel / status), oldest first."""
        where = " AND ".join(w for w, v in (("channel=?", channel), ("status=?", status)) if v is not None)
        cur = self.db.execute(
            "SELECT * FROM outbox" + (f" WHERE {where}" if where else "") + " ORDER BY created_ms, rowid",
            [v for v in (channel, status) if v is not None],
        )
        return self._outbox_dicts(cur)

    @staticmethod
    def _outbox_dicts(cur: sqlite3.Cursor) -> list[dict[str, Any]]:
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row)) for row in cur.fetchall()]

    def purge_outbox(self, before_ms: int) -> int:
        """Delete finished rows (sent, skipped, dead) created before `before_ms`; returns rows deleted."""
        cur = self.db.execute("DELETE FROM outbox WHERE status IN ('sent', 'skipped', 'dead') AND created_ms<?", [before_ms])
        return cur.rowcount

    # --- backtest: reading a run back (owner: backtest) ------------------------------------

    def prediction_rows(self, symbol: str) -> list[tuple]:
        """(bar_ts, model, version, p_short, p_flat, p_long, side, confidence, threshold), oldest first."""
        cur = self.db.conn.execute(
            "SELECT bar_ts, model, version, json_extract(scores, '$.p_short'), json_extract(scores, '$.p_flat'), "
            "json_extract(scores, '$.p_long'), side, confidence, threshold "
            "FROM predictions WHERE symbol=? ORDER BY bar_ts, model",
            [symbol],
        )
        return cur.fetchall()


def _decisions_v1(conn: sqlite3.Connection) -> None:
    """Version 1: decision rows carry the trigger timeframe and a reason, keyed (symbol,
    timeframe, bar_ts). Older rows were all decisions; their timeframe is unknown here ('')
    until the engine adopts them (Store.adopt_decisions)."""
    conn.execute("ALTER TABLE decisions RENAME TO decisions_v0")
    conn.execute(
        'CREATE TABLE "decisions" ("symbol" TEXT NOT NULL, "timeframe" TEXT NOT NULL, '
        '"bar_ts" INTEGER NOT NULL, "reason" TEXT, "detail" TEXT, "signals" INTEGER, "created_ms" INTEGER, '
        'PRIMARY KEY ("symbol", "timeframe", "bar_ts"))'
    )
    conn.execute(
        "INSERT INTO decisions (symbol, timeframe, bar_ts, reason, detail, signals, created_ms) "
        "SELECT symbol, '', bar_ts, ?, '', signals, created_ms FROM decisions_v0",
        [Reason.DECIDED],
    )
    conn.execute("DROP TABLE decisions_v0")


# Numbered schema steps, oldest first: (the user_version it sets, the step). Append only; a
# database at version N runs the steps numbered above N (Store._migrate).
MIGRATIONS: list[tuple[int, Callable[[sqlite3.Connection], None]]] = [
    (1, _decisions_v1),
]
assert MIGRATIONS[-1][0] == SCHEMA_VERSION

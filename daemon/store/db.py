"""The connection: WAL pragmas, the schema brought up to date on open, transactions that nest
(savepoints) and run callbacks after the outermost COMMIT, and the small key-value table.

One Store per process, used from the event-loop thread only (one thread owns the state).
Every write commits at once, so a SIGKILL loses nothing that a method returned from; writes
that belong together (one decision: predictions, signal, its outbox rows, the order intent)
go inside `transaction()`, which nests (savepoints), so they commit all or nothing.
"""

from __future__ import annotations

import sqlite3
import sys
from collections.abc import Callable, Iterator
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

from daemon.health import FAILURES
from daemon.store.migrations import migrate, user_version

TABLES = ("bars", "predictions", "signals", "orders", "fills", "positions", "outbox", "models", "kv", "decisions")


class Database:
    """The daemon's SQLite database: connection, transactions, key-value settings. The tables'
    methods live in the concept modules (bars, decisions, orders, outbox, models); `Store`
    gathers them."""

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
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA busy_timeout=5000")
        migrate(conn, path, self.transaction)

    @property
    def conn(self) -> sqlite3.Connection:
        return self.db.conn

    def schema_version(self) -> int:
        """The database's `PRAGMA user_version`: the newest migration step applied."""
        return user_version(self.conn)

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Group writes into one commit (all or nothing).

        Nestable: inside an open transaction this is a savepoint, so an inner block that
        raises undoes only its own writes and the outer one decides whether to commit.
        On some errors (a full disk, an I/O error) SQLite rolls the whole transaction back by
        itself: every later block of it then raises too, instead of writing outside it
        (autocommit), and the outer one raises rather than commit nothing.
        """
        conn = self.conn
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
        if self.conn.in_transaction:
            self._after_commit.append(fn)
        else:
            fn()

    def in_transaction(self) -> bool:
        """Whether a transaction is open now (writes made so far are not committed yet)."""
        return self.conn.in_transaction

    # --- key-value ------------------------------------------------------------------------

    def get_kv(self, key: str, default: str | None = None) -> str | None:
        """A small persistent setting (e.g. the pause flag)."""
        row = self.conn.execute("SELECT value FROM kv WHERE key=?", [key]).fetchone()
        return row[0] if row else default

    def set_kv(self, key: str, value: str) -> None:
        """Set a small persistent setting (it may run inside a decision's transaction)."""
        self.conn.execute("INSERT OR REPLACE INTO kv (key, value) VALUES (?, ?)", [key, value])

    def count(self, table: str, where: str = "", params: Any = ()) -> int:
        """Row count of a table, optionally filtered (`where`: an SQL condition, for tests and benches)."""
        if table not in TABLES:
            raise ValueError(f"unknown table {table!r}")
        sql = f"SELECT COUNT(*) FROM [{table}]" + (f" WHERE {where}" if where else "")
        return int(self.conn.execute(sql, list(params)).fetchone()[0])

    @staticmethod
    def _dicts(cur: sqlite3.Cursor) -> list[dict[str, Any]]:
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row)) for row in cur.fetchall()]

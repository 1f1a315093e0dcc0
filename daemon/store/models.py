"""The model registry (daemon/retrain/nightly.py): one row per trained candidate, with its
status: current (serving), previous (the one before, kept for a rollback), retired, rejected.
At most one current and one previous per name (unique in SQL)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from daemon.store.db import Database


class ModelsTable(Database):
    """Registry rows (owner: the nightly retrain)."""

    def current_model(self, name: str) -> dict[str, Any] | None:
        """The registry row of the model now serving under `name`, or None."""
        cur = self.conn.execute("SELECT * FROM models WHERE name=? AND status='current' ORDER BY id DESC LIMIT 1", [name])
        rows = self._dicts(cur)
        return rows[0] if rows else None

    def model_rows(self, name: str | None = None) -> list[dict[str, Any]]:
        """Registry rows, newest first (all models, or one)."""
        where, params = ("WHERE name=?", [name]) if name else ("", [])
        return self._dicts(self.conn.execute(f"SELECT * FROM models {where} ORDER BY id DESC", params))

    def record_model(self, name: str, version: str, path: str, status: str, metrics: str, now_ms: int) -> int:
        """Add a registry row; a new "current" demotes the old current to "previous" and the old
        previous to "retired", in one transaction."""
        with self.transaction():
            if status == "current":
                self.conn.execute("UPDATE models SET status='retired' WHERE name=? AND status='previous'", [name])
                self.conn.execute("UPDATE models SET status='previous' WHERE name=? AND status='current'", [name])
            cur = self.conn.execute(
                "INSERT INTO models (name, version, path, status, metrics, created_ms) VALUES (?, ?, ?, ?, ?, ?)",
                [name, version, path, status, metrics, now_ms],
            )
        return int(cur.lastrowid or 0)

    def set_model_paths(self, paths: Iterable[tuple[int, str]]) -> int:
        """Set the artifact path of registry rows, (row id, path) each, in one transaction; how many."""
        rows = [(path, row_id) for row_id, path in paths]
        with self.transaction():
            self.conn.executemany("UPDATE models SET path=? WHERE id=?", rows)
        return len(rows)

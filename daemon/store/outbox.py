"""The alert outbox (daemon/alerts/outbox.py): one row per (event, channel), delivered once.

Row status: pending -> sent | skipped | dead. `id` is "<event_id>/<channel>" and (event_id,
channel) is unique, so adding the same event twice is a no-op (INSERT OR IGNORE), which makes
publish idempotent; a finished row never changes status again (a trigger refuses it), so it is
never delivered twice (daemon/store/migrations.py)."""

from __future__ import annotations

from typing import Any

from daemon.store.db import Database

OUTBOX_COLUMNS = (
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


class OutboxTable(Database):
    """Outbox rows (owner: the outbox and its per-channel workers)."""

    def add_outbox(self, rows: list[dict[str, Any]]) -> int:
        """Insert outbox rows in one transaction; rows whose id exists are ignored. Returns rows added."""
        cols = OUTBOX_COLUMNS
        sql = f"INSERT OR IGNORE INTO outbox ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"
        conn = self.conn
        with self.transaction():
            before = conn.total_changes
            conn.executemany(sql, [[r.get(c) for c in cols] for r in rows])
        return conn.total_changes - before

    def due_outbox(self, channel: str, now_ms: int, limit: int = 50) -> list[dict[str, Any]]:
        """Pending rows of a channel whose next attempt is due, oldest first."""
        cur = self.conn.execute(
            "SELECT * FROM outbox WHERE channel=? AND status='pending' AND next_attempt_ms<=? ORDER BY created_ms, rowid LIMIT ?",
            [channel, now_ms, limit],
        )
        return self._dicts(cur)

    def next_outbox_due_ms(self, channel: str) -> int | None:
        """When the channel's earliest pending row becomes due (None when nothing is pending)."""
        row = self.conn.execute(
            "SELECT MIN(next_attempt_ms) FROM outbox WHERE channel=? AND status='pending'", [channel]
        ).fetchone()
        return row[0] if row and row[0] is not None else None

    def update_outbox(self, row_id: str, **fields: Any) -> None:
        """Set columns of one outbox row (status, attempts, next_attempt_ms, last_error, sent_ms)."""
        unknown = set(fields) - set(OUTBOX_COLUMNS)
        if unknown:
            raise ValueError(f"unknown outbox column(s): {sorted(unknown)}")
        assignments = ", ".join(f"{k}=?" for k in fields)
        self.conn.execute(f"UPDATE outbox SET {assignments} WHERE id=?", [*fields.values(), row_id])

    def outbox_depth(self) -> dict[tuple[str, str], int]:
        """Count of pending and dead rows per (channel, status)."""
        cur = self.conn.execute(
            "SELECT channel, status, COUNT(*) FROM outbox WHERE status IN ('pending', 'dead') GROUP BY channel, status"
        )
        return {(ch, st): n for ch, st, n in cur.fetchall()}

    def outbox_rows(self, channel: str | None = None, status: str | None = None) -> list[dict[str, Any]]:
        """Outbox rows (optionally of one channel / status), oldest first."""
        where = " AND ".join(w for w, v in (("channel=?", channel), ("status=?", status)) if v is not None)
        cur = self.conn.execute(
            "SELECT * FROM outbox" + (f" WHERE {where}" if where else "") + " ORDER BY created_ms, rowid",
            [v for v in (channel, status) if v is not None],
        )
        return self._dicts(cur)

    def purge_outbox(self, before_ms: int) -> int:
        """Delete finished rows (sent, skipped, dead) created before `before_ms`; returns rows deleted."""
        cur = self.conn.execute("DELETE FROM outbox WHERE status IN ('sent', 'skipped', 'dead') AND created_ms<?", [before_ms])
        return cur.rowcount

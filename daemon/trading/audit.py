"""The audit trail's rows for trigger bars that were not decided (superseded, failed, refused by
SQLite): one decision row each, with its reason (daemon/store.py, docs/concepts/audit-trail.md).

A row that SQLite does not take now (a full disk) is owed and written with the next rows, or
at the next cycle or at shutdown, once SQLite takes writes again: no trigger bar is left
without its row, and none gets two (the key is unique in SQL; the first row stays).
"""

from __future__ import annotations

import sqlite3

from daemon import log as logging
from daemon.domain import Bar
from daemon.metrics import REGISTRY
from daemon.store import Store
from daemon.trading.orders import wall_ms

log = logging.get("audit")
OWED = REGISTRY.gauge("sigd_decision_rows_owed", "Decision rows SQLite has not taken yet (written once it does)")


class AuditTrail:
    """Decision rows of undecided trigger bars, written at once or owed until SQLite takes them."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.owed: dict[tuple[str, str, int], tuple[str, str]] = {}  # (symbol, timeframe, ts) -> (reason, detail)

    def record(self, bar: Bar, reason: str, detail: str = "") -> None:
        """Give `bar` its row with `reason` (no-op when it has one already)."""
        self.owed.setdefault((bar.symbol, bar.timeframe, bar.ts), (reason, detail))
        log.info("decision_recorded", symbol=bar.symbol, bar_ts=bar.ts, reason=reason, detail=detail[:200])
        self.flush()

    def flush(self) -> int:
        """Write every owed row in one transaction; how many were new (0 while SQLite refuses)."""
        if not self.owed:
            return 0
        now = wall_ms()
        try:
            with self.store.transaction():
                written = sum(self.store.mark_decided(symbol, tf, ts, 0, now, reason, detail)
                              for (symbol, tf, ts), (reason, detail) in self.owed.items())
        except sqlite3.Error as exc:  # the store counted it (health is red): kept for the next try
            log.error("decision_rows_owed", rows=len(self.owed), error=f"{type(exc).__name__}: {exc}")
            OWED.set(len(self.owed))
            return 0
        if len(self.owed) > 1 or OWED.get():
            log.info("decision_rows_written", rows=len(self.owed), new=written)
        self.owed.clear()
        OWED.set(0)
        return written

"""The audit trail's rows for trigger bars that were not decided (superseded, missed while sigd was
down, failed, refused by SQLite): one decision row each, with its reason (daemon/store/decisions.py,
docs/concepts/audit-trail.md).

A row that SQLite does not take now (a full disk) is owed and written with the next rows, or
at the next cycle or at shutdown, once SQLite takes writes again: no trigger bar is left
without its row, and none gets two (the key is unique in SQL; the first row stays).
"""

from __future__ import annotations

import sqlite3

from daemon import log as logging
from daemon.domain import Bar
from daemon.metrics import REGISTRY
from daemon.store import Reason, Store
from daemon.trading.orders import wall_ms

log = logging.get("audit")
OWED = REGISTRY.gauge("sigd_decision_rows_owed", "Decision rows SQLite has not taken yet (written once it does)")


class AuditTrail:
    """Decision rows of undecided trigger bars, written at once or owed until SQLite takes them."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.owed: dict[tuple[str, str, int], tuple[str, str]] = {}  # (symbol, timeframe, ts) -> (reason, detail)
        self._caught_up: set[str] = set()  # symbols whose first live trigger bar came in this process

    def catch_up(self, bar: Bar, last_decided_ts: int) -> None:
        """At a symbol's first live trigger bar in this process: MISSED rows for the stored bars
        between its newest row and `bar`, which closed while sigd was down or warming up (the
        warm-up stores them; only live bars reach the engine). Nothing of the symbol is in
        flight yet, so none of them can still get a decision."""
        if bar.symbol in self._caught_up:
            return
        self._caught_up.add(bar.symbol)
        if last_decided_ts < 0:
            return  # a new state: what came before is history, not a missed decision
        missed = list(self.store.iter_bars(bar.symbol, bar.timeframe, last_decided_ts + 1, bar.ts))
        for b in missed:
            self.owed.setdefault((b.symbol, b.timeframe, b.ts), (Reason.MISSED, "closed while sigd was down or warming up"))
        if missed:
            log.info("decisions_missed", symbol=bar.symbol, bars=len(missed), first_ts=missed[0].ts, last_ts=missed[-1].ts)
            self.flush()

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
                written = sum(
                    self.store.mark_decided(symbol, tf, ts, 0, now, reason, detail)
                    for (symbol, tf, ts), (reason, detail) in self.owed.items()
                )
        except sqlite3.Error as exc:  # the store counted it (health is red): kept for the next try
            log.error("decision_rows_owed", rows=len(self.owed), error=f"{type(exc).__name__}: {exc}")
            OWED.set(len(self.owed))
            return 0
        if len(self.owed) > 1 or OWED.get():
            log.info("decision_rows_written", rows=len(self.owed), new=written)
        self.owed.clear()
        OWED.set(0)
        return written

"""SQLite state (WAL), the only package that speaks SQL: bars, decisions with their predictions
and signals, orders with fills and positions, the alert outbox, the model registry and a small
key-value table. Tables and invariants: docs/concepts/store.md.

- db.py: the connection, transactions (nesting savepoints), after-commit callbacks, key-value;
- migrations.py: numbered schema steps (PRAGMA user_version), the only code that changes tables;
- bars.py, decisions.py, orders.py, outbox.py, models.py: one concept each.

`Store` gathers them: one object per process, used from the event-loop thread only.
"""

from __future__ import annotations

from daemon.store.bars import BarsTable
from daemon.store.decisions import DecisionsTable, Reason, SignalMark, StoredPrediction, StoredSignal
from daemon.store.migrations import MIGRATIONS, SCHEMA_VERSION
from daemon.store.models import ModelsTable
from daemon.store.orders import OrdersTable, StoredOrder
from daemon.store.outbox import OutboxTable

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "Reason", "SignalMark", "Store", "StoredOrder", "StoredPrediction", "StoredSignal"]


class Store(BarsTable, DecisionsTable, OrdersTable, OutboxTable, ModelsTable):
    """The daemon's SQLite database (daemon/store/db.py `Database`), every table's methods."""

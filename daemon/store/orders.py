"""The ledger: order intents, their fills and the positions they make. An order's client id is
derived from its decision (daemon/trading/orders.py client_order_id), and it is the primary
key, so one intent is stored, and sent, once; an order has at most one fill (unique in SQL)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

from daemon.domain import Fill, Order, OrderStatus, Position
from daemon.store.db import Database


class StoredOrder(NamedTuple):
    """An order row with its bookkeeping and the reasons its signal gave (none for a flatten)."""

    order: Order
    error: str | None
    created_ms: int
    strategy: str | None
    reasons: tuple[str, ...]


_ORDER_COLUMNS = "client_order_id, symbol, side, type, amount, price, bar_ts, status, exchange_id"


def _order(row: Sequence[Any]) -> Order:
    """An Order from a row that starts with the columns of _ORDER_COLUMNS."""
    client_order_id, symbol, side, type_, amount, price, bar_ts, status, exchange_id = row[:9]
    return Order(client_order_id, symbol, side, type_, amount, price, bar_ts, OrderStatus(status), exchange_id)


class OrdersTable(Database):
    """Orders, fills and positions (owner: the engine's ledger, inside the decision's transaction)."""

    def put_order(self, order: Order, created_ms: int, not_before_ts: int | None = None) -> bool:
        """Insert an order unless its client id exists; True when it was inserted."""
        cur = self.conn.execute(
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
        self.conn.execute(
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
        cur = self.conn.execute(
            f"SELECT {_ORDER_COLUMNS}, not_before_ts FROM orders {where} ORDER BY created_ms, rowid",
            params,
        )
        return [(_order(row), row[9]) for row in cur]

    def recent_orders(self, n: int) -> list[StoredOrder]:
        """The newest `n` orders (by insertion), newest first, each with the strategy and reasons
        of the newest signal of its symbol and bar."""
        cur = self.conn.execute(
            f"SELECT {', '.join('o.' + c for c in _ORDER_COLUMNS.split(', '))}, o.error, o.created_ms, s.strategy, s.reasons "
            "FROM (SELECT * FROM orders ORDER BY rowid DESC LIMIT ?) o "
            "LEFT JOIN signals s ON s.id = (SELECT MAX(id) FROM signals WHERE symbol = o.symbol AND bar_ts = o.bar_ts) "
            "ORDER BY o.created_ms DESC",
            [n],
        )
        return [
            StoredOrder(
                _order(row),
                row[9],
                row[10],
                row[11],
                tuple(json.loads(row[12] or "[]")),
            )
            for row in cur.fetchall()
        ]

    def order_created_ms(self, client_order_id: str) -> int:
        """Wall-clock ms at which an order was stored (KeyError when unknown)."""
        row = self.conn.execute("SELECT created_ms FROM orders WHERE client_order_id=?", [client_order_id]).fetchone()
        if row is None:
            raise KeyError(f"no order with client id {client_order_id!r}")
        return int(row[0])

    # --- fills ----------------------------------------------------------------------------

    def add_fill(self, fill: Fill) -> bool:
        """Insert the fill of an order unless that order already has one; True when inserted."""
        cur = self.conn.execute(
            "INSERT OR IGNORE INTO fills (client_order_id, symbol, side, price, amount, fee, ts, event_id) "
            "VALUES (?,?,?,?,?,?,?,?)",
            [
                fill.client_order_id,
                fill.symbol,
                fill.side,
                fill.price,
                fill.amount,
                fill.fee,
                fill.ts,
                f"fill-{fill.client_order_id}",
            ],
        )
        return cur.rowcount == 1

    def fills(self, *, symbol: str | None = None, since_ts: int | None = None, newest: int | None = None) -> list[Fill]:
        """Fills oldest first (in the order stored): all symbols or one, from bar `since_ts` on;
        `newest`: only that many of the newest."""
        clauses, params = [], []
        for clause, value in (("symbol=?", symbol), ("ts>=?", since_ts)):
            if value is not None:
                clauses.append(clause)
                params.append(value)
        where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
        cur = self.conn.execute(
            f"SELECT client_order_id, symbol, side, price, amount, fee, ts FROM fills {where} ORDER BY id DESC LIMIT ?",
            [*params, -1 if newest is None else newest],
        )
        return [Fill(*row) for row in reversed(cur.fetchall())]

    def fills_by_time(self, limit: int) -> list[Fill]:
        """The first `limit` fills in bar-time order (ts, then as stored): an equity curve's points."""
        cur = self.conn.execute(
            "SELECT client_order_id, symbol, side, price, amount, fee, ts FROM fills ORDER BY ts, id LIMIT ?", [limit]
        )
        return [Fill(*row) for row in cur.fetchall()]

    # --- positions ------------------------------------------------------------------------

    def get_position(self, symbol: str) -> Position:
        """The stored position (flat when none)."""
        row = self.conn.execute(
            "SELECT amount, entry_price, realized_pnl, fees FROM positions WHERE symbol=?", [symbol]
        ).fetchone()
        return Position(symbol, *row) if row else Position(symbol)

    def put_position(self, position: Position, updated_ms: int) -> None:
        """Store a position."""
        self.conn.execute(
            "INSERT OR REPLACE INTO positions (symbol, amount, entry_price, realized_pnl, fees, updated_ms) VALUES (?,?,?,?,?,?)",
            [position.symbol, position.amount, position.entry_price, position.realized_pnl, position.fees, updated_ms],
        )

"""What the engine decided at each trigger bar: decision rows (the audit trail), the models'
predictions and the strategies' signals. Each is written once per bar, unique in SQL:
decisions (symbol, timeframe, bar_ts), predictions (symbol, model, bar_ts), signals (symbol,
strategy, bar_ts) and their event ids (daemon/store/migrations.py)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, NamedTuple

from daemon.domain import Prediction, Side, Signal, class_scores
from daemon.store.db import Database


class Reason:
    """What became of a trigger bar: its decision row's `reason` (docs/concepts/audit-trail.md)."""

    DECIDED, PAUSED, HALTED = "decided", "paused", "halted"  # decided; paused/halted: no new entries
    SUPERSEDED = "superseded"  # a newer bar of the symbol arrived while this one waited: not decided
    MISSED = "missed"  # closed while sigd was down or warming up: never reached the engine
    FAILED = "failed"  # the decision raised (a bug): rolled back, not retried
    FAILED_COMMIT = "failed_commit"  # SQLite refused the decision's writes, also when retried


class StoredSignal(NamedTuple):
    """A signal row: its row id (the event id is "signal-<id>"), the signal, its latency."""

    id: int
    signal: Signal
    latency_ms: float | None


class SignalMark(NamedTuple):
    """A signal as a chart marks it: no reasons or model versions, which cost a JSON parse each."""

    id: int
    bar_ts: int
    side: Side
    confidence: float
    price: float
    strategy: str


class StoredPrediction(NamedTuple):
    """A prediction row: one model's answer at one trigger bar."""

    bar_ts: int
    model: str
    version: str
    scores: dict[str, float]  # p_short/p_flat/p_long and the family's other named scores
    side: Side
    confidence: float
    threshold: float


_SIGNAL_COLUMNS = "id, symbol, bar_ts, strategy, side, confidence, price, reasons, model_versions, latency_ms"


def _stored_signal(row: Sequence[Any]) -> StoredSignal:
    signal_id, symbol, bar_ts, strategy, side, conf, price, reasons, versions, latency_ms = row
    signal = Signal(
        symbol, bar_ts, Side(side), conf, price, strategy, tuple(json.loads(reasons or "[]")), json.loads(versions or "{}")
    )
    return StoredSignal(signal_id, signal, latency_ms)


def _stored_prediction(row: Sequence[Any]) -> StoredPrediction:
    bar_ts, model, version, scores, side, conf, threshold = row
    return StoredPrediction(bar_ts, model, version, json.loads(scores or "{}"), Side(side), conf, threshold)


class DecisionsTable(Database):
    """Decision rows, predictions and signals (owner: the engine, in one transaction per decision)."""

    def decided(self, symbol: str, bar_ts: int) -> bool:
        """Whether the trigger bar of `symbol` at `bar_ts` was decided (and committed) before."""
        return self.conn.execute("SELECT 1 FROM decisions WHERE symbol=? AND bar_ts=?", [symbol, bar_ts]).fetchone() is not None

    def last_decided_ts(self, symbol: str) -> int | None:
        """Open time of the newest trigger bar of `symbol` with a decision row (None: none yet)."""
        row = self.conn.execute("SELECT MAX(bar_ts) FROM decisions WHERE symbol=?", [symbol]).fetchone()
        return None if row is None or row[0] is None else int(row[0])

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
        cur = self.conn.execute(
            "INSERT OR IGNORE INTO decisions (symbol, timeframe, bar_ts, reason, detail, signals, created_ms) "
            "VALUES (?,?,?,?,?,?,?)",
            [symbol, timeframe, bar_ts, reason, detail[:300], signals, created_ms],
        )
        return cur.rowcount > 0

    def adopt_decisions(self, timeframe: str) -> int:
        """Give rows written before schema version 1 (no timeframe then) the trigger timeframe
        they were decided on; how many. The engine calls it at start with its own."""
        with self.transaction():
            cur = self.conn.execute("UPDATE OR IGNORE decisions SET timeframe=? WHERE timeframe=''", [timeframe])
        return cur.rowcount

    def decision_rows(self, symbol: str | None = None) -> list[dict[str, Any]]:
        """Every decision row (of `symbol`), oldest bar first."""
        sql = "SELECT symbol, timeframe, bar_ts, reason, detail, signals, created_ms FROM decisions"
        cur = self.conn.execute(
            sql + (" WHERE symbol=?" if symbol else "") + " ORDER BY bar_ts, symbol", [symbol] if symbol else []
        )
        return self._dicts(cur)

    # --- predictions ----------------------------------------------------------------------

    def add_predictions(self, symbol: str, predictions: Sequence[Prediction], created_ms: int) -> None:
        """Store one trigger bar's predictions (one already stored for the model and bar stays)."""
        self.conn.executemany(
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

    def prediction_rows(self, symbol: str) -> list[tuple[Any, ...]]:
        """(bar_ts, model, version, p_short, p_flat, p_long, side, confidence, threshold), oldest
        first (the backtest reads a run back with it)."""
        cur = self.conn.execute(
            "SELECT bar_ts, model, version, json_extract(scores, '$.p_short'), json_extract(scores, '$.p_flat'), "
            "json_extract(scores, '$.p_long'), side, confidence, threshold "
            "FROM predictions WHERE symbol=? ORDER BY bar_ts, model",
            [symbol],
        )
        return cur.fetchall()

    def latest_predictions(self, symbol: str) -> list[StoredPrediction]:
        """Every model's prediction at the newest trigger bar of `symbol` with one, by model name."""
        cur = self.conn.execute(
            "SELECT bar_ts, model, version, scores, side, confidence, threshold FROM predictions "
            "WHERE symbol=? AND bar_ts = (SELECT MAX(bar_ts) FROM predictions WHERE symbol=?) ORDER BY model",
            [symbol, symbol],
        )
        return [_stored_prediction(row) for row in cur.fetchall()]

    def model_predictions(self, symbol: str, model: str, after: int, until: int) -> list[StoredPrediction]:
        """The predictions of one model with after < bar_ts <= until, oldest first (live scoring)."""
        cur = self.conn.execute(
            "SELECT bar_ts, model, version, scores, side, confidence, threshold FROM predictions "
            "WHERE symbol=? AND model=? AND bar_ts>? AND bar_ts<=? ORDER BY bar_ts",
            [symbol, model, after, until],
        )
        return [_stored_prediction(row) for row in cur.fetchall()]

    # --- signals --------------------------------------------------------------------------

    def add_signal(self, signal: Signal, latency_ms: float, created_ms: int) -> int | None:
        """Store a signal with its event id "signal-<row id>"; None when the strategy already
        signalled on this symbol's bar (a decision is made once)."""
        conn = self.conn
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

    def signals(self, *, symbol: str | None = None, limit: int = 100) -> list[tuple[int, Signal]]:
        """(id, Signal), newest first (all symbols, or one)."""
        return [(row.id, row.signal) for row in self.signal_rows(symbol=symbol, limit=limit)]

    def signal_rows(
        self, *, symbol: str | None = None, since_ts: int | None = None, bar_ts: int | None = None, limit: int = 100
    ) -> list[StoredSignal]:
        """Signal rows, newest first: all symbols or one, from bar `since_ts` on, or of one bar."""
        clauses, params = [], []
        for clause, value in (("symbol=?", symbol), ("bar_ts>=?", since_ts), ("bar_ts=?", bar_ts)):
            if value is not None:
                clauses.append(clause)
                params.append(value)
        where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
        cur = self.conn.execute(f"SELECT {_SIGNAL_COLUMNS} FROM signals {where} ORDER BY id DESC LIMIT ?", [*params, limit])
        return [_stored_signal(row) for row in cur.fetchall()]

    def signal_marks(self, symbol: str, since_ts: int, limit: int) -> list[SignalMark]:
        """The newest `limit` signals of `symbol` from bar `since_ts` on, newest first, as chart
        markers (a chart reads up to 500 at every refresh: 3x cheaper than signal_rows)."""
        cur = self.conn.execute(
            "SELECT id, bar_ts, side, confidence, price, strategy FROM signals "
            "WHERE symbol=? AND bar_ts>=? ORDER BY id DESC LIMIT ?",
            [symbol, since_ts, limit],
        )
        return [SignalMark(i, ts, Side(side), conf, price, strategy) for i, ts, side, conf, price, strategy in cur.fetchall()]

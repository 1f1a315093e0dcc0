"""Closed bars: the `bars` table, keyed (symbol, timeframe, ts), so a bar is stored once."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from daemon.domain import Bar
from daemon.store.db import Database


class BarsTable(Database):
    """Closed bars of every stream (the feed writes them; warm-up, retrain and the API read them)."""

    def add_bars(self, bars: Iterable[Bar]) -> None:
        """Insert closed bars; a bar already stored (same symbol, timeframe, ts) is replaced."""
        # Plain executemany: this runs for every closed bar of every stream, and
        # sqlite-utils' insert_all costs several times more per row.
        rows = [(b.symbol, b.timeframe, b.ts, b.open, b.high, b.low, b.close, b.volume) for b in bars]
        if not rows:
            return
        with self.transaction():  # one commit for the whole batch (autocommit mode otherwise)
            self.conn.executemany(
                "INSERT OR REPLACE INTO bars (symbol, timeframe, ts, open, high, low, close, volume) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )

    def latest_bars(self, symbol: str, timeframe: str, n: int) -> list[Bar]:
        """The newest `n` stored bars of a stream, oldest first."""
        cur = self.conn.execute(
            "SELECT ts, open, high, low, close, volume FROM bars WHERE symbol=? AND timeframe=? ORDER BY ts DESC LIMIT ?",
            [symbol, timeframe, n],
        )
        return [Bar(symbol, timeframe, *row) for row in reversed(cur.fetchall())]

    def iter_bars(self, symbol: str, timeframe: str, start: int = 0, end: int | None = None) -> Iterator[Bar]:
        """Stored bars of a stream with start <= ts < end, oldest first."""
        cur = self.conn.execute(
            "SELECT ts, open, high, low, close, volume FROM bars WHERE symbol=? AND timeframe=? AND ts>=? AND ts<? ORDER BY ts",
            [symbol, timeframe, start, end if end is not None else 2**62],
        )
        for row in cur:
            yield Bar(symbol, timeframe, *row)

    def closes_at(self, symbol: str, timeframe: str, ts: Iterable[int]) -> dict[int, float]:
        """The stored closes of a stream at the open times `ts` (only those, so the bar path stays
        cheap); a time with no stored bar is left out."""
        wanted = sorted(set(ts))
        out: dict[int, float] = {}
        for i in range(0, len(wanted), 500):  # SQLite's bound on parameters per statement
            chunk = wanted[i : i + 500]
            cur = self.conn.execute(
                f"SELECT ts, close FROM bars WHERE symbol=? AND timeframe=? AND ts IN ({','.join('?' * len(chunk))})",
                [symbol, timeframe, *chunk],
            )
            out.update((int(t), float(c)) for t, c in cur.fetchall())
        return out

    def newest_bar_ts(self) -> dict[str, int]:
        """Open time of the newest stored bar per timeframe, over every symbol ({} when empty)."""
        cur = self.conn.execute("SELECT timeframe, MAX(ts) FROM bars GROUP BY timeframe")
        return {tf: int(ts) for tf, ts in cur.fetchall() if ts is not None}

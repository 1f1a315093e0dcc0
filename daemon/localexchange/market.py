"""One symbol's bars on the replay clock: closed bars, the forming bar, klines queries, prices.

Sources per timeframe:
- 1m: the 1m tape.
- 1h / 1d: a bar whose whole span lies inside the 1m tape is AGGREGATED from the 1m bars
  (first open, max high, min low, last close, exact volume sum); bars before the 1m tape are
  the recorded rows. (On the bundled slice both agree exactly; any disagreement is logged.)
- 1s: a real 1s tape if present, else derived per minute (`seconds.derive_minute`).
The forming bar at replay instant `now` only uses data up to `now` (1s resolution), so
nothing after the replay instant is ever visible.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from decimal import Decimal

import numpy as np
import structlog

from daemon.localexchange.seconds import derive_minute, volume_units
from daemon.localexchange.tape import TIMEFRAME_MS, SymbolTape

log = structlog.get_logger("localexchange.market")
MINUTE = 60_000
# Derived 1s minutes kept per symbol (~3 KB each; re-deriving is deterministic). The pump
# needs the current minute and a 1000-row 1s klines page spans at most 18 minutes, so 64
# covers both; the former 4096 (about 12 MB per symbol, 68 market hours to fill) showed up
# as slow, linear RSS growth over long replays.
CACHE_MINUTES = 64


def aggregate(rows: np.ndarray) -> np.ndarray | None:
    """One bar [6] from consecutive bars [n, 6] (ts of the first; exact volume sum)."""
    if len(rows) == 0:
        return None
    vol = int(volume_units(rows[:, 5]).sum()) / 1e8
    return np.array([rows[0, 0], rows[0, 1], rows[:, 2].max(), rows[:, 3].min(), rows[-1, 4], vol])


def aggregate_series(m1: np.ndarray, step: int) -> np.ndarray:
    """Group 1m bars [n, 6] into bars of `step` ms: [k, 6]."""
    keys = (m1[:, 0].astype(np.int64) // step) * step
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    ends = np.r_[starts[1:], len(m1)] - 1
    units = np.add.reduceat(volume_units(m1[:, 5]), starts)
    return np.column_stack(
        [
            keys[starts].astype(np.float64),
            m1[starts, 1],
            np.maximum.reduceat(m1[:, 2], starts),
            np.minimum.reduceat(m1[:, 3], starts),
            m1[ends, 4],
            units / 1e8,
        ]
    )


@dataclass(frozen=True)
class Filters:
    """A market's Binance symbol filters (exchangeInfo lists them; orders are checked against
    them as Binance checks: LOT_SIZE, PRICE_FILTER, NOTIONAL)."""

    tick: Decimal  # PRICE_FILTER tickSize (= minPrice)
    step: Decimal  # LOT_SIZE stepSize (= minQty)
    max_price: Decimal = Decimal("1000000")
    max_qty: Decimal = Decimal("9000000")
    min_notional: Decimal = Decimal("5")
    max_notional: Decimal = Decimal("9000000")

    @classmethod
    def of(cls, price_decimals: int, qty_decimals: int) -> Filters:
        return cls(tick=Decimal(1).scaleb(-price_decimals), step=Decimal(1).scaleb(-qty_decimals))

    def lot_ok(self, qty: Decimal) -> bool:
        """LOT_SIZE: minQty <= qty <= maxQty and (qty - minQty) a multiple of stepSize."""
        return self.step <= qty <= self.max_qty and (qty - self.step) % self.step == 0

    def price_ok(self, price: Decimal) -> bool:
        """PRICE_FILTER: minPrice <= price <= maxPrice and (price - minPrice) a multiple of tickSize."""
        return self.tick <= price <= self.max_price and (price - self.tick) % self.tick == 0


def decimals(values: np.ndarray, most: int = 8) -> int:
    """The fewest decimals that write every value exactly (at most `most`)."""
    sample = np.asarray(values[:5000], dtype=np.float64)
    for d in range(most + 1):
        scaled = sample * 10.0**d
        if np.all(np.abs(scaled - np.rint(scaled)) < 1e-6 * np.maximum(1.0, np.abs(scaled) * 1e-9)):
            return d
    return most


class Market:
    """Bars of one symbol as seen from the replay clock."""

    def __init__(self, tape: SymbolTape, seed: int) -> None:
        self.symbol, self.base, self.quote = tape.symbol, tape.base, tape.quote
        self.seed = seed
        self.m1 = tape.bars["1m"]
        self._m1_ts = self.m1[:, 0].astype(np.int64)
        self.first_ms = int(self._m1_ts[0])
        self.end_ms = int(self._m1_ts[-1]) + MINUTE  # close of the last 1m bar: the replay's end
        self.price_decimals = decimals(self.m1[:, 1:5].ravel())
        self.qty_decimals = decimals(self.m1[:, 5])
        self.filters = Filters.of(self.price_decimals, self.qty_decimals)
        self.real_1s = tape.bars.get("1s")
        self.derived_1s = self.real_1s is None
        self.closed: dict[str, np.ndarray] = {"1m": self.m1}
        for tf in ("1h", "1d"):
            self.closed[tf] = self._mixed_series(tf, tape.bars.get(tf))
        if self.real_1s is not None:
            self.closed["1s"] = self.real_1s
            self._s1_ts = self.real_1s[:, 0].astype(np.int64)
        self._minutes: OrderedDict[int, np.ndarray] = OrderedDict()

    def _mixed_series(self, tf: str, recorded: np.ndarray | None) -> np.ndarray:
        step = TIMEFRAME_MS[tf]
        agg = aggregate_series(self.m1, step)
        keys = agg[:, 0].astype(np.int64)
        covered = agg[(keys >= self.first_ms) & (keys + step <= self.end_ms)]
        partial_head = agg[keys < self.first_ms]  # span starts before the 1m tape
        if recorded is None or len(recorded) == 0:
            return np.vstack([partial_head, covered])
        rec_ts = recorded[:, 0].astype(np.int64)
        self._log_disagreement(tf, recorded, covered)
        cover_lo = int(covered[0, 0]) if len(covered) else self.end_ms
        before = recorded[rec_ts < cover_lo]
        head = partial_head[~np.isin(partial_head[:, 0], before[:, 0])]
        return np.vstack([before, head, covered])

    def _log_disagreement(self, tf: str, recorded: np.ndarray, covered: np.ndarray) -> None:
        common, ri, ci = np.intersect1d(recorded[:, 0], covered[:, 0], return_indices=True)
        if len(common) == 0:
            return
        a, b = recorded[ri], covered[ci]
        bad = ~(np.all(a[:, 1:5] == b[:, 1:5], axis=1) & (volume_units(a[:, 5]) == volume_units(b[:, 5])))
        if bad.any():
            log.warning(
                "aggregation_disagrees_with_recorded",
                symbol=self.symbol,
                timeframe=tf,
                bars=int(bad.sum()),
                of=len(common),
                first_ts=int(common[bad][0]),
            )

    # -- 1s ------------------------------------------------------------------------------
    def minute_seconds(self, minute_ts: int) -> np.ndarray | None:
        """The 1s bars [k, 6] inside one minute (real, or derived), None if the minute is absent."""
        if self.real_1s is not None:
            i, j = np.searchsorted(self._s1_ts, [minute_ts, minute_ts + MINUTE])
            return self.real_1s[i:j] if j > i else None
        cached = self._minutes.get(minute_ts)
        if cached is not None:
            self._minutes.move_to_end(minute_ts)
            return cached
        row = self.m1_row(minute_ts)
        if row is None:
            return None
        secs = derive_minute(row, self.seed, self.symbol, self.price_decimals)
        self._minutes[minute_ts] = secs
        if len(self._minutes) > CACHE_MINUTES:
            self._minutes.popitem(last=False)
        return secs

    def m1_row(self, ts: int) -> np.ndarray | None:
        """The recorded 1m bar opening at `ts`, or None (outside the tape or a gap)."""
        i = int(np.searchsorted(self._m1_ts, ts))
        return self.m1[i] if i < len(self.m1) and self._m1_ts[i] == ts else None

    # -- closed and forming bars -----------------------------------------------------------
    def closed_bar(self, tf: str, open_ms: int) -> np.ndarray | None:
        """The final bar of `tf` opening at `open_ms`, or None if the tape has none there."""
        if tf == "1s" and self.derived_1s:
            secs = self.minute_seconds(open_ms - open_ms % MINUTE)
            return None if secs is None else secs[(open_ms % MINUTE) // 1000]
        arr = self.closed[tf]
        i = int(np.searchsorted(arr[:, 0], open_ms))
        return arr[i] if i < len(arr) and arr[i, 0] == open_ms else None

    def forming_bar(self, tf: str, now: int) -> np.ndarray | None:
        """The bar of `tf` containing `now` with only the data up to `now`; None if it has none."""
        step = TIMEFRAME_MS[tf]
        start = now - now % step
        if now <= start:
            return None  # the bar opens exactly now: nothing traded in it yet
        minute = now - now % MINUTE
        secs = self.minute_seconds(minute)
        sec = now - now % 1000
        if tf == "1s":
            if secs is None:
                return None
            row = secs[secs[:, 0] == sec]
            return None if len(row) == 0 else np.array([sec, *([row[0, 1]] * 4), 0.0])
        part = None if secs is None else self._partial_minute(secs, minute, sec)
        if tf == "1m":
            return part
        i, j = np.searchsorted(self._m1_ts, [start, minute])
        rows = self.m1[i:j] if part is None else np.vstack([self.m1[i:j], part])
        bar = aggregate(rows)
        if bar is not None:
            bar[0] = start
        return bar

    @staticmethod
    def _partial_minute(secs: np.ndarray, minute: int, sec: int) -> np.ndarray | None:
        done = secs[secs[:, 0] < sec]
        if len(done):
            return aggregate(done)
        opening = secs[secs[:, 0] == sec]
        if len(opening) == 0:
            return None
        return np.array([minute, *([opening[0, 1]] * 4), 0.0])

    def price(self, now: int) -> float | None:
        """The last traded price at `now` (1s resolution), None before the tape."""
        minute = now - now % MINUTE
        secs = self.minute_seconds(minute)
        if secs is not None:
            upto = secs[secs[:, 0] <= now - now % 1000]
            if len(upto):
                last = upto[-1]
                return float(last[1] if last[0] == now - now % 1000 else last[4])
        i = int(np.searchsorted(self._m1_ts, minute)) - 1
        return float(self.m1[i, 4]) if i >= 0 else None

    def price_range(self, t0: int, t1: int) -> tuple[float, float] | None:
        """(low, high) traded in (t0, t1] at 1s resolution, None if nothing traded."""
        lows, highs = [], []
        m0, m1 = t0 - t0 % MINUTE, t1 - t1 % MINUTE
        i, j = np.searchsorted(self._m1_ts, [m0 + MINUTE, m1])
        if j > i:  # whole minutes strictly inside the interval
            lows.append(self.m1[i:j, 3].min())
            highs.append(self.m1[i:j, 2].max())
        for minute in sorted({m0, m1}):
            secs = self.minute_seconds(minute)
            if secs is None:
                continue
            sel = secs[(secs[:, 0] + 1000 > t0) & (secs[:, 0] < t1 - t1 % 1000)]
            lows.extend(sel[:, 3])
            highs.extend(sel[:, 2])
        p = self.price(t1)
        if p is not None and t1 > t0:
            lows.append(p)
            highs.append(p)
        return (float(min(lows)), float(max(highs))) if lows else None

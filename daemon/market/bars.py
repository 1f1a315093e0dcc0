"""Ring buffers of closed bars: one fixed-capacity ring per (symbol, timeframe).

Each ring stores its rows twice in a backing array of 2 x capacity rows, so the newest n
rows always sit next to each other: appending is O(1) (two row writes) and any window is a
contiguous slice, copied with a single memcpy of n rows — never the whole history.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from daemon.domain import Bar, timeframe_ms

COLUMNS = ("ts", "open", "high", "low", "close", "volume")


class Ring:
    """The newest `capacity` closed bars of one stream, oldest first."""

    def __init__(self, symbol: str, timeframe: str, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"ring {symbol} {timeframe}: capacity must be >= 1, got {capacity}")
        self.symbol, self.timeframe, self.capacity = symbol, timeframe, capacity
        self.step_ms = timeframe_ms(timeframe)
        # [2 * capacity, 6] float64; row i and row i + capacity always hold the same bar.
        self._data = np.zeros((2 * capacity, len(COLUMNS)), dtype=np.float64)
        self._count = 0  # bars ever appended
        self.last_ts: int | None = None

    def __len__(self) -> int:
        return min(self._count, self.capacity)

    def append(self, bar: Bar) -> None:
        """Add the next closed bar; its ts must be after the newest bar's."""
        if self.last_ts is not None and bar.ts <= self.last_ts:
            raise ValueError(f"ring {self.symbol} {self.timeframe}: bar {bar.ts} not after {self.last_ts}")
        self.append_row(bar.as_row())

    def append_row(self, row: Sequence[float]) -> None:
        """Add one (ts, o, h, l, c, v) row without building a Bar (the hot path of extend)."""
        i = self._count % self.capacity
        self._data[i] = row
        self._data[i + self.capacity] = row
        self._count += 1
        self.last_ts = int(row[0])

    def extend(self, bars: Iterable[Bar]) -> None:
        """Append bars in order."""
        for bar in bars:
            self.append(bar)

    def view(self, n: int | None = None) -> np.ndarray:
        """The newest n rows [n, 6] as a read-only view; valid only until the next append."""
        n = len(self) if n is None else min(n, len(self))
        end = (self._count - 1) % self.capacity + self.capacity + 1 if self._count else 0
        out = self._data[end - n : end]
        out.flags.writeable = False
        return out

    def window(self, n: int | None = None) -> np.ndarray:
        """The newest n rows [n, 6] (ts, o, h, l, c, v), oldest first, as an owned copy.

        A copy so that a consumer working off the event loop (inference) never sees a row
        change under it; fewer rows than asked when the ring is not yet that full.
        """
        return self.view(n).copy()

    def clear(self) -> None:
        """Forget every bar (a stream that must be rebuilt from scratch)."""
        self._count = 0
        self.last_ts = None


def window_key(symbol: str, timeframe: str, primary: str) -> str:
    """Key in the window convention: "1m" for the primary symbol, "btc_1m" for another one."""
    if symbol == primary:
        return timeframe
    return f"{symbol.split('/')[0].lower()}_{timeframe}"


class Buffers:
    """Every ring of the daemon, keyed by (symbol, timeframe)."""

    def __init__(self) -> None:
        self.rings: dict[tuple[str, str], Ring] = {}

    def add(self, symbol: str, timeframe: str, capacity: int) -> Ring:
        """Create (or return the existing) ring of a stream."""
        key = (symbol, timeframe)
        if key not in self.rings:
            self.rings[key] = Ring(symbol, timeframe, capacity)
        return self.rings[key]

    def ring(self, symbol: str, timeframe: str) -> Ring:
        """The ring of one stream; KeyError names the stream when it is not buffered."""
        try:
            return self.rings[(symbol, timeframe)]
        except KeyError:
            raise KeyError(f"no ring buffer for {symbol} {timeframe}") from None

    def append(self, bar: Bar) -> None:
        """Append a closed bar to its stream's ring."""
        self.ring(bar.symbol, bar.timeframe).append(bar)

    def windows(
        self,
        symbol: str,
        timeframes: Sequence[str],
        reference_symbol: str,
        reference_timeframe: str = "1m",
        sizes: Mapping[str, int] | None = None,
    ) -> dict[str, np.ndarray]:
        """Windows in the convention: {"1s", "1m", "1h", "1d", "btc_1m"} -> float64 [n, 6].

        `sizes` maps a key to the rows wanted (default: everything buffered). A stream that is
        not buffered is left out, which a predictor reads as degraded input.
        """
        wanted = [(symbol, tf) for tf in timeframes] + [(reference_symbol, reference_timeframe)]
        out: dict[str, np.ndarray] = {}
        for i, (sym, tf) in enumerate(wanted):
            ring = self.rings.get((sym, tf))
            if ring is None:
                continue
            # The reference keeps its own key when it is also the symbol decided (BTC/USDT
            # traded): its 1m is then both "1m" and "btc_1m", from the one ring.
            key = window_key(sym, tf, "" if i == len(wanted) - 1 else symbol)
            out[key] = ring.window(None if sizes is None else sizes.get(key))
        return out

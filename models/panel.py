"""A panel: bars of many pairs on one regular time grid, NaN where a pair has no bar.

Loaded by `daemon.research.dataset.load_panel` from tape files (research). It lives in models/
with the cross-sectional features (`models.xsfeatures`) and the panel targets (`models.labels`)
that read it, so that the live daemon, which may import models/ but not daemon.research, can
compute the same features from a panel of its own recent bars.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from daemon.domain import timeframe_ms

FIELDS: tuple[str, ...] = ("open", "high", "low", "close", "volume")


class DatasetError(ValueError):
    """Bad input to the data set; the message is one line naming the flag or key."""


@dataclass(frozen=True)
class Panel:
    """Bars of many pairs on one regular grid; NaN where a pair has no bar."""

    timeframe: str  # "1h" | "4h" | "1d"
    symbols: tuple[str, ...]  # ccxt spelling, "BTC/USDT"
    ts: np.ndarray  # int64 ms UTC bar-open times (T,), every step of the timeframe
    open: np.ndarray  # float64 (T, S)
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    gaps: dict[str, int]  # per symbol: missing bars between its first and last bar

    @property
    def present(self) -> np.ndarray:
        """bool (T, S): the pair has a bar at this time."""
        return np.isfinite(self.close)

    def column(self, symbol: str) -> int:
        """Index of a symbol in the panel's columns."""
        try:
            return self.symbols.index(symbol)
        except ValueError:
            raise DatasetError(f"--symbols: {symbol} is not in the panel ({', '.join(self.symbols)})") from None

    def bars(self, symbol: str) -> np.ndarray:
        """One pair's present bars as rows [n, 6] (ts, o, h, l, c, v), the tape-file layout."""
        j = self.column(symbol)
        ok = self.present[:, j]
        return np.column_stack([self.ts[ok].astype(np.float64)] + [getattr(self, f)[ok, j] for f in FIELDS])


def resample_panel(panel: Panel, timeframe: str) -> Panel:
    """A panel's bars at a longer timeframe, by the same rule as the derived tape bars (a period
    exists only where every bar of it is present). Used for the 4h/1d context of 1h decisions, so
    that context is computed from exactly the bars the decision panel holds."""
    step, period = timeframe_ms(panel.timeframe), timeframe_ms(timeframe)
    if period % step or period < step:
        raise DatasetError(f"--timeframe {timeframe}: cannot be built from {panel.timeframe} bars")
    k = period // step
    first = int(panel.ts[0] - panel.ts[0] % period)
    lead = int((panel.ts[0] - first) // step)
    n_periods = -(-(lead + len(panel.ts)) // k)
    pad_end = n_periods * k - lead - len(panel.ts)

    def shaped(a: np.ndarray) -> np.ndarray:
        nan = np.full((lead, a.shape[1]), np.nan), np.full((pad_end, a.shape[1]), np.nan)
        return np.concatenate([nan[0], a, nan[1]]).reshape(n_periods, k, a.shape[1])

    o, h, lo, c, v = (shaped(getattr(panel, f)) for f in FIELDS)
    complete = np.isfinite(c).all(axis=1)  # (n_periods, S)

    def keep(a: np.ndarray) -> np.ndarray:
        return np.where(complete, a, np.nan)

    out = {
        "open": keep(o[:, 0]),
        "high": keep(h.max(axis=1)),
        "low": keep(lo.min(axis=1)),
        "close": keep(c[:, -1]),
        "volume": keep(v.sum(axis=1)),
    }
    ts = first + np.arange(n_periods, dtype=np.int64) * period
    gaps = {}
    for j, s in enumerate(panel.symbols):
        rows = np.flatnonzero(complete[:, j])
        gaps[s] = int(rows[-1] - rows[0] + 1 - len(rows)) if len(rows) else 0
    return Panel(timeframe, panel.symbols, ts, out["open"], out["high"], out["low"], out["close"], out["volume"], gaps)

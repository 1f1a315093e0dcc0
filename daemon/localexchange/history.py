"""`GET /api/v3/klines` semantics as Binance has them, on the replay clock.

- Candidates are the closed bars (open + timeframe <= now) and, last, the forming bar (the
  one containing `now`, built only from data up to `now`). Nothing after `now` exists.
- `startTime`/`endTime` bound the bars' open times (inclusive).
- With `startTime`: the first `limit` candidates from it; otherwise the last `limit`
  candidates up to `endTime` (or up to now). `limit` defaults to 500, at most 1000.
"""

from __future__ import annotations

import numpy as np

from daemon.localexchange.market import MINUTE, Market
from daemon.localexchange.tape import TIMEFRAME_MS

DEFAULT_LIMIT, MAX_LIMIT = 500, 1000
_EMPTY = np.empty((0, 6))


def query_bars(market: Market, tf: str, now: int, start: int | None, end: int | None, limit: int) -> np.ndarray:
    """Bars [k, 6] answering a `GET /api/v3/klines` request at replay instant `now`."""
    step = TIMEFRAME_MS[tf]
    lo = start if start is not None else -(2**62)
    hi = end if end is not None else 2**62
    closed_hi = min(hi, now - step)  # the latest open time of a closed bar we may return
    forming_open = now - now % step
    forming = market.forming_bar(tf, now) if lo <= forming_open <= hi else None
    room = limit - (0 if forming is None else 1)
    if tf == "1s" and market.derived_1s:
        closed = _derived_seconds(market, lo, closed_hi, limit if start is not None else room, start is not None)
    else:
        closed = _from_array(market.closed[tf], lo, closed_hi, limit if start is not None else room, start is not None)
    if forming is not None and len(closed) < limit:
        closed = np.vstack([closed, forming[None, :]])
    return closed


def _from_array(arr: np.ndarray, lo: int, hi: int, n: int, from_start: bool) -> np.ndarray:
    if hi < lo or n <= 0:
        return _EMPTY
    i = int(np.searchsorted(arr[:, 0], lo, side="left"))
    j = int(np.searchsorted(arr[:, 0], hi, side="right"))
    return arr[i : min(j, i + n)] if from_start else arr[max(i, j - n) : j]


def _derived_seconds(market: Market, lo: int, hi: int, n: int, from_start: bool) -> np.ndarray:
    """Derived 1s bars with lo <= open <= hi, the first (or last) `n`, minute by minute."""
    if hi < lo or n <= 0:
        return _EMPTY
    ts = market.m1[:, 0]
    i = int(np.searchsorted(ts, max(lo - lo % MINUTE, market.first_ms)))
    j = int(np.searchsorted(ts, hi, side="right"))
    order = range(i, j) if from_start else range(j - 1, i - 1, -1)
    parts, got = [], 0
    for k in order:
        secs = market.minute_seconds(int(ts[k]))
        secs = secs[(secs[:, 0] >= lo) & (secs[:, 0] <= hi)]
        parts.append(secs)
        got += len(secs)
        if got >= n:
            break
    if not parts:
        return _EMPTY
    rows = np.vstack(parts if from_start else parts[::-1])
    return rows[:n] if from_start else rows[-n:]

"""Derived 1s bars: a seeded price path inside each recorded 1m bar.

No public Binance 1s tape exists for our symbols, so when a tape has no 1s file the 1s bars
are DERIVED from the 1m bars. The 60 derived bars of a minute always respect that minute
exactly: the first open is its open, the last close its close, the highest high its high, the
lowest low its low, and the volumes (integers of 1e-8 base units) sum to its volume. The path
between is a seeded Brownian bridge; it is deterministic per (seed, symbol, minute).
"""

from __future__ import annotations

import zlib

import numpy as np

SECONDS = 60
VOLUME_UNIT = 1e8  # volumes are split in integer units of 1e-8 (Binance's finest step)


def volume_units(v: np.ndarray | float) -> np.ndarray:
    """Volumes as integer counts of 1e-8 so that sums are exact."""
    return np.rint(np.asarray(v, dtype=np.float64) * VOLUME_UNIT).astype(np.int64)


def _split_volume(rng: np.random.Generator, volume: float) -> np.ndarray:
    total = int(volume_units(volume))
    weights = rng.dirichlet(np.ones(SECONDS))
    units = np.floor(weights * total).astype(np.int64)
    rest = total - int(units.sum())  # 0 <= rest < 60: hand out one unit each to random seconds
    units[rng.choice(SECONDS, size=rest, replace=False)] += 1
    return units / VOLUME_UNIT


def _bridge(rng: np.random.Generator, o: float, c: float, spread: float) -> np.ndarray:
    """Closes of 60 seconds walking from o to c (a Brownian bridge), shape [60]."""
    steps = rng.normal(0.0, spread / 4 / np.sqrt(SECONDS), SECONDS)
    walk = np.cumsum(steps)
    walk -= np.arange(1, SECONDS + 1) / SECONDS * walk[-1]  # pin the end to zero
    return o + (c - o) * np.arange(1, SECONDS + 1) / SECONDS + walk


def derive_minute(row: np.ndarray, seed: int, symbol: str, decimals: int = 2) -> np.ndarray:
    """The 60 derived 1s bars [60, 6] (ts, o, h, l, c, v) of one 1m bar `row` = (ts, o, h, l, c, v)."""
    ts0, o, h, l, c, v = (float(x) for x in row)
    rng = np.random.default_rng([seed, zlib.crc32(symbol.encode()), int(ts0) // 60_000])
    closes = np.clip(np.round(_bridge(rng, o, c, h - l), decimals), l, h)
    closes[-1] = c
    opens = np.concatenate(([o], closes[:-1]))
    body_hi, body_lo = np.maximum(opens, closes), np.minimum(opens, closes)
    wick = np.abs(rng.normal(0.0, (h - l) / 8 + 10.0**-decimals, (2, SECONDS)))
    highs = np.maximum(np.clip(np.round(body_hi + wick[0], decimals), l, h), body_hi)
    lows = np.minimum(np.clip(np.round(body_lo - wick[1], decimals), l, h), body_lo)
    hi_i, lo_i = rng.choice(SECONDS, size=2, replace=False)
    highs[hi_i], lows[lo_i] = h, l  # the minute's extremes are touched exactly once at least
    ts = ts0 + 1000.0 * np.arange(SECONDS)
    return np.column_stack([ts, opens, highs, lows, closes, _split_volume(rng, v)])

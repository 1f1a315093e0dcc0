"""Best bid/ask, order book depth and the 24h ticker, DERIVED from the replay.

A tape holds bars, not order books, so the local exchange makes them up from the traded price
at the replay instant (`Market.price`, 1s resolution) and a configurable spread:

- best bid = price x (1 - spread/2) rounded down to the tick, best ask = price x (1 + spread/2)
  rounded up (at least one tick apart);
- quantity at the best level = the previous 1m bar's volume / 60 (at least one lot step);
  depth level i (0 = best) is i ticks further out with (i + 1) times that quantity;
- the 24h ticker aggregates the 1m bars of the last 24 h plus the forming minute up to now.

Nothing here is recorded data: it exists so that clients that need a book (a paper fill at
the touch, freqtrade's dry run) can run against the replay.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from daemon.localexchange.market import MINUTE, Market

DAY_MS = 86_400_000
DEPTH_LIMITS = (5, 10, 20, 50, 100, 500, 1000, 5000)  # what Binance accepts for /api/v3/depth


@dataclass(frozen=True)
class Touch:
    """The best bid and ask of one symbol at one replay instant."""

    bid: float
    bid_qty: float
    ask: float
    ask_qty: float
    tick: float
    ts: int


def touch(market: Market, now: int, spread_bps: float) -> Touch | None:
    """Best bid/ask at `now` around the traded price; None before the tape has a price."""
    price = market.price(now)
    if price is None:
        return None
    tick = 10.0**-market.price_decimals
    half = price * spread_bps / 20_000
    bid = _on_tick(math.floor((price - half) / tick + 1e-9) * tick, market.price_decimals)
    ask = _on_tick(math.ceil((price + half) / tick - 1e-9) * tick, market.price_decimals)
    if ask <= bid:
        ask = _on_tick(bid + tick, market.price_decimals)
    qty = _level_qty(market, now)
    return Touch(max(bid, tick), qty, ask, qty, tick, now)


def _on_tick(value: float, decimals: int) -> float:
    return round(value, decimals)


def _level_qty(market: Market, now: int) -> float:
    step = 10.0**-market.qty_decimals
    minute = now - now % MINUTE
    prev = market.m1_row(minute - MINUTE)
    volume = float(prev[5]) if prev is not None else 0.0
    return max(step, round(volume / 60, market.qty_decimals))


def depth(t: Touch, limit: int, decimals: int) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    """(bids best first, asks best first): `limit` levels each, one tick apart."""
    bids = [(_on_tick(t.bid - i * t.tick, decimals), t.bid_qty * (i + 1)) for i in range(limit)]
    asks = [(_on_tick(t.ask + i * t.tick, decimals), t.ask_qty * (i + 1)) for i in range(limit)]
    return [b for b in bids if b[0] > 0], asks


def day_stats(market: Market, now: int) -> dict[str, float] | None:
    """Open, high, low, last, base and quote volume over (now - 24 h, now]; None without data."""
    minute = now - now % MINUTE
    i, j = np.searchsorted(market.m1[:, 0], [now - DAY_MS, minute])
    rows = market.m1[i:j]
    part = market.forming_bar("1m", now)
    if part is not None:
        rows = np.vstack([rows, part[None, :]]) if len(rows) else part[None, :]
    last = market.price(now)
    if len(rows) == 0 or last is None:
        return None
    return {
        "open": float(rows[0, 1]),
        "high": float(rows[:, 2].max()),
        "low": float(rows[:, 3].min()),
        "last": last,
        "volume": float(rows[:, 5].sum()),
        "quote_volume": float((rows[:, 5] * rows[:, 4]).sum()),
        "open_ms": int(rows[0, 0]),
    }

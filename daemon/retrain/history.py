"""The history a retrain needs, declared and obtained: SQLite first, then the exchange's REST.

A retrain declares what it needs (`HistoryNeed`: days of training history per timeframe before
the holdout cut, and the holdout span). `ensure_history` looks at what SQLite holds for each
stream, pages only the missing ranges from the exchange over REST into SQLite (the exchange
client is passed in: its ccxt throttle and its RateLimited/Retry-After handling keep the
backfill within the exchange's rate limits), and `check_history` then says in ONE line when
even that is not enough ("need 7 days of 1m before the 24 h holdout, have 0.4").
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from daemon import log
from daemon.domain import Bar, BarError, timeframe_ms
from daemon.store import Store

_log = log.get("sigd.retrain.history")
DAY_MS = 86_400_000
TRIGGER = "1m"
MERGE_BARS = 1000  # missing ranges closer than one REST page are fetched as one range
COVERAGE = 0.95  # share of the needed trigger bars that must be stored (real history has gaps)


class HistoryShort(RuntimeError):
    """Not enough history even after backfilling; the message is the one line a user sees."""


class BarSource(Protocol):
    """What the retrain needs of an exchange client (daemon/market/exchange.py's ExchangeClient)."""

    def iter_bar_pages(self, symbol: str, timeframe: str, since_ms: int, until_ms: int | None = None) -> AsyncIterator[list[Bar]]:
        """Pages of closed bars with since_ms <= ts < until_ms, oldest first."""
        ...

    async def server_time_ms(self) -> int:
        """The exchange's clock (a replay clock on the local exchange)."""
        ...


@dataclass(frozen=True)
class HistoryNeed:
    """Days of history per timeframe before the holdout cut, and the holdout itself."""

    train_days: Mapping[str, float]
    holdout_hours: float
    context_bars: int = 64  # bars before the training span for every non-trigger timeframe
    streams: tuple[tuple[str, str], ...] = field(default_factory=tuple)  # (symbol, timeframe)

    def span_ms(self, timeframe: str) -> int:
        """How far before the newest bar a stream must reach."""
        days = self.train_days.get(timeframe, self.train_days.get(TRIGGER, 0.0))
        extra = 0 if timeframe == TRIGGER else self.context_bars * timeframe_ms(timeframe)
        return int(days * DAY_MS + self.holdout_hours * 3_600_000) + extra


def need_for(
    symbols: Sequence[str], timeframes: Sequence[str], reference: tuple[str, str], train_days: float, holdout_hours: float
) -> HistoryNeed:
    """The retrain's declaration: `train_days` of every trained timeframe (1s is not trained on) of
    every traded symbol, and the reference stream."""
    streams = tuple((s, tf) for s in symbols for tf in timeframes if tf != "1s") + (reference,)
    return HistoryNeed({tf: train_days for _, tf in streams}, holdout_hours, streams=tuple(dict.fromkeys(streams)))


def missing_ranges(stored: Sequence[int], start: int, end: int, step: int) -> list[tuple[int, int]]:
    """[from, to) ranges of [start, end) with no stored bar, merged when closer than a REST page."""
    out: list[tuple[int, int]] = []
    cursor = start
    for ts in stored:
        if ts > cursor:
            out.append((cursor, ts))
        cursor = max(cursor, ts + step)
    if cursor < end:
        out.append((cursor, end))
    merged: list[tuple[int, int]] = []
    for lo, hi in out:
        if merged and lo - merged[-1][1] < MERGE_BARS * step:
            merged[-1] = (merged[-1][0], hi)
        else:
            merged.append((lo, hi))
    return merged


async def newest_closed(store: Store, source: BarSource | None, symbol: str) -> int | None:
    """Open time of the newest closed trigger bar: the exchange's (its clock) when it answers."""
    stored = store.latest_bars(symbol, TRIGGER, 1)
    newest = stored[0].ts if stored else None
    if source is not None:
        try:
            now = await source.server_time_ms()
        except Exception as exc:
            _log.warning("history_exchange_unreachable", symbol=symbol, error=str(exc))
        else:
            step = timeframe_ms(TRIGGER)
            newest = max(newest or 0, now // step * step - step)  # the bar forming now is not closed
    return newest


async def ensure_history(store: Store, source: BarSource | None, need: HistoryNeed, end_ms: int) -> dict[str, int]:
    """Fill what SQLite lacks of every stream's span ending at end_ms (inclusive); bars added per stream."""
    added: dict[str, int] = {}
    if source is None:
        return added
    for symbol, tf in need.streams:
        step = timeframe_ms(tf)
        start = (end_ms - need.span_ms(tf)) // step * step
        stored = [b.ts for b in store.iter_bars(symbol, tf, start, end_ms + 1)]
        n = 0
        for lo, hi in missing_ranges(stored, start, end_ms + 1, step):
            n += await _fetch(store, source, symbol, tf, lo, hi)
        if n:
            _log.info("history_backfilled", symbol=symbol, timeframe=tf, bars=n, start=start, end=end_ms)
        added[f"{symbol} {tf}"] = n
    return added


async def _fetch(store: Store, source: BarSource, symbol: str, tf: str, lo: int, hi: int) -> int:
    n = 0
    async for page in source.iter_bar_pages(symbol, tf, lo, hi):
        good = []
        for bar in page:
            try:
                bar.validate()
            except BarError as exc:
                _log.warning("history_bad_bar", symbol=symbol, timeframe=tf, error=str(exc))
                continue
            good.append(bar)
        store.add_bars(good)
        n += len(good)
    return n


def check_history(store: Store, symbol: str, need: HistoryNeed, cutoff_ms: int) -> None:
    """HistoryShort (one line) when fewer trigger bars than needed lie before the holdout cut."""
    days = need.train_days.get(TRIGGER, 0.0)
    step = timeframe_ms(TRIGGER)
    start = cutoff_ms - int(days * DAY_MS)
    have = sum(1 for _ in store.iter_bars(symbol, TRIGGER, start, cutoff_ms - step + 1))
    wanted = days * DAY_MS / step
    if have < COVERAGE * wanted:
        raise HistoryShort(
            f"need {days:g} days of {symbol} {TRIGGER} before the {need.holdout_hours:g} h holdout, "
            f"have {have * step / DAY_MS:.1f}"
        )

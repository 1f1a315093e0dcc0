"""The words sigd speaks: Bar, Side, Prediction, Signal, Order, Fill, Position.

Standard library only; every other module may import this one.
Time is always integer milliseconds since the Unix epoch, UTC.
Classes follow one convention everywhere: 0 = SHORT, 1 = FLAT, 2 = LONG.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum, IntEnum
from typing import Any, Protocol

# Timeframes spelled as ccxt spells them, with their length in milliseconds.
TIMEFRAME_MS: Mapping[str, int] = {
    "1s": 1_000,
    "1m": 60_000,
    "5m": 300_000,
    "15m": 900_000,
    "1h": 3_600_000,
    "4h": 14_400_000,
    "1d": 86_400_000,
}
# The timeframes the daemon streams for the primary symbol, fastest first.
PRIMARY_TIMEFRAMES: tuple[str, ...] = ("1s", "1m", "1h", "1d")
REFERENCE_SYMBOL = "BTC/USDT"


def timeframe_ms(timeframe: str) -> int:
    """Length of a timeframe in ms; a clear error for an unknown one."""
    try:
        return TIMEFRAME_MS[timeframe]
    except KeyError:
        raise ValueError(f"unknown timeframe {timeframe!r}; known: {', '.join(TIMEFRAME_MS)}") from None


class Side(IntEnum):
    """Model class and trade direction: 0 = SHORT, 1 = FLAT, 2 = LONG."""

    SHORT = 0
    FLAT = 1
    LONG = 2


class BarError(ValueError):
    """A bar that breaks an invariant (not finite, OHLC order, negative volume, misaligned)."""


@dataclass(frozen=True, slots=True)
class Bar:
    """One closed bar. `ts` is the open time in ms UTC."""

    symbol: str
    timeframe: str
    ts: int
    open: float
    high: float
    low: float
    close: float
    volume: float

    @property
    def close_ts(self) -> int:
        """The instant the bar closes (exclusive end), ms UTC."""
        return self.ts + timeframe_ms(self.timeframe)

    def validate(self) -> None:
        """Raise BarError naming the broken invariant; return None when the bar is sound."""
        values = (self.open, self.high, self.low, self.close, self.volume)
        if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values):
            raise BarError(f"{self.symbol} {self.timeframe} @{self.ts}: non-finite value in {values}")
        if not (self.low <= min(self.open, self.close) and max(self.open, self.close) <= self.high):
            raise BarError(
                f"{self.symbol} {self.timeframe} @{self.ts}: OHLC out of order "
                f"(o={self.open} h={self.high} l={self.low} c={self.close})"
            )
        if self.volume < 0:
            raise BarError(f"{self.symbol} {self.timeframe} @{self.ts}: negative volume {self.volume}")
        if self.ts % timeframe_ms(self.timeframe) != 0:
            raise BarError(f"{self.symbol} {self.timeframe} @{self.ts}: open time not aligned to the timeframe")

    def as_row(self) -> tuple[int, float, float, float, float, float]:
        """(ts, open, high, low, close, volume), the tape and buffer column order."""
        return (self.ts, self.open, self.high, self.low, self.close, self.volume)


# The class probabilities' names in Prediction.scores, in class order (0 SHORT, 1 FLAT, 2 LONG).
CLASS_SCORES: tuple[str, str, str] = ("p_short", "p_flat", "p_long")


def class_scores(probs: tuple[float, float, float] | list[float]) -> dict[str, float]:
    """{"p_short": .., "p_flat": .., "p_long": ..} from P(SHORT), P(FLAT), P(LONG)."""
    if len(probs) != len(CLASS_SCORES):
        raise ValueError(f"expected 3 class probabilities (SHORT, FLAT, LONG), got {list(probs)}")
    return {k: float(p) for k, p in zip(CLASS_SCORES, probs)}


@dataclass(frozen=True, slots=True)
class Prediction:
    """One model's answer for one bar."""

    model: str  # registry name, e.g. "mtf_transformer"
    version: str  # artifact version / fingerprint
    bar_ts: int  # open time of the trigger bar the prediction is made at the close of
    # Named scores: the class probabilities (CLASS_SCORES) plus whatever else the family
    # outputs, e.g. "return" (a regression's next-bar return), "confidence", quantiles.
    scores: Mapping[str, float]
    side: Side  # after the artifact's threshold rule
    confidence: float
    threshold: float
    inference_ms: float = 0.0
    hold_bars: int = 1  # the artifact's holding period (strategies/threshold.py); 1 = every bar

    @property
    def probs(self) -> tuple[float, float, float]:
        """P(SHORT), P(FLAT), P(LONG) (a regression model: 1.0 on its thresholded side)."""
        if all(k in self.scores for k in CLASS_SCORES):
            return (self.scores["p_short"], self.scores["p_flat"], self.scores["p_long"])
        return (float(self.side == Side.SHORT), float(self.side == Side.FLAT), float(self.side == Side.LONG))


@dataclass(frozen=True, slots=True)
class Signal:
    """What a strategy decided at the close of one trigger bar."""

    symbol: str
    bar_ts: int
    side: Side
    confidence: float
    price: float
    strategy: str
    reasons: tuple[str, ...] = ()
    model_versions: Mapping[str, str] = field(default_factory=dict)


class OrderStatus(str, Enum):
    """Lifecycle of an order; UNKNOWN is an ambiguous outcome awaiting reconciliation."""

    PENDING = "pending"  # stored, not yet sent
    OPEN = "open"
    FILLED = "filled"
    CANCELED = "canceled"
    REJECTED = "rejected"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class Order:
    """An order as sigd records it before and after sending."""

    client_order_id: str
    symbol: str
    side: str  # "buy" | "sell"
    type: str  # "market" | "limit"
    amount: float
    price: float | None
    bar_ts: int
    status: OrderStatus = OrderStatus.PENDING
    exchange_id: str | None = None


@dataclass(frozen=True, slots=True)
class Fill:
    """One execution of an order."""

    client_order_id: str
    symbol: str
    side: str
    price: float
    amount: float
    fee: float
    ts: int


@dataclass(frozen=True, slots=True)
class Position:
    """Net position in one symbol; amount > 0 long, < 0 short, 0 flat."""

    symbol: str
    amount: float = 0.0
    entry_price: float = 0.0
    realized_pnl: float = 0.0
    fees: float = 0.0


# --- the seams between the parts (structural types; implementations live elsewhere) --------


class EventSink(Protocol):
    """Where the engine puts alert events (daemon/alerts/notify.py's Outbox implements it)."""

    def publish(self, type: str, payload: Mapping[str, Any], event_id: str | None = None) -> str:
        """Durably queue one event for every channel; return its stable event id."""
        ...


class PredictorLike(Protocol):
    """A loaded model the engine can ask (pipeline/predictor.py's Predictor implements it).

    Window keys: "1s", "1m", "1h", "1d" for the primary symbol and "btc_1m" for the reference
    symbol; each window is a float64 array [n, 6] of (ts, open, high, low, close, volume), oldest
    first, ending with the newest closed bar. A missing or short window means degraded input.
    """

    name: str
    version: str
    threshold: float
    required_windows: Mapping[str, int]

    def predict(self, windows: Mapping[str, Any], bar_ts: int) -> Prediction:
        """One prediction at the close of the bar that opened at `bar_ts`."""
        ...


class Controls(Protocol):
    """What a person may ask of the running daemon (Telegram commands; the app implements it).

    The synchronous methods run on the event loop and must be quick (in-memory state or one
    small SQLite query). Results are plain JSON-able data, rendered as "key: value" lines.
    """

    def status(self) -> Mapping[str, Any]:
        """Streams, freshness, mode, paused flag, models and versions, outbox depth."""
        ...

    def positions(self) -> list[Mapping[str, Any]]:
        """Open positions: symbol, amount, entry_price, unrealized/realized PnL."""
        ...

    def recent_signals(self, n: int) -> list[Mapping[str, Any]]:
        """The newest `n` signals, newest first."""
        ...

    def pnl(self) -> Mapping[str, Any]:
        """Realized and unrealized PnL, fees, trades; used by /pnl and the daily summary."""
        ...

    def pause(self, symbol: str | None = None) -> Mapping[str, Any]:
        """Stop new signals and orders of one symbol (None: all); persists across restarts."""
        ...

    def resume(self, symbol: str | None = None) -> Mapping[str, Any]:
        """Undo pause() (of one symbol, or all)."""
        ...

    async def flat(self, symbol: str | None = None) -> Mapping[str, Any]:
        """Close one symbol's position (None: every position) now, through the broker; what was done."""
        ...

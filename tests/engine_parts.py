"""Small real implementations of the engine's seams, for the engine, paper and broker tests.

A deterministic momentum predictor (implements PredictorLike over the windows), a list-backed
EventSink, bar and bar-series builders, and the real ring buffers set up for the daemon's streams. Not mocks: each does its job for real.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from daemon.alerts.outbox import RESERVED_KEYS
from daemon.domain import Bar, Prediction, Side, class_scores, timeframe_ms
from daemon.market.bars import Buffers

T0 = 1_735_689_600_000  # 2025-01-01T00:00:00Z


def bar(
    ts: int,
    close: float,
    *,
    symbol: str = "ETH/USDT",
    timeframe: str = "1m",
    open: float | None = None,
    high: float | None = None,
    low: float | None = None,
    volume: float = 1.0,
) -> Bar:
    """A valid bar around `close` (open defaults to close; high/low enclose both)."""
    o = close if open is None else open
    return Bar(
        symbol, timeframe, ts, o, max(o, close) if high is None else high, min(o, close) if low is None else low, close, volume
    )


def series(closes: list[float], *, start: int = T0, symbol: str = "ETH/USDT", timeframe: str = "1m") -> list[Bar]:
    """Consecutive bars whose open is the previous close."""
    step = timeframe_ms(timeframe)
    out, prev = [], closes[0]
    for i, c in enumerate(closes):
        out.append(bar(start + i * step, c, symbol=symbol, timeframe=timeframe, open=prev))
        prev = c
    return out


class ListSink:
    """An EventSink that keeps events in a list; `fail` makes publish raise (a broken outbox)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any], str]] = []
        self.fail = False

    def publish(self, type: str, payload: Mapping[str, Any], event_id: str | None = None) -> str:
        if self.fail:
            raise RuntimeError("outbox unavailable")
        clash = RESERVED_KEYS & set(payload)
        if clash:  # the real outbox refuses these too
            raise ValueError(f"event payload may not use reserved key(s) {sorted(clash)}")
        eid = event_id or f"ev-{len(self.events)}"
        self.events.append((type, dict(payload), eid))
        return eid

    def of(self, type: str) -> list[dict[str, Any]]:
        """Payloads of one event type, each with its event id as "id" (as the channels see them)."""
        return [{"id": eid, **p} for t, p, eid in self.events if t == type]


@dataclass
class MomentumPredictor:
    """PredictorLike: P(LONG) rises with the return over the last `lookback` trigger bars.

    probs = softmax([-k r, 0, k r]) with r the return over the window; side by the threshold
    rule (the larger directional prob if it reaches `threshold`, else FLAT). `gate` (a
    threading.Event) makes predict wait, to hold a decision open.
    """

    name: str = "momentum"
    version: str = "v1"
    threshold: float = 0.5
    key: str = "1m"
    lookback: int = 3
    k: float = 200.0
    gate: threading.Event | None = None
    calls: list[int] = field(default_factory=list)

    @property
    def required_windows(self) -> Mapping[str, int]:
        return {self.key: self.lookback + 1}

    def predict(self, windows: Mapping[str, Any], bar_ts: int) -> Prediction:
        if self.gate is not None:
            self.gate.wait(5)
        self.calls.append(bar_ts)
        w = windows[self.key]
        r = float(w[-1, 4] / w[0, 4] - 1.0) if len(w) > 1 else 0.0
        e = [math.exp(-self.k * r), 1.0, math.exp(self.k * r)]
        probs = tuple(x / sum(e) for x in e)
        best = Side.LONG if probs[2] >= probs[0] else Side.SHORT
        side = best if probs[int(best)] >= self.threshold else Side.FLAT
        return Prediction(self.name, self.version, bar_ts, class_scores(probs), side, probs[int(best)], self.threshold)


class FixedPredictor(MomentumPredictor):
    """A model with a fixed opinion: `side` at `confidence`, whatever the bars."""

    side: Side = Side.LONG
    confidence: float = 0.9

    def predict(self, windows: Mapping[str, Any], bar_ts: int) -> Prediction:
        self.calls.append(bar_ts)
        rest = (1.0 - self.confidence) / 2
        probs = [rest, rest, rest]
        probs[int(self.side)] = self.confidence
        return Prediction(self.name, self.version, bar_ts, class_scores(probs), self.side, self.confidence, self.threshold)


class FailingPredictor(MomentumPredictor):
    """A predictor whose model is broken."""

    def predict(self, windows: Mapping[str, Any], bar_ts: int) -> Prediction:
        raise RuntimeError("weights corrupt")


def buffers(capacity: int = 64) -> Buffers:
    """The real ring buffers with the daemon's streams (ETH/USDT 1s/1m/1h/1d, BTC/USDT 1m)."""
    out = Buffers()
    for tf in ("1s", "1m", "1h", "1d"):
        out.add("ETH/USDT", tf, capacity)
    out.add("BTC/USDT", "1m", capacity)
    return out


def prediction(model: str, side: Side, confidence: float, threshold: float = 0.5, version: str = "v1") -> Prediction:
    """A Prediction with the given thresholded side and confidence (probs consistent with it)."""
    rest = (1.0 - confidence) / 2
    probs = [rest, rest, rest]
    probs[int(side)] = confidence
    return Prediction(model, version, T0, class_scores(probs), side, confidence, threshold)

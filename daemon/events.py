"""Typed domain events and the in-process bus that pushes them to live subscribers.

A part publishes an event right AFTER the SQLite commit of what it describes (a bar, a
decision, a signal, an order, a fill, ...), so a subscriber never sees something a crash
could take back. The bus is for live push only (the dashboard stream, the signal
websocket): the durable path stays the outbox, whose rows are written inside the same
transaction as the state they announce.

`publish` never blocks and never raises: each subscriber has a bounded queue, and one whose
queue is full is dropped (closed, counted in `sigd_event_subscribers_dropped_total`), so a
slow consumer cannot slow the bar path. A dropped consumer reconnects and resyncs from the
read model (daemon/service/readmodel.py).
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from daemon import log as logging
from daemon.domain import Bar, Fill, Order, Position, Prediction, Signal
from daemon.metrics import REGISTRY

_log = logging.get("sigd.events")
_PUBLISHED = REGISTRY.counter("sigd_events_published_total", "Domain events published to the bus, by kind")
_DROPPED = REGISTRY.counter(
    "sigd_event_subscribers_dropped_total", "Bus subscribers dropped because their queue was full, by subscriber"
)
DEFAULT_QUEUE = 1024


@dataclass(frozen=True)
class Event:
    """Base of every domain event: `kind` names it on the wire."""

    kind: ClassVar[str] = "event"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: {"kind": ..., fields...}."""
        return {"kind": self.kind, **dataclasses.asdict(self)}


@dataclass(frozen=True)
class BarClosed(Event):
    """A closed, validated bar is stored (bar time, not wall time)."""

    kind: ClassVar[str] = "bar_closed"
    symbol: str
    timeframe: str
    ts: int
    open: float
    high: float
    low: float
    close: float
    volume: float

    @classmethod
    def of(cls, bar: Bar) -> BarClosed:
        """From the domain Bar."""
        return cls(bar.symbol, bar.timeframe, bar.ts, bar.open, bar.high, bar.low, bar.close, bar.volume)


@dataclass(frozen=True)
class DecisionMade(Event):
    """Every model's answer at a trigger bar is stored (a decision need not signal)."""

    kind: ClassVar[str] = "decision"
    symbol: str
    bar_ts: int
    paused: bool
    models: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    @classmethod
    def of(cls, symbol: str, bar_ts: int, predictions: Sequence[Prediction], paused: bool) -> DecisionMade:
        """From the stored predictions."""
        return cls(
            symbol,
            bar_ts,
            paused,
            {
                p.model: {
                    "version": p.version,
                    "side": p.side.name,
                    "confidence": round(p.confidence, 4),
                    "threshold": p.threshold,
                    "probs": [round(x, 4) for x in p.probs],
                }
                for p in predictions
            },
        )


@dataclass(frozen=True)
class SignalEmitted(Event):
    """A signal row is committed."""

    kind: ClassVar[str] = "signal"
    signal_id: int
    symbol: str
    bar_ts: int
    side: str
    confidence: float
    price: float
    strategy: str
    reasons: tuple[str, ...] = ()

    @classmethod
    def of(cls, signal_id: int, s: Signal) -> SignalEmitted:
        """From the domain Signal and its row id."""
        return cls(signal_id, s.symbol, s.bar_ts, s.side.name, round(s.confidence, 4), s.price, s.strategy, tuple(s.reasons))

    @classmethod
    def of_payload(cls, p: Mapping[str, Any]) -> SignalEmitted:
        """From the outbox's "signal" payload (daemon.trading.engine.signal_payload)."""
        return cls(
            int(p["signal_id"]),
            p["symbol"],
            int(p["bar_ts"]),
            str(p["side"]),
            round(float(p["confidence"]), 4),
            float(p["price"]),
            str(p["strategy"]),
            tuple(p.get("reasons") or ()),
        )


@dataclass(frozen=True)
class ShadowSignal(Event):
    """A model's shadow ledger changed side in a symbol (entered, left or reversed a position)
    on paper; committed with the ledger. Not an order: alert channels get it only when they
    opt in (`shadow = true`), marked `"shadow": true`."""

    kind: ClassVar[str] = "shadow_signal"
    model: str
    state: str  # "trading" | "shadow": whether the model also places real orders
    symbol: str
    bar_ts: int
    side: str  # LONG | SHORT | FLAT: the side of the new paper weight
    weight: float  # target weight of the model's paper equity
    prev_weight: float
    price: float  # the quote the paper fill used (the cycle's close)

    @property
    def event_id(self) -> str:
        """Stable outbox id: one per model, symbol and decision bar."""
        return f"shadow_signal-{self.model}-{self.symbol}-{self.bar_ts}"

    def payload(self) -> dict[str, Any]:
        """The outbox payload: the fields, marked `"shadow": true`."""
        return {**dataclasses.asdict(self), "shadow": True}


@dataclass(frozen=True)
class OrderUpdated(Event):
    """An order's status change is committed."""

    kind: ClassVar[str] = "order"
    client_order_id: str
    symbol: str
    side: str
    amount: float
    status: str
    bar_ts: int

    @classmethod
    def of(cls, order: Order) -> OrderUpdated:
        """From the domain Order (with its new status)."""
        return cls(order.client_order_id, order.symbol, order.side, order.amount, order.status.value, order.bar_ts)


@dataclass(frozen=True)
class FillRecorded(Event):
    """A fill and the position it leads to are committed (one transaction)."""

    kind: ClassVar[str] = "fill"
    client_order_id: str
    symbol: str
    side: str
    price: float
    amount: float
    fee: float
    ts: int

    @classmethod
    def of(cls, fill: Fill) -> FillRecorded:
        """From the domain Fill."""
        return cls(fill.client_order_id, fill.symbol, fill.side, fill.price, fill.amount, fill.fee, fill.ts)


@dataclass(frozen=True)
class PositionChanged(Event):
    """The net position of a symbol after a fill."""

    kind: ClassVar[str] = "position"
    symbol: str
    amount: float
    entry_price: float
    realized_pnl: float
    fees: float

    @classmethod
    def of(cls, p: Position) -> PositionChanged:
        """From the domain Position."""
        return cls(p.symbol, p.amount, p.entry_price, p.realized_pnl, p.fees)


@dataclass(frozen=True)
class StreamHealth(Event):
    """A stream became degraded (cannot prove continuity) or healed."""

    kind: ClassVar[str] = "stream"
    stream: str
    degraded: bool


@dataclass(frozen=True)
class ModelSwapped(Event):
    """A served model changed (promoted, or loaded in shadow)."""

    kind: ClassVar[str] = "model_swapped"
    model: str
    version: str
    state: str  # "trading" | "shadow"


@dataclass(frozen=True)
class GateVerdict(Event):
    """The live gate promoted a model from shadow mode or demoted it, on its shadow ledger's
    record (daemon/trading/verdict.py); committed with the verdict's record and alert."""

    kind: ClassVar[str] = "gate_verdict"
    model: str
    version: str
    verdict: str  # "promoted" | "demoted"
    why: str  # the reason, with the figures
    bar_ts: int  # the last decision bar of the record
    figures: Mapping[str, Any] = field(default_factory=dict)  # cycles, fills, returns, Sharpes, DSR, PSR, N


@dataclass(frozen=True)
class AlertDeadLettered(Event):
    """An outbox row gave up: it sits in the dead-letter state of its channel."""

    kind: ClassVar[str] = "alert_dead"
    channel: str
    event_id: str
    type: str
    error: str


@dataclass(frozen=True)
class RetrainFinished(Event):
    """A retrain run of one model ended: promoted, rejected or failed, and why."""

    kind: ClassVar[str] = "retrain"
    model: str
    status: str
    reason: str


@dataclass(frozen=True)
class ControlApplied(Event):
    """An operator action (pause, resume, flat, retrain) took effect: pages refresh at once."""

    kind: ClassVar[str] = "control"
    action: str
    symbol: str  # "all" when it was not for one symbol


@dataclass(frozen=True)
class AlertQueued(Event):
    """An alert event (signal, fill, order, error, retrain, ...) is committed to the outbox;
    `envelope()` is the JSON object webhooks receive (without a signature)."""

    kind: ClassVar[str] = "alert"
    id: str
    type: str
    payload: Mapping[str, Any]
    created_ms: int

    def envelope(self) -> dict[str, Any]:
        """The payload's fields plus id, type and created_ms."""
        return {"id": self.id, "type": self.type, "created_ms": self.created_ms, **self.payload}


class Subscription:
    """One subscriber's bounded queue; iterate it with `async for`. Ends when dropped or closed."""

    def __init__(self, bus: Bus, name: str, maxsize: int) -> None:
        self.bus, self.name = bus, name
        self.queue: asyncio.Queue[Event | None] = asyncio.Queue(maxsize)
        self.loop = asyncio.get_running_loop()
        self.dropped = False

    def offer(self, event: Event) -> bool:
        """Queue without waiting (on the subscriber's loop); False when the queue is full."""
        try:
            self.queue.put_nowait(event)
            return True
        except asyncio.QueueFull:
            return False

    def close(self) -> None:
        """Leave the bus; the iterator ends once the queue is read."""
        self.bus.unsubscribe(self)

    def _end(self) -> None:
        # The sentinel must fit even in a full queue: make room by discarding the oldest.
        while True:
            try:
                self.queue.put_nowait(None)
                return
            except asyncio.QueueFull:
                self.queue.get_nowait()

    async def __aiter__(self) -> AsyncIterator[Event]:
        while True:
            event = await self.queue.get()
            if event is None:
                return
            yield event


class Bus:
    """Fan-out of events to subscribers; `publish` is safe from any thread and never blocks."""

    def __init__(self) -> None:
        self._subs: list[Subscription] = []
        self._lock = threading.Lock()

    def subscribe(self, name: str, maxsize: int = DEFAULT_QUEUE) -> Subscription:
        """A new subscriber (call on its event loop)."""
        sub = Subscription(self, name, maxsize)
        with self._lock:
            self._subs.append(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        """Remove a subscriber and end its iterator."""
        with self._lock:
            if sub not in self._subs:
                return
            self._subs.remove(sub)
        self._call(sub, sub._end)

    @property
    def subscribers(self) -> int:
        """How many subscribers are attached."""
        return len(self._subs)

    def publish(self, event: Event) -> None:
        """Offer `event` to every subscriber; a full one is dropped and counted. Never raises."""
        try:
            _PUBLISHED.inc(kind=event.kind)
            with self._lock:
                subs = list(self._subs)
            for sub in subs:
                if sub.loop.is_closed():  # its owner is gone without closing it
                    with self._lock:
                        self._subs = [s for s in self._subs if s is not sub]
                    continue
                self._call(sub, lambda s=sub: self._deliver(s, event))
        except Exception as exc:  # the caller has committed: its path must go on
            _log.error("event_publish_failed", kind=event.kind, error=repr(exc))

    def _deliver(self, sub: Subscription, event: Event) -> None:
        if sub.dropped or sub.offer(event):
            return
        sub.dropped = True
        _DROPPED.inc(subscriber=sub.name)
        _log.warning("event_subscriber_dropped", subscriber=sub.name, queued=sub.queue.qsize())
        self.unsubscribe(sub)

    @staticmethod
    def _call(sub: Subscription, fn: Any) -> None:
        """Run `fn` on the subscriber's loop: directly when we are on it, else thread-safely."""
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is sub.loop:
            fn()
        elif not sub.loop.is_closed():
            sub.loop.call_soon_threadsafe(fn)


BUS = Bus()


def publish(event: Event) -> None:
    """Publish on the process bus (after the commit of what `event` describes)."""
    BUS.publish(event)

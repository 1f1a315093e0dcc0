"""The durable alert outbox: publish writes rows to SQLite, a sender task per channel delivers them.

`Outbox.publish()` (the engine's `EventSink`) writes one row per interested channel in one
transaction and returns at once; nothing on the bar path waits for a network. Each channel
has its own worker task, so a slow or failing channel never delays the others. A worker
delivers its channel's due rows oldest first; a retryable failure reschedules the row with
exponential backoff and jitter and pauses the whole channel until then (one probe per
backoff step against a receiver that is down, and the order is kept); a permanent failure,
too many attempts or too old a row moves it to the dead-letter state. Rows survive restarts:
a new Outbox over the same SQLite file re-sends whatever is still pending. Delivery is
at-least-once; the stable event id lets a receiver drop duplicates.
"""

from __future__ import annotations

import asyncio
import enum
import json
import random
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, is_dataclass
from typing import Any, Protocol

from daemon import events
from daemon import log as log_mod
from daemon.alertsconfig import SHADOW_SIGNAL
from daemon.crashpoints import crash_point
from daemon.metrics import REGISTRY
from daemon.store import Store

log = log_mod.get("sigd.outbox")

# Envelope keys every channel adds; a payload may not use them (nothing may be silently lost).
RESERVED_KEYS = frozenset({"id", "type", "created_ms"})

_DEPTH = REGISTRY.gauge("sigd_outbox_depth", "Outbox rows per channel and status (pending, dead)")
_PUBLISHED = REGISTRY.counter("sigd_alerts_published_total", "Events published to the outbox, by type")
_DELIVERED = REGISTRY.counter("sigd_alerts_delivered_total", "Rows delivered, by channel")
_SKIPPED = REGISTRY.counter("sigd_alerts_skipped_total", "Rows finished without a receiver, by channel")
_FAILURES = REGISTRY.counter("sigd_alert_failures_total", "Failed delivery attempts, by channel")
_DEAD = REGISTRY.counter("sigd_alerts_dead_total", "Rows moved to the dead-letter state, by channel")
_LATENCY = REGISTRY.histogram("sigd_alert_delivery_ms", "Publish to delivery, ms, by channel")


class Outcome(str, enum.Enum):
    """How a channel finished a row."""

    SENT = "sent"  # the receiver has it
    SKIPPED = "skipped"  # nobody to deliver to (a live stream without listeners): not retried


class DeliveryError(Exception):
    """A failed delivery. `permanent` dead-letters the row; `retry_after_s` overrides the backoff."""

    def __init__(self, message: str, *, permanent: bool = False, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.retry_after_s = retry_after_s


def is_permanent(status: int) -> bool:
    """An HTTP status that retrying cannot fix: 4xx except 408 (timeout) and 429 (rate limit)."""
    return 400 <= status < 500 and status not in (408, 429)


def http_failure(status: int, what: str, retry_after_s: float | None = None) -> DeliveryError:
    """The DeliveryError for a non-2xx HTTP answer."""
    return DeliveryError(f"{what}: HTTP {status}", permanent=is_permanent(status), retry_after_s=retry_after_s)


# One published event as a channel sees it: the bus's AlertQueued, whose envelope() (the
# payload's fields plus id, type and created_ms) is what webhooks and the websocket send.
Event = events.AlertQueued


class Channel(Protocol):
    """A delivery target. `types` empty = every event type; `shadow` (an attribute a channel
    may leave out: False) opts in to shadow-ledger signals."""

    name: str
    types: frozenset[str]

    async def deliver(self, event: Event) -> Outcome:
        """Deliver one event, or raise DeliveryError (anything else counts as retryable)."""
        ...


@dataclass(frozen=True)
class RetryPolicy:
    """Backoff and dead-letter parameters (from [alerts])."""

    max_attempts: int = 100
    max_age_s: float = 86_400.0
    backoff_base_s: float = 1.0
    backoff_max_s: float = 300.0
    delivery_timeout_s: float = 10.0
    keep_days: float = 7.0

    def backoff_s(self, attempts: int, rng: random.Random) -> float:
        """Delay before attempt `attempts + 1`: base * 2^(attempts-1), capped, times U(0.5, 1)."""
        raw = min(self.backoff_max_s, self.backoff_base_s * 2 ** min(attempts - 1, 40))
        return raw * rng.uniform(0.5, 1.0)


def jsonable(value: Any) -> Any:
    """Plain JSON data from enums (by name), dataclasses, mappings and sequences."""
    if isinstance(value, enum.Enum):
        return value.name if isinstance(value, int) else value.value
    if is_dataclass(value) and not isinstance(value, type):
        return jsonable(asdict(value))
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in value]
    return value


def compact_json(value: Any) -> str:
    """The one JSON form of events (stored, signed, streamed): sorted keys, no spaces, no NaN."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)


def takes(channel: Any, type: str) -> bool:
    """Whether `channel` receives events of `type`: shadow signals only when it opted in
    (`shadow = true`, whatever its types), every other type by its `types` (empty = all)."""
    if type == SHADOW_SIGNAL:
        return bool(getattr(channel, "shadow", False))
    return not channel.types or type in channel.types


def _now_ms() -> int:
    return int(time.time() * 1000)


class Outbox:
    """Durable per-channel queue in SQLite with one sender task per channel (an EventSink)."""

    def __init__(
        self, store: Store, channels: Iterable[Channel], policy: RetryPolicy | None = None, *, seed: int | None = None
    ) -> None:
        self.store = store
        self.channels = {c.name: c for c in channels}
        self.policy = policy or RetryPolicy()
        self._rng = random.Random(seed)
        self._wake = {name: asyncio.Event() for name in self.channels}
        self._busy: set[str] = set()
        self._paused_until: dict[str, int] = {}
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.refresh_depth()

    # --- the EventSink side (called on the event loop, synchronous, SQLite only) -----------

    def publish(self, type: str, payload: Mapping[str, Any], event_id: str | None = None) -> str:
        """Durably queue one event for every channel that takes its type (`takes`); return its event id."""
        clash = RESERVED_KEYS & set(payload)
        if clash:
            raise ValueError(f"event payload may not use reserved key(s) {sorted(clash)}")
        eid = event_id or uuid.uuid4().hex
        try:
            body = compact_json(jsonable(payload))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{type} event payload is not JSON data: {exc}") from None
        now = _now_ms()
        rows = [
            {
                "id": f"{eid}/{name}",
                "event_id": eid,
                "channel": name,
                "type": type,
                "payload": body,
                "status": "pending",
                "attempts": 0,
                "next_attempt_ms": now,
                "last_error": "",
                "created_ms": now,
                "sent_ms": 0,
            }
            for name, ch in self.channels.items()
            if takes(ch, type)
        ]
        added = self.store.add_outbox(rows) if rows else 0
        if added or not rows:  # live consumers (the signal websocket) hear it once it is committed
            queued = events.AlertQueued(eid, type, json.loads(body), now)
            self.store.after_commit(lambda: events.publish(queued))
        if added:
            _PUBLISHED.inc(type=type)
            for row in rows:
                self._wake[row["channel"]].set()
        return eid

    # --- the sender side ------------------------------------------------------------------

    async def run(self) -> None:
        """Deliver until drain() (or cancellation): one worker task per channel, plus housekeeping."""
        self._start_workers()
        try:
            await self._stop.wait()
        finally:
            await self._stop_workers()

    def _start_workers(self) -> None:
        if self._tasks or self._stop.is_set():
            return
        self._tasks = [asyncio.create_task(self._worker(name), name=f"outbox:{name}") for name in self.channels]
        self._tasks.append(asyncio.create_task(self._housekeeping(), name="outbox:housekeeping"))

    async def _stop_workers(self) -> None:
        tasks, self._tasks = self._tasks, []
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.refresh_depth()

    async def drain(self, deadline_s: float) -> bool:
        """Deliver what is due now (within `deadline_s`), then stop for good. True when nothing due is left.

        Rows waiting out a backoff and rows cut off by the deadline stay pending in SQLite and
        are sent after the next start (a delivery cut off mid-way may then arrive twice).
        """
        self._start_workers()  # also when run() was never started: drain still delivers
        for ev in self._wake.values():
            ev.set()
        loop = asyncio.get_running_loop()
        end = loop.time() + deadline_s
        drained = False
        while not drained and loop.time() < end:
            await asyncio.sleep(0.02)
            now = _now_ms()
            drained = not self._busy and not any(
                self.store.due_outbox(n, now, 1) for n in self.channels if n not in self._paused_until
            )
        self._stop.set()
        await self._stop_workers()
        log.info("outbox_drained", complete=drained, depth=self.depth())
        return drained

    async def _worker(self, name: str) -> None:
        while True:
            try:
                await self._serve(name)
            except Exception:  # e.g. SQLite busy: the channel's worker must outlive it
                log.exception("outbox_worker_failed", channel=name)
                await asyncio.sleep(1.0)

    async def _serve(self, name: str) -> None:
        channel, wake = self.channels[name], self._wake[name]
        while True:
            wake.clear()
            retry_at = await self._deliver_due(channel)
            self.refresh_depth()
            if retry_at is not None:
                # The channel just failed: leave it alone until the retry time, whatever is
                # published meanwhile (one probe per backoff step, and the order is kept).
                self._paused_until[name] = retry_at
                try:
                    await asyncio.sleep(max(0, retry_at - _now_ms()) / 1000)
                finally:
                    self._paused_until.pop(name, None)
                continue
            next_due = self.store.next_outbox_due_ms(name)
            timeout_s = 60.0 if next_due is None else max(0.001, (next_due - _now_ms()) / 1000)
            try:
                async with asyncio.timeout(timeout_s):
                    await wake.wait()
            except TimeoutError:
                pass

    async def _deliver_due(self, channel: Channel) -> int | None:
        """Deliver due rows oldest first; on a retryable failure return when to try again."""
        while rows := self.store.due_outbox(channel.name, _now_ms()):
            for row in rows:
                retry_at = await self._attempt(channel, row)
                if retry_at is not None:
                    return retry_at
        return None

    async def _attempt(self, channel: Channel, row: dict[str, Any]) -> int | None:
        event = Event(row["event_id"], row["type"], json.loads(row["payload"]), row["created_ms"])
        self._busy.add(channel.name)
        try:
            async with asyncio.timeout(self.policy.delivery_timeout_s):
                outcome = await channel.deliver(event)
        except DeliveryError as exc:
            return self._failed(channel.name, row, str(exc), exc.permanent, exc.retry_after_s)
        except TimeoutError:
            return self._failed(channel.name, row, "timed out", False, None)
        except Exception as exc:  # a channel bug must not kill its worker: retried, logged
            return self._failed(channel.name, row, f"{type(exc).__name__}: {exc}", False, None)
        finally:
            self._busy.discard(channel.name)
        crash_point("mid_outbox_delivery")
        now = _now_ms()
        self.store.update_outbox(
            row["id"], status=Outcome(outcome).value, attempts=row["attempts"] + 1, sent_ms=now, last_error=""
        )
        (_DELIVERED if outcome == Outcome.SENT else _SKIPPED).inc(channel=channel.name)
        _LATENCY.observe(now - row["created_ms"], channel=channel.name)
        return None

    def _failed(self, name: str, row: dict[str, Any], error: str, permanent: bool, retry_after_s: float | None) -> int | None:
        """Record a failed attempt; dead-letter or reschedule. Returns the retry time, if any."""
        error = log_mod.redact(error)[:500]  # never store a secret an exception may carry
        attempts, now = row["attempts"] + 1, _now_ms()
        too_old = now - row["created_ms"] > self.policy.max_age_s * 1000
        _FAILURES.inc(channel=name)
        if permanent or attempts >= self.policy.max_attempts or too_old:
            self.store.update_outbox(row["id"], status="dead", attempts=attempts, last_error=error)
            _DEAD.inc(channel=name)
            events.publish(events.AlertDeadLettered(name, row["event_id"], row["type"], error))
            log.error(
                "alert_dead_letter",
                channel=name,
                event_id=row["event_id"],
                type=row["type"],
                attempts=attempts,
                error=error,
                permanent=permanent,
            )
            return None
        # A receiver's Retry-After is honoured, but never past the row's dead-letter age
        # (an absurd or infinite value must not overflow the schedule).
        delay_s = min(max(self.policy.backoff_s(attempts, self._rng), retry_after_s or 0.0), self.policy.max_age_s)
        retry_at = now + int(delay_s * 1000)
        self.store.update_outbox(row["id"], attempts=attempts, next_attempt_ms=retry_at, last_error=error)
        log.warning(
            "alert_retry", channel=name, event_id=row["event_id"], attempts=attempts, retry_in_s=round(delay_s, 3), error=error
        )
        return retry_at

    async def _housekeeping(self) -> None:
        # Finished rows are kept for a while for inspection, then purged; depth is refreshed.
        while True:
            purged = self.store.purge_outbox(_now_ms() - int(self.policy.keep_days * 86_400_000))
            if purged:
                log.info("outbox_purged", rows=purged)
            self.refresh_depth()
            await asyncio.sleep(3600)

    # --- introspection --------------------------------------------------------------------

    def depth(self) -> dict[str, dict[str, int]]:
        """Pending and dead rows per channel, e.g. {"log": {"pending": 0, "dead": 0}}."""
        counts = self.store.outbox_depth()
        return {name: {st: counts.get((name, st), 0) for st in ("pending", "dead")} for name in self.channels}

    def refresh_depth(self) -> None:
        """Update the sigd_outbox_depth gauge from SQLite."""
        for name, by_status in self.depth().items():
            for status, n in by_status.items():
                _DEPTH.set(n, channel=name, status=status)

"""The systemd watchdog, fed only while market data is fresh and decisions succeed.

Every closed bar the feed hands over stamps `Freshness`. The keep-alive loop sends WATCHDOG=1
at half the systemd interval, but only while the newest closed bar arrived within
`stale_after_s`, no SQLite commit or decision write failed since the last one that succeeded,
and fewer than `max_failures` decisions failed in a row (daemon/health.py): a feed that dies
silently (socket open, no frames, no error) or a full disk then starves the watchdog and
systemd restarts the daemon. STATUS= lines say what is going on.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from daemon import log
from daemon.domain import Bar
from daemon.health import Failures
from daemon.metrics import REGISTRY
from daemon.service.sdnotify import Notifier

_log = log.get("sigd.watchdog")
_KEEPALIVES = REGISTRY.counter("sigd_watchdog_keepalives_total", "WATCHDOG=1 datagrams sent")
_STARVED = REGISTRY.counter("sigd_watchdog_starved_total", "keep-alives withheld: stale bars or failures in a row")
_BAR_AGE = REGISTRY.gauge("sigd_newest_bar_age_seconds", "wall seconds since the newest closed bar arrived")


@dataclass
class Freshness:
    """When the newest closed bar arrived (monotonic wall clock) and which bar it was."""

    stale_after_s: float
    max_failures: int = 3  # failed decisions in a row that make it unhealthy (a storage failure: one, daemon/health.py)
    failures: Failures = field(default_factory=Failures)  # the daemon passes the process-wide FAILURES
    clock: Callable[[], float] = time.monotonic
    last_wall: float | None = None
    last_bar: Bar | None = None
    started: float = field(default_factory=time.monotonic)

    def stamp(self, bar: Bar) -> None:
        """Record that `bar` just arrived."""
        self.last_wall = self.clock()
        self.last_bar = bar

    def age_s(self) -> float | None:
        """Seconds since the newest bar arrived; None before the first one."""
        return None if self.last_wall is None else self.clock() - self.last_wall

    def fresh(self) -> tuple[bool, str]:
        """(fresh?, why not) — before the first live bar, the start-up grace counts as fresh."""
        age = self.age_s()
        if age is None:
            since = self.clock() - self.started
            if since <= self.stale_after_s:
                return True, ""
            return False, f"no bar for {since:.0f}s since start"
        _BAR_AGE.set(age)
        if age > self.stale_after_s:
            return False, f"newest bar is {age:.0f}s old (limit {self.stale_after_s:g}s)"
        return True, ""

    def healthy(self) -> tuple[bool, str]:
        """(healthy?, why not): fresh bars, no storage failure outstanding, and fewer than
        `max_failures` failed decisions in a row."""
        failing = self.failures.reason(self.max_failures)
        if failing:
            return False, failing
        return self.fresh()


async def keepalive(
    notifier: Notifier, freshness: Freshness, stop: asyncio.Event, status_line: Callable[[], str], status_interval_s: float
) -> None:
    """Feed the watchdog while bars are fresh; refresh STATUS=; return when `stop` is set."""
    # Health is looked at every tick; a keep-alive goes out every half interval (keepalive_s),
    # and at once when health returns after a starved spell.
    every = notifier.keepalive_s
    period = min(every, status_interval_s) if every else status_interval_s
    last_status = 0.0
    last_ping = float("-inf")
    was_fresh = True
    while not stop.is_set():
        fresh, why = freshness.healthy()
        if fresh and every and (not was_fresh or time.monotonic() - last_ping + period / 2 >= every):
            notifier.watchdog()
            _KEEPALIVES.inc()
            last_ping = time.monotonic()
        if not fresh:
            _STARVED.inc()
            if was_fresh:
                _log.error("watchdog_starved", reason=why)
                notifier.status(f"unhealthy: {why}")
        elif not was_fresh:
            _log.info("watchdog_fed_again")
        was_fresh = fresh
        now = time.monotonic()
        if fresh and now - last_status >= status_interval_s:
            notifier.status(status_line())
            last_status = now
        # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancel that lands in the
        # same loop turn as `stop` being set (the local exchange's pump hung that way).
        try:
            async with asyncio.timeout(period):
                await stop.wait()
        except TimeoutError:
            pass

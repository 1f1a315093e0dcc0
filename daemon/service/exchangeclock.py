"""The exchange's clock, for latencies measured from the exchange's event time.

A closing update carries the exchange's event time `E`; the bar-close latency is the
exchange's "now" when the bar reaches its ring minus `E`. The embedded local exchange lends
its replay clock directly. A `sigd local-exchange` running on its own replays a past day at
`speed` x real time, so the wall clock is the wrong clock there (by some 480 days): this one
asks the server for its time (`GET /api/v3/time`), anchors it to the wall clock at the
middle of the request, and runs it on at `speed`. It re-anchors in the background every
`resync_s`, so a paused, advanced or restarted replay is followed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import aiohttp

from daemon import log

_log = log.get("sigd.exchangeclock")


class ExchangeClock:
    """The time of an exchange at `base_url` (ms), extrapolated between syncs at `speed`."""

    def __init__(self, base_url: str, speed: float, *, resync_s: float = 10.0, wall: Callable[[], float] = time.time) -> None:
        self.url = base_url.rstrip("/") + "/api/v3/time"
        self.speed, self.resync_s, self.wall = speed, resync_s, wall
        self._anchor: tuple[float, float] | None = None  # (server ms, wall s) at the last sync
        self._session: aiohttp.ClientSession | None = None
        self._resync: asyncio.Task[None] | None = None

    async def sync(self) -> None:
        """Ask the server for its time; anchor it at the middle of the request."""
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))
        before = self.wall()
        async with self._session.get(self.url) as r:
            r.raise_for_status()
            server_ms = float((await r.json())["serverTime"])
        self._anchor = (server_ms, (before + self.wall()) / 2)

    def now_ms(self) -> float:
        """The exchange's time now (the wall clock until the first sync)."""
        if self._anchor is None:
            return self.wall() * 1000.0
        server_ms, at = self._anchor
        elapsed = self.wall() - at
        if elapsed > self.resync_s and (self._resync is None or self._resync.done()):
            self._resync = asyncio.ensure_future(self._quiet_sync())
        return server_ms + elapsed * 1000.0 * self.speed

    async def _quiet_sync(self) -> None:
        try:
            await self.sync()
        except Exception as exc:
            _log.warning("exchange_clock_sync_failed", url=self.url, error=repr(exc))

    async def close(self) -> None:
        """Stop a running resync and close the HTTP session."""
        if self._resync is not None:
            self._resync.cancel()
            await asyncio.gather(self._resync, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

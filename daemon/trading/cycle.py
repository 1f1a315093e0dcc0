"""Decision cycles: the trigger bars of all traded symbols that close at the same instant.

The first trigger bar of an instant opens a cycle; the cycle closes when every traded symbol
has its bar in it, when the assembly deadline after that first bar passes, or when a newer
instant's bar arrives. A closed cycle runs as one batch (one forward pass per model, then the
decisions). A bar whose cycle has already closed is late: it is counted and joins the cycle
being assembled, or runs alone when none is. Never two cycles at once: closed cycles wait for
the running one, and a symbol's waiting bar is replaced by its newer one (the stale one is
skipped and counted: after a backfill burst the newest bar is decided, not those in between).

With `wait=True` (backtests) nothing runs on a timer: a cycle closes on data alone (complete,
or a newer instant) and `add` returns after the cycles it closed are decided.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from daemon import log as logging
from daemon.domain import Bar
from daemon.metrics import REGISTRY

log = logging.get("cycle")
LATE = REGISTRY.counter("sigd_cycle_late_total", "Trigger bars that missed their cycle's assembly deadline, by symbol")
CYCLE_SIZE = REGISTRY.histogram(
    "sigd_cycle_symbols", "Symbols decided together in one cycle", (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)
)


@dataclass(frozen=True)
class Job:
    """One symbol's trigger bar to decide, with its windows copied when it arrived."""

    bar: Bar
    windows: Mapping[str, np.ndarray]
    received: float  # the engine's perf clock when the bar arrived


class Cycles:
    """Assembles trigger bars into cycles and runs them, one at a time, through `run`."""

    def __init__(
        self,
        symbols: Sequence[str],
        deadline_s: float,
        run: Callable[[list[Job]], Awaitable[None]],
        skip: Callable[[Job, str], None],
        *,
        wait: bool = False,
    ) -> None:
        self.order = {s: i for i, s in enumerate(symbols)}
        self.deadline_s, self.run, self.skip, self.wait = deadline_s, run, skip, wait
        self._open: dict[str, Job] = {}
        self._open_ts: int | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._ready: dict[str, Job] = {}
        self._closed_ts = -1
        self._inflight: asyncio.Task[None] | None = None
        self.late = 0

    @property
    def busy(self) -> bool:
        """A cycle is running."""
        return self._inflight is not None and not self._inflight.done()

    @property
    def idle(self) -> bool:
        """No cycle running, none closed and waiting, none being assembled (a pre-warm may run)."""
        return not self.busy and not self._ready and self._open_ts is None

    async def add(self, job: Job) -> None:
        """Take one trigger bar (see the module doc)."""
        ts = job.bar.ts
        if ts <= self._closed_ts or (self._open_ts is not None and ts < self._open_ts):
            self._late(job)
        elif self._open_ts is not None and ts > self._open_ts:
            self._close()  # a newer instant: the open cycle's stragglers are late
            self._begin(job)
        elif self._open_ts is None:
            self._begin(job)
        else:
            self._put(self._open, job)
        if self._open_ts is not None and (len(self._open) >= len(self.order) or self.deadline_s <= 0):
            self._close()
        if self.wait:
            await self.drain()

    def _late(self, job: Job) -> None:
        self.late += 1
        LATE.inc(symbol=job.bar.symbol)
        log.warning("cycle_late", symbol=job.bar.symbol, bar_ts=job.bar.ts, cycle_ts=self._open_ts)
        if self._open_ts is not None:
            self._put(self._open, job)  # decided in the next cycle
        else:
            self._put(self._ready, job)  # decided alone
            self._kick()

    def _begin(self, job: Job) -> None:
        self._open_ts, self._open = job.bar.ts, {job.bar.symbol: job}
        if not self.wait and self.deadline_s > 0:
            self._timer = asyncio.get_running_loop().call_later(self.deadline_s, self._expire, job.bar.ts)

    def _expire(self, ts: int) -> None:
        if self._open_ts == ts:
            missing = sorted(set(self.order) - set(self._open))
            log.info("cycle_deadline", bar_ts=ts, decided=len(self._open), missing=missing[:10], n_missing=len(missing))
            self._close()

    def _put(self, into: dict[str, Job], job: Job) -> None:
        older = into.get(job.bar.symbol)
        if older is not None and older.bar.ts != job.bar.ts:
            self.skip(older if older.bar.ts < job.bar.ts else job, "superseded")
            if older.bar.ts > job.bar.ts:
                return
        into[job.bar.symbol] = job

    def _close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._open_ts is not None:
            self._closed_ts = max(self._closed_ts, self._open_ts)
        for job in self._open.values():
            self._put(self._ready, job)
        self._open, self._open_ts = {}, None
        self._kick()

    def _kick(self) -> None:
        if self._ready and not self.busy:
            # Taken now, not when the task first runs: a bar arriving meanwhile waits for the next cycle.
            self._inflight = asyncio.create_task(self._run_from(self._take()))

    def _take(self) -> list[Job]:
        jobs = sorted(self._ready.values(), key=lambda j: (self.order.get(j.bar.symbol, len(self.order)), j.bar.ts))
        self._ready = {}
        return jobs

    async def _run_from(self, jobs: list[Job]) -> None:
        while jobs:
            CYCLE_SIZE.observe(float(len(jobs)))
            await self.run(jobs)
            jobs = self._take()

    async def drain(self) -> None:
        """Wait until every closed cycle is decided."""
        while self._inflight is not None and not self._inflight.done():
            await asyncio.gather(self._inflight, return_exceptions=True)
            self._kick()

    async def flush(self) -> None:
        """Close the cycle being assembled and decide everything (shutdown, end of a backtest)."""
        self._close()
        await self.drain()

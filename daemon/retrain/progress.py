"""Progress of long work (jobs, folds, trials): a live table line on a terminal, log lines off one.

On a TTY one status line is redrawn in place (done / running / failed of total, best so far,
elapsed, ETA); elsewhere (systemd, CI, a pipe) a structlog `progress` event is written at most
every `every_s` seconds and once at the end, so a long run is never silent.
"""

from __future__ import annotations

import math
import sys
import threading
import time
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from typing import IO, Any

from daemon import log as logging
from models.fit import FIT_PROGRESS

_log = logging.get("sigd.progress")


class Progress:
    """Counts of a batch of units of work, shown as they change.

    A unit may report how far it has got (`advance(key, fraction)`: a model's training inside
    a fold reports every batch), so the ETA moves before the first unit ends; on a terminal a
    ticker thread redraws the line every second, so elapsed time never sits still.
    """

    def __init__(
        self,
        total: int,
        title: str,
        *,
        tty: bool | None = None,
        every_s: float = 30.0,
        stream: IO[str] | None = None,
        clock: Callable[[], float] = time.monotonic,
        tick_s: float = 1.0,
    ) -> None:
        self.total, self.title = total, title
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.every_s, self.clock, self.tick_s = every_s, clock, tick_s
        self.started = self.last_shown = clock()
        self.done = self.running = self.failed = 0
        self.best: float | None = None
        self._partial: dict[Hashable, float] = {}  # key of a running unit -> fraction of it done
        self._logged: tuple[int, int, int] | None = None  # counts in the last log line
        self._lock = threading.Lock()  # the ticker thread and the caller both draw
        self._ticker: threading.Thread | None = None
        self._stop = threading.Event()

    def _counts(self) -> tuple[int, int, int]:
        return self.done, self.running, self.failed

    def __getstate__(self) -> dict[str, Any]:
        # Ray Tune saves its callbacks with the experiment state: the terminal and threads do not travel.
        return {k: v for k, v in self.__dict__.items() if k not in ("stream", "_lock", "_ticker", "_stop")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, stream=sys.stderr, _lock=threading.Lock(), _ticker=None, _stop=threading.Event())

    def start(self, key: Hashable | None = None) -> None:
        """A unit of work began (`key` names it for `advance`)."""
        self.running += 1
        if key is not None:
            self._partial[key] = 0.0
        self._start_ticker()
        self._show(False)

    def advance(self, key: Hashable, fraction: float) -> None:
        """A running unit has done `fraction` (0..1) of its work."""
        if key in self._partial:  # a late report of a unit already finished is dropped
            self._partial[key] = min(max(float(fraction), 0.0), 1.0)
        now = self.clock()
        if not self.tty and now - self.last_shown >= self.every_s:
            self._show(False)

    def finish(self, ok: bool, score: float | None = None, key: Hashable | None = None) -> None:
        """A unit of work ended (ok or failed), with its score when it has one."""
        self.running = max(0, self.running - 1)
        if key is not None:
            self._partial.pop(key, None)
        self.done += 1
        self.failed += 0 if ok else 1
        if score is not None and math.isfinite(score) and (self.best is None or score > self.best):
            self.best = score
        self._show(False)

    def close(self) -> None:
        """The last line (and a newline on a terminal)."""
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join(timeout=2 * self.tick_s)
        self._show(True)
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()

    def work_done(self) -> float:
        """Units finished plus the fractions of those running."""
        return self.done + sum(self._partial.values())

    def eta_s(self) -> float | None:
        """Seconds left at the pace so far (None before any work is measured)."""
        work = self.work_done()
        if work <= 0.0:
            return None
        return (self.clock() - self.started) / work * max(self.total - work, 0.0)

    def line(self) -> str:
        """`title: 3.4/12 done, 2 running, 1 failed, best 1.23, 45 s elapsed, ETA 2 min`."""
        eta = self.eta_s()
        best = "-" if self.best is None else f"{self.best:.3f}"
        work = self.work_done()
        shown = f"{self.done}" if work == self.done else f"{work:.1f}"
        return (
            f"{self.title}: {shown}/{self.total} done, {self.running} running, {self.failed} failed, "
            f"best {best}, {_dur(self.clock() - self.started)} elapsed, ETA {'?' if eta is None else _dur(eta)}"
        )

    def _start_ticker(self) -> None:
        if not self.tty or self._ticker is not None or self.tick_s <= 0:
            return
        self._ticker = threading.Thread(target=self._tick, name="progress-ticker", daemon=True)
        self._ticker.start()

    def _tick(self) -> None:
        while not self._stop.wait(self.tick_s):
            self._show(False)

    def _show(self, final: bool) -> None:
        with self._lock:
            now = self.clock()
            if self.tty:
                self.stream.write("\r\033[K" + self.line())
                self.stream.flush()
            elif (final and self._counts() != self._logged) or now - self.last_shown >= self.every_s:
                self.last_shown, self._logged = now, self._counts()
                eta = self.eta_s()
                _log.info(
                    "progress",
                    title=self.title,
                    done=self.done,
                    total=self.total,
                    running=self.running,
                    failed=self.failed,
                    work_done=round(self.work_done(), 2),
                    best=self.best,
                    elapsed_s=round(now - self.started, 1),
                    eta_s=None if eta is None else round(eta, 1),
                )


@contextmanager
def fits_reporting(progress: Progress | None, key: Hashable) -> Iterator[None]:
    """While inside, a model fit in this thread reports its epochs to `progress` under `key`."""
    if progress is None:
        yield
        return
    token = FIT_PROGRESS.set(lambda fraction: progress.advance(key, fraction))
    try:
        yield
    finally:
        FIT_PROGRESS.reset(token)


def _dur(s: float) -> str:
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.0f} min" if s < 7200 else f"{s / 3600:.1f} h"

"""Progress of long work (jobs, folds, trials): a live table line on a terminal, log lines off one.

On a TTY one status line is redrawn in place (done / running / failed of total, best so far,
elapsed, ETA); elsewhere (systemd, CI, a pipe) a structlog `progress` event is written at most
every `every_s` seconds and once at the end, so a long run is never silent.
"""

from __future__ import annotations

import math
import sys
import time
from typing import IO, Callable

from daemon import log as logging

_log = logging.get("sigd.progress")


class Progress:
    """Counts of a batch of units of work, shown as they change."""

    def __init__(self, total: int, title: str, *, tty: bool | None = None, every_s: float = 30.0,
                 stream: IO[str] | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.total, self.title = total, title
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.every_s, self.clock = every_s, clock
        self.started = self.last_shown = clock()
        self.done = self.running = self.failed = 0
        self.best: float | None = None
        self._logged: tuple[int, int, int] | None = None  # counts in the last log line

    def _counts(self) -> tuple[int, int, int]:
        return self.done, self.running, self.failed

    def __getstate__(self) -> dict:
        # Ray Tune saves its callbacks with the experiment state: the terminal does not travel.
        return {**self.__dict__, "stream": None}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, stream=sys.stderr)

    def start(self) -> None:
        """A unit of work began."""
        self.running += 1
        self._show(False)

    def finish(self, ok: bool, score: float | None = None) -> None:
        """A unit of work ended (ok or failed), with its score when it has one."""
        self.running = max(0, self.running - 1)
        self.done += 1
        self.failed += 0 if ok else 1
        if score is not None and math.isfinite(score) and (self.best is None or score > self.best):
            self.best = score
        self._show(False)

    def close(self) -> None:
        """The last line (and a newline on a terminal)."""
        self._show(True)
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()

    def eta_s(self) -> float | None:
        """Seconds left at the pace so far (None before the first unit ends)."""
        if not self.done:
            return None
        return (self.clock() - self.started) / self.done * (self.total - self.done)

    def line(self) -> str:
        """`title: 3/12 done, 2 running, 1 failed, best 1.23, 45 s elapsed, ETA 2 min`."""
        eta = self.eta_s()
        best = "-" if self.best is None else f"{self.best:.3f}"
        return (f"{self.title}: {self.done}/{self.total} done, {self.running} running, {self.failed} failed, "
                f"best {best}, {_dur(self.clock() - self.started)} elapsed, ETA {'?' if eta is None else _dur(eta)}")

    def _show(self, final: bool) -> None:
        now = self.clock()
        if self.tty:
            self.stream.write("\r\033[K" + self.line())
            self.stream.flush()
        elif (final and self._counts() != self._logged) or now - self.last_shown >= self.every_s:
            self.last_shown, self._logged = now, self._counts()
            _log.info("progress", title=self.title, done=self.done, total=self.total, running=self.running,
                      failed=self.failed, best=self.best, elapsed_s=round(now - self.started, 1),
                      eta_s=None if self.eta_s() is None else round(self.eta_s() or 0.0, 1))


def _dur(s: float) -> str:
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.0f} min" if s < 7200 else f"{s / 3600:.1f} h"

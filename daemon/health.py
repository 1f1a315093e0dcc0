"""Failures the process must not shrug off: failed decisions and failed SQLite writes.

Each is logged where it happens and never stops the bar path; here it is also counted, so that
the watchdog (daemon/service/watchdog.py) can turn /healthz red and stop feeding systemd.
Storage failures ("commit": a transaction SQLite did not commit; "write": a decision whose
writes SQLite refused, e.g. a full disk, RLIMIT_FSIZE, a failing trigger) turn it red at the
first one: what was not written is not there after a crash. Other failed decisions (a bug)
turn it red after `[service] max_consecutive_failures` in a row. A success of the same kind
ends the run. One process-wide counter, like the metrics registry: the store and the engine
report into it without knowing who reads it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from daemon.metrics import REGISTRY

_FAILURES = REGISTRY.counter("sigd_failures_total", "Failed decisions and failed SQLite commits, by kind")
STORAGE_KINDS = ("commit", "write")  # red at the first failure, whatever the configured limit
_CONSECUTIVE = REGISTRY.gauge("sigd_consecutive_failures", "Failures in a row, by kind (0 after a success)")


@dataclass
class Failures:
    """Consecutive and total failures per kind ("decision", "commit"), with the last error."""

    consecutive: dict[str, int] = field(default_factory=dict)
    total: dict[str, int] = field(default_factory=dict)
    last_error: dict[str, str] = field(default_factory=dict)

    def failed(self, kind: str, error: str) -> None:
        """One more failure of `kind`."""
        self.consecutive[kind] = self.consecutive.get(kind, 0) + 1
        self.total[kind] = self.total.get(kind, 0) + 1
        self.last_error[kind] = error[:300]
        _FAILURES.inc(kind=kind)
        _CONSECUTIVE.set(self.consecutive[kind], kind=kind)

    def succeeded(self, kind: str) -> None:
        """A success of `kind` ends its run of failures."""
        if self.consecutive.get(kind):
            self.consecutive[kind] = 0
            _CONSECUTIVE.set(0, kind=kind)

    def worst(self) -> tuple[str, int]:
        """(kind, count) of the longest current run of failures; ("", 0) when there is none."""
        return max(((k, n) for k, n in self.consecutive.items()), key=lambda kn: kn[1], default=("", 0))

    def reason(self, limit: int) -> str:
        """Why health is red: a storage failure not yet followed by a success of its kind, or
        `limit` other failures of one kind in a row ("" when neither)."""
        for kind in STORAGE_KINDS:
            n = self.consecutive.get(kind, 0)
            if n:
                return f"{n} failed SQLite {kind}s in a row (red at the first): {self.last_error.get(kind, '')}"
        kind, n = self.worst()
        if n < limit:
            return ""
        return f"{n} failed {kind}s in a row (limit {limit}): {self.last_error.get(kind, '')}"

    def clear(self) -> None:
        """Forget everything (a fresh process, or a test)."""
        for kind in list(self.consecutive):
            self.succeeded(kind)
        self.total.clear()
        self.last_error.clear()


FAILURES = Failures()

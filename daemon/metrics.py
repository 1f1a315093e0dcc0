"""Process-wide metrics rendered in the Prometheus text format by the HTTP API.

Counters, gauges and histograms with labels; no dependency. Every module records into the
module-level REGISTRY, e.g. `REGISTRY.counter("sigd_dropped_frames_total", "...").inc(stream="ETH/USDT 1m")`.
"""

from __future__ import annotations

import bisect
import threading
from typing import Iterable

LabelKey = tuple[tuple[str, str], ...]

DEFAULT_BUCKETS_MS: tuple[float, ...] = (0.5, 1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)


def _key(labels: dict[str, str]) -> LabelKey:
    return tuple(sorted((k, str(v)) for k, v in labels.items()))


def _fmt_labels(key: LabelKey, extra: Iterable[tuple[str, str]] = ()) -> str:
    items = list(key) + list(extra)
    if not items:
        return ""
    body = ",".join(f'{k}="{v.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"' for k, v in items)
    return "{" + body + "}"


class Counter:
    """A monotonically increasing count per label set."""

    kind = "counter"

    def __init__(self, name: str, help: str) -> None:
        self.name, self.help = name, help
        self.values: dict[LabelKey, float] = {}
        self._lock = threading.Lock()

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        """Add `amount` to the labelled series."""
        k = _key(labels)
        with self._lock:
            self.values[k] = self.values.get(k, 0.0) + amount

    def get(self, **labels: str) -> float:
        """The labelled series' value (0 before the first update)."""
        return self.values.get(_key(labels), 0.0)

    def render(self) -> list[str]:
        """Exposition lines, one per label set."""
        return [f"{self.name}{_fmt_labels(k)} {v:g}" for k, v in sorted(self.values.items())]


class Gauge(Counter):
    """A value that goes up and down."""

    kind = "gauge"

    def set(self, value: float, **labels: str) -> None:
        """Set the labelled series to `value`."""
        with self._lock:
            self.values[_key(labels)] = float(value)


class Histogram:
    """Cumulative buckets, sum and count per label set (values in the unit of the name)."""

    kind = "histogram"

    def __init__(self, name: str, help: str, buckets: tuple[float, ...] = DEFAULT_BUCKETS_MS) -> None:
        self.name, self.help, self.buckets = name, help, tuple(sorted(buckets))
        self.counts: dict[LabelKey, list[int]] = {}
        self.sums: dict[LabelKey, float] = {}
        self._lock = threading.Lock()

    def observe(self, value: float, **labels: str) -> None:
        """Count `value` into its bucket of the labelled series."""
        k = _key(labels)
        with self._lock:
            counts = self.counts.setdefault(k, [0] * (len(self.buckets) + 1))
            counts[bisect.bisect_left(self.buckets, value)] += 1
            self.sums[k] = self.sums.get(k, 0.0) + value

    def count(self, **labels: str) -> int:
        """How many values the labelled series has observed."""
        return sum(self.counts.get(_key(labels), []))

    def render(self) -> list[str]:
        """Exposition lines: cumulative buckets, sum and count per label set."""
        lines: list[str] = []
        for k, counts in sorted(self.counts.items()):
            running = 0
            for bound, c in zip(self.buckets, counts):
                running += c
                lines.append(f"{self.name}_bucket{_fmt_labels(k, [('le', f'{bound:g}')])} {running}")
            running += counts[-1]
            lines.append(f"{self.name}_bucket{_fmt_labels(k, [('le', '+Inf')])} {running}")
            lines.append(f"{self.name}_sum{_fmt_labels(k)} {self.sums[k]:g}")
            lines.append(f"{self.name}_count{_fmt_labels(k)} {running}")
        return lines


class Registry:
    """Named metrics; asking twice for the same name returns the same object."""

    def __init__(self) -> None:
        self._metrics: dict[str, Counter | Histogram] = {}

    def _get(self, cls: type, name: str, help: str, **kw: object) -> object:
        m = self._metrics.get(name)
        if m is None:
            m = self._metrics[name] = cls(name, help, **kw)
        if type(m) is not cls:  # exact: a Gauge is a Counter subclass
            raise TypeError(f"metric {name} already registered as {type(m).__name__}")
        return m

    def counter(self, name: str, help: str) -> Counter:
        """The counter `name` (created on first use)."""
        return self._get(Counter, name, help)  # type: ignore[return-value]

    def gauge(self, name: str, help: str) -> Gauge:
        """The gauge `name` (created on first use)."""
        return self._get(Gauge, name, help)  # type: ignore[return-value]

    def histogram(self, name: str, help: str, buckets: tuple[float, ...] = DEFAULT_BUCKETS_MS) -> Histogram:
        """The histogram `name` (created on first use)."""
        return self._get(Histogram, name, help, buckets=buckets)  # type: ignore[return-value]

    def render(self) -> str:
        """All metrics in the Prometheus text exposition format."""
        out: list[str] = []
        for name in sorted(self._metrics):
            m = self._metrics[name]
            out.append(f"# HELP {name} {m.help}")
            out.append(f"# TYPE {name} {m.kind}")
            out.extend(m.render())
        return "\n".join(out) + "\n"


REGISTRY = Registry()

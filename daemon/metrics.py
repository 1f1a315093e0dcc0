"""Process-wide metrics on prometheus-client, rendered by the HTTP API's /metrics.

Every module records into the module-level REGISTRY with labels given at the call, e.g.
`REGISTRY.counter("sigd_feed_reconnects_total", "...").inc(stream="ETH/USDT 1m")`. The label
names of a metric are fixed by its first use (Prometheus needs one label set per metric);
a later call with other names is a bug and raises naming the metric.

Every metric is on the first scrape: one declared but not yet updated shows as a single zero
series without labels (a histogram: empty buckets) until its first update brings its
labelled series, so dashboards and alert rules work from the start. The standard
`process_*` (CPU, memory, open files) and `python_*` (interpreter, garbage collector)
collectors of prometheus-client are registered too.

A series labelled by `stream` ("SYMBOL TIMEFRAME") also carries `symbol`, so a per-symbol
Grafana panel sums by `symbol` without parsing label values.
"""

from __future__ import annotations

import threading
from typing import Any

import prometheus_client
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

# The `_created` series double every counter's lines and no sigd dashboard reads them.
prometheus_client.disable_created_metrics()

DEFAULT_BUCKETS_MS: tuple[float, ...] = (0.5, 1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)
CONTENT_TYPE = prometheus_client.CONTENT_TYPE_LATEST


def _labels(labels: dict[str, Any]) -> dict[str, str]:
    out = {k: str(v) for k, v in labels.items()}
    if "stream" in out and "symbol" not in out:
        out["symbol"] = out["stream"].split(" ")[0]
    return out


class _Metric:
    """A prometheus-client metric created on first use, with the label names of that use."""

    kind = "untyped"

    def __init__(self, registry: CollectorRegistry, name: str, help: str, **kw: Any) -> None:
        self.name, self.help, self._kw = name, help or name, kw
        self._registry = registry
        self._metric: Any = None
        self._names: tuple[str, ...] = ()
        self._lock = threading.Lock()

    def _factory(self) -> Any:
        raise NotImplementedError

    def _child(self, labels: dict[str, Any]) -> Any:
        values = _labels(labels)
        names = tuple(sorted(values))
        with self._lock:
            if self._metric is None:
                self._names = names
                self._metric = self._factory()(self.name, self.help, labelnames=names, registry=self._registry, **self._kw)
        if names != self._names:
            raise ValueError(f"metric {self.name}: labels {list(names)} differ from its labels {list(self._names)}")
        return self._metric.labels(**values) if names else self._metric

    @property
    def used(self) -> bool:
        """Updated at least once (its prometheus-client metric exists)."""
        return self._metric is not None

    def _sample(self, suffix: str, labels: dict[str, Any]) -> float:
        """The sum over the series whose labels include `labels` (0 before the first update):
        `get(reason="superseded")` counts every symbol's."""
        want, name = _labels(labels).items(), self.name.removesuffix("_total") + suffix
        if self._metric is None:
            return 0.0
        return sum(s.value for m in self._metric.collect() for s in m.samples if s.name == name and want <= s.labels.items())


class Counter(_Metric):
    """A monotonically increasing count per label set."""

    kind = "counter"

    def _factory(self) -> Any:
        return prometheus_client.Counter

    def inc(self, amount: float = 1.0, **labels: Any) -> None:
        """Add `amount` to the labelled series."""
        self._child(labels).inc(amount)

    def get(self, **labels: Any) -> float:
        """The labelled series' value (0 before the first update)."""
        return self._sample("_total", labels)


class Gauge(_Metric):
    """A value that goes up and down."""

    kind = "gauge"

    def _factory(self) -> Any:
        return prometheus_client.Gauge

    def set(self, value: float, **labels: Any) -> None:
        """Set the labelled series to `value`."""
        self._child(labels).set(float(value))

    def inc(self, amount: float = 1.0, **labels: Any) -> None:
        """Add `amount` to the labelled series."""
        self._child(labels).inc(amount)

    def get(self, **labels: Any) -> float:
        """The labelled series' value (0 before the first update)."""
        return self._sample("", labels)


class Histogram(_Metric):
    """Cumulative buckets, sum and count per label set (values in the unit of the name)."""

    kind = "histogram"

    def _factory(self) -> Any:
        return prometheus_client.Histogram

    def observe(self, value: float, **labels: Any) -> None:
        """Count `value` into its bucket of the labelled series."""
        self._child(labels).observe(value)

    def count(self, **labels: Any) -> int:
        """How many values the labelled series has observed."""
        return int(self._sample("_count", labels))

    def total(self, **labels: Any) -> float:
        """The sum of the values the labelled series has observed."""
        return self._sample("_sum", labels)


class _Declared:
    """A collector of the zero series of metrics declared but never updated."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    def describe(self) -> list[Metric]:
        return []  # names come and go: the registry must not reserve them

    def collect(self) -> list[Metric]:
        out: list[Metric] = []
        for m in self.registry.metrics():
            if m.used:
                continue
            if isinstance(m, Counter):
                out.append(CounterMetricFamily(m.name, m.help, value=0.0))
            elif isinstance(m, Histogram):
                buckets = [(_bound(b), 0.0) for b in m._kw["buckets"]] + [("+Inf", 0.0)]
                out.append(HistogramMetricFamily(m.name, m.help, buckets=buckets, sum_value=0.0))
            else:
                out.append(GaugeMetricFamily(m.name, m.help, value=0.0))
        return out


def _bound(b: float) -> str:
    return str(prometheus_client.utils.floatToGoString(b))  # type: ignore[no-untyped-call]


class Registry:
    """Named metrics; asking twice for the same name returns the same object."""

    def __init__(self) -> None:
        self.collectors = CollectorRegistry(auto_describe=True)
        self._metrics: dict[str, _Metric] = {}
        self._lock = threading.Lock()
        self.collectors.register(_Declared(self))
        prometheus_client.ProcessCollector(registry=self.collectors)
        prometheus_client.PlatformCollector(registry=self.collectors)
        prometheus_client.GCCollector(registry=self.collectors)

    def metrics(self) -> list[_Metric]:
        """Every declared metric."""
        with self._lock:
            return list(self._metrics.values())

    def _get(self, cls: type[_Metric], name: str, help: str, **kw: Any) -> Any:
        with self._lock:
            m = self._metrics.get(name)
            if m is None:
                m = self._metrics[name] = cls(self.collectors, name, help, **kw)
        if type(m) is not cls:
            raise TypeError(f"metric {name} already registered as {type(m).__name__}")
        return m

    def counter(self, name: str, help: str) -> Counter:
        """The counter `name` (created on first use; the name ends in _total)."""
        if not name.endswith("_total"):
            raise ValueError(f"counter {name}: a counter's name ends in _total")
        return self._get(Counter, name, help)

    def gauge(self, name: str, help: str) -> Gauge:
        """The gauge `name` (created on first use)."""
        return self._get(Gauge, name, help)

    def histogram(self, name: str, help: str, buckets: tuple[float, ...] = DEFAULT_BUCKETS_MS) -> Histogram:
        """The histogram `name` (created on first use)."""
        return self._get(Histogram, name, help, buckets=tuple(sorted(buckets)))

    def render(self) -> str:
        """All metrics in the Prometheus text exposition format."""
        return generate_latest(self.collectors).decode()


REGISTRY = Registry()

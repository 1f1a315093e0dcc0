"""Prometheus text rendering of counters, gauges and histograms."""

from daemon.metrics import Registry


def test_render_prometheus_text() -> None:
    r = Registry()
    r.counter("sigd_reconnects_total", "Reconnects").inc(stream="ETH/USDT 1m")
    r.counter("sigd_reconnects_total", "Reconnects").inc(2, stream="ETH/USDT 1m")
    r.gauge("sigd_outbox_depth", "Pending rows").set(4)
    h = r.histogram("sigd_latency_ms", "Latency", buckets=(1, 10))
    for v in (0.5, 5, 50):
        h.observe(v)
    text = r.render()
    assert 'sigd_reconnects_total{stream="ETH/USDT 1m"} 3' in text
    assert "sigd_outbox_depth 4" in text
    assert 'sigd_latency_ms_bucket{le="1"} 1' in text
    assert 'sigd_latency_ms_bucket{le="10"} 2' in text
    assert 'sigd_latency_ms_bucket{le="+Inf"} 3' in text
    assert "sigd_latency_ms_count 3" in text
    assert "# TYPE sigd_latency_ms histogram" in text
    assert h.count() == 3

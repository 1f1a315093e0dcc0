"""Metrics through prometheus-client: the call sites' API, the text exposition, the symbol label."""

import pytest

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
    # A stream-labelled series carries its symbol too (per-symbol panels sum by it).
    assert 'sigd_reconnects_total{stream="ETH/USDT 1m",symbol="ETH/USDT"} 3.0' in text
    assert "# TYPE sigd_reconnects_total counter" in text
    assert "sigd_outbox_depth 4.0" in text
    assert 'sigd_latency_ms_bucket{le="1.0"} 1.0' in text
    assert 'sigd_latency_ms_bucket{le="10.0"} 2.0' in text
    assert 'sigd_latency_ms_bucket{le="+Inf"} 3.0' in text
    assert "sigd_latency_ms_count 3.0" in text
    assert "# TYPE sigd_latency_ms histogram" in text
    assert "_created" not in text
    assert h.count() == 3


def test_get_sums_the_series_that_match_and_label_sets_are_fixed() -> None:
    r = Registry()
    c = r.counter("sigd_signals_total", "Signals")
    assert c.get(side="LONG") == 0
    c.inc(side="LONG", symbol="ETH/USDT")
    c.inc(side="LONG", symbol="BTC/USDT")
    c.inc(side="SHORT", symbol="ETH/USDT")
    assert c.get(side="LONG") == 2 and c.get(symbol="ETH/USDT") == 2 and c.get() == 3
    with pytest.raises(ValueError, match="sigd_signals_total"):
        c.inc(side="LONG")
    with pytest.raises(TypeError, match="already registered"):
        r.gauge("sigd_signals_total", "")


def test_the_grafana_dashboard_queries_metrics_sigd_exports() -> None:
    import json
    import re

    from tests.conftest import REPO

    dash = json.loads((REPO / "docs" / "grafana-sigd.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    source = "\n".join(p.read_text() for p in (REPO / "daemon").rglob("*.py"))
    declared = set(re.findall(r'REGISTRY\.(?:counter|gauge|histogram)\(\s*"(sigd_\w+)"', source))
    used = {re.sub(r"_(bucket|sum|count)$", "", m) for e in exprs for m in re.findall(r"sigd_\w+", e)}
    assert used and used <= declared, used - declared

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


FIRST_SCRAPE = """
import asyncio, importlib, json, pkgutil, urllib.request
import daemon
for m in pkgutil.walk_packages(daemon.__path__, "daemon."):
    if not m.name.endswith("__main__"):
        importlib.import_module(m.name)
from daemon.metrics import REGISTRY
from daemon.service.api import Api

class Service:
    def status(self): return {"healthy": True}
    def refresh_metrics(self): pass

async def main():
    api = Api(Service(), port=0)
    await api.start()
    text = await asyncio.to_thread(lambda: urllib.request.urlopen(api.url + "/metrics", timeout=10).read().decode())
    await api.stop()
    print(json.dumps({"names": [m.name for m in REGISTRY.metrics()], "text": text}))

asyncio.run(main())
"""


def test_the_first_scrape_after_start_has_every_metric() -> None:
    """A fresh process, every module imported, nothing updated yet: every declared sigd_*
    metric has a sample (zero), and the process_* and python_* collectors are there."""
    import json
    import os
    import re
    import subprocess
    import sys

    from tests.conftest import REPO

    done = subprocess.run(
        [sys.executable, "-c", FIRST_SCRAPE],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    first = json.loads(done.stdout.strip().splitlines()[-1])
    declared, text = set(first["names"]), first["text"]
    source = "\n".join(p.read_text() for p in (REPO / "daemon").rglob("*.py"))
    in_code = set(re.findall(r'REGISTRY\.(?:counter|gauge|histogram)\(\s*"(sigd_\w+)"', source))
    assert in_code <= declared, in_code - declared  # imported at start, not on first use
    samples = {re.split(r"[{ ]", line)[0] for line in text.splitlines() if line and not line.startswith("#")}
    for name in declared:
        assert f"# TYPE {name.removesuffix('_total')} " in text or f"# TYPE {name} " in text, name
        assert name in samples or f"{name}_count" in samples, f"{name}: no sample on the first scrape"
    # The pages that list metrics: the README, the logs-and-metrics page and docs/operations/security.md.
    pages = [
        REPO / "README.md",
        *(REPO / "docs" / "operations").glob("*metrics*.md"),
        REPO / "docs" / "operations" / "security.md",
    ]
    docs = "\n".join(p.read_text() for p in pages if p.exists())
    listed = {re.sub(r"_(bucket|sum|count)$", "", m) for m in re.findall(r"\bsigd_[a-z_]*[a-z]\b", docs)}
    from daemon.service.httpserver import SESSION_COOKIE

    listed = {m for m in listed if not m.endswith("_")} - {SESSION_COOKIE}  # "sigd_feed_*" prefixes; the cookie
    assert listed <= declared, listed - declared  # every metric the docs list exists from the start
    for standard in (
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
        "python_info",
        "python_gc_objects_collected_total",
    ):
        assert standard in samples, standard

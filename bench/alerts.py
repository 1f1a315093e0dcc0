"""`python -m bench alerts`: cost of publish() on the bar path and outbox delivery over loopback.

publish() is what the engine pays per event: JSON + one SQLite transaction with a row per
channel (here 4: log, signal websocket, 2 webhooks). Delivery is publish -> a loopback
webhook receiver's 200, measured by the outbox's own latency histogram.
"""

from __future__ import annotations

import asyncio
import io
import os
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from aiohttp import web

from daemon import log
from daemon.alerts.notify import Notifier
from daemon.config import AlertsConfig, SignalWsConfig, WebhookConfig
from daemon.metrics import REGISTRY
from daemon.store import Store

N_EVENTS = 2000


def _payload(i: int) -> dict[str, object]:
    return {
        "symbol": "ETH/USDT",
        "side": "LONG",
        "confidence": 0.7,
        "price": 3000.0 + i,
        "bar_ts": 1_750_000_020_000 + i * 60_000,
        "model_versions": {"a": "v1", "b": "v2"},
    }


async def _receiver() -> tuple[web.AppRunner, str]:
    async def hook(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.2)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}/hook"


def _pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1]


async def _run(tmp: Path) -> list[tuple[str, str]]:
    os.environ.setdefault("BENCH_WH_SECRET", "bench-secret-value")
    runner, url = await _receiver()
    hooks = tuple(WebhookConfig(name=n, url=url, secret_env="BENCH_WH_SECRET") for n in ("a", "b"))
    cfg = replace(AlertsConfig(), webhooks=hooks, signal_ws=SignalWsConfig(port=0, types=()), daily_summary_utc="")
    store = Store(tmp / "bench.sqlite")
    notifier = Notifier(cfg, store)
    await notifier.start()
    task = asyncio.create_task(notifier.run())
    publish_ms = []
    t0 = time.perf_counter()
    for i in range(N_EVENTS):
        t = time.perf_counter()
        notifier.publish("signal", _payload(i))
        publish_ms.append((time.perf_counter() - t) * 1000)
        if i % 20 == 0:
            await asyncio.sleep(0)  # let the senders run, as the event loop would between bars
    while store.count("outbox", "status='pending'"):
        await asyncio.sleep(0.01)
    elapsed = time.perf_counter() - t0
    await notifier.stop(2.0)
    await task
    await runner.cleanup()
    store.close()
    hist = REGISTRY.histogram("sigd_alert_delivery_ms", "")
    delivered = hist.count(channel="webhook:a")
    return [
        ("events published", f"{N_EVENTS} x 4 channels"),
        ("publish() p50 / p99 ms", f"{_pct(publish_ms, 50):.3f} / {_pct(publish_ms, 99):.3f}"),
        ("webhook deliveries / s (2 webhooks)", f"{2 * delivered / elapsed:.0f}"),
        ("webhook mean publish->delivered ms (burst)", f"{hist.sums[(('channel', 'webhook:a'),)] / delivered:.1f}"),
    ]


def main(argv: list[str]) -> int:
    """Print the table."""
    log.setup("warning", "json", stream=io.StringIO())  # the log channel would flood stdout
    with tempfile.TemporaryDirectory() as tmp:
        rows = asyncio.run(_run(Path(tmp)))
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    return 0

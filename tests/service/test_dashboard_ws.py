"""/ws/events over a real socket: snapshot first, then bus events in order; a page too slow
for its bounded queue is dropped, counted and closed with 1013 (it reconnects and resyncs)."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from aiohttp import WSMsgType, web

from daemon import events
from daemon.domain import Bar
from daemon.metrics import REGISTRY
from daemon.service.dashboard import server


class FixedReadModel:
    """The read-model surface the routes use, over fixed data (the real one needs a daemon:
    tests/service/test_dashboard_browser.py runs it)."""

    def symbols(self) -> list[str]:
        return ["ETH/USDT"]

    def __init__(self) -> None:
        self.state_calls = 0

    def state(self) -> dict[str, Any]:
        self.state_calls += 1
        return {"mode": "paper", "symbols": {}, "portfolio": {}, "health": {}}

    def snapshot(self, timeframe: str) -> dict[str, Any]:
        return {"mode": "paper", "symbols": {}, "portfolio": {}, "health": {}, "timeframe": timeframe}

    def chart(self, symbol: str, timeframe: str) -> dict[str, Any]:
        return {"symbol": symbol, "timeframe": timeframe, "bars": [], "markers": []}


@pytest.fixture
def read() -> FixedReadModel:
    return FixedReadModel()


@pytest.fixture
async def url(read: FixedReadModel):
    app = web.Application()
    server.add_routes(app, read)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"
    await runner.cleanup()


def _bar(ts: int) -> events.BarClosed:
    return events.BarClosed.of(Bar("ETH/USDT", "1m", ts * 60_000, 1.0, 2.0, 0.5, 1.5, 1.0))


async def test_snapshot_then_events_then_state(url: str) -> None:
    async with aiohttp.ClientSession() as http, http.ws_connect(f"{url}/ws/events?tf=1h") as ws:
        first = await ws.receive_json(timeout=5)
        assert first["kind"] == "snapshot" and first["timeframe"] == "1h"
        events.publish(_bar(1))
        events.publish(events.StreamHealth("ETH/USDT 1m", True))
        got = [await ws.receive_json(timeout=5) for _ in range(3)]
        assert [g["kind"] for g in got] == ["bar_closed", "stream", "state"]
        assert got[0]["ts"] == 60_000
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{url}/api/chart", params={"symbol": "DOGE/USDT"}) as r:
            assert r.status == 400 and "unknown symbol" in await r.text()
        async with http.get(f"{url}/api/snapshot", params={"tf": "7m"}) as r:
            assert r.status == 400 and "unknown timeframe" in await r.text()


async def test_a_page_that_falls_behind_is_dropped_and_told_to_resync(url: str) -> None:
    async with aiohttp.ClientSession() as http, http.ws_connect(f"{url}/ws/events") as ws:
        assert (await ws.receive_json(timeout=5))["kind"] == "snapshot"
        before = REGISTRY.counter("sigd_event_subscribers_dropped_total", "").get()
        for ts in range(server.QUEUE + 50):  # no await: the pump cannot keep up
            events.publish(_bar(ts))
        assert REGISTRY.counter("sigd_event_subscribers_dropped_total", "").get() == before + 1
        received = 0
        while True:
            msg = await ws.receive(timeout=10)
            if msg.type != WSMsgType.TEXT:
                break
            received += 1
        assert msg.type == WSMsgType.CLOSE and msg.data == 1013
        assert received <= server.QUEUE


async def test_one_state_per_event_however_many_pages(url: str, read: FixedReadModel) -> None:
    async with aiohttp.ClientSession() as http, http.ws_connect(f"{url}/ws/events") as a, \
            http.ws_connect(f"{url}/ws/events") as b:
        for ws in (a, b):
            assert (await ws.receive_json(timeout=5))["kind"] == "snapshot"
        events.publish(events.StreamHealth("ETH/USDT 1m", False))
        for ws in (a, b):
            assert [(await ws.receive_json(timeout=5))["kind"] for _ in range(2)] == ["stream", "state"]
    assert read.state_calls == 1

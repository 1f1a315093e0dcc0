"""/ws/events over a real socket, served by the real HTTP server process: snapshot first, then
bus events in order; one state per burst however many pages; a control's own event refreshes
the state at once; a page that does not read is dropped (never buffered for), and a page too
slow for its queue is told to resync."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import WSMsgType

from daemon import events
from daemon.domain import Bar
from daemon.events import ControlApplied
from daemon.metrics import REGISTRY
from daemon.service.api import Api
from daemon.service.httpserver import Settings
from tests.alert_fakes import eventually

TOKEN = "dash-token-value"


class FixedReadModel:
    """The read-model surface the server asks for, over fixed data (the real one needs a
    daemon: tests/service/test_dashboard_browser.py runs it)."""

    def __init__(self) -> None:
        self.state_calls = 0
        self.snapshot_calls = 0
        self.paused = False

    def symbols(self) -> list[str]:
        return ["ETH/USDT"]

    def state(self) -> dict[str, Any]:
        self.state_calls += 1
        return {"mode": "paper", "symbols": {"ETH/USDT": {"paused": self.paused}}, "portfolio": {}, "health": {}}

    def snapshot(self, timeframe: str) -> dict[str, Any]:
        self.snapshot_calls += 1
        return {**self.state(), "timeframe": timeframe}

    def chart(self, symbol: str, timeframe: str) -> dict[str, Any]:
        return {"symbol": symbol, "timeframe": timeframe, "bars": [], "markers": []}


class DashboardService:
    """Controls over the fixed read model (pause flips its flag)."""

    def __init__(self) -> None:
        self.read = FixedReadModel()

    def status(self) -> dict[str, Any]:
        return {"healthy": True, "paused": self.read.paused}

    def refresh_metrics(self) -> None:
        pass

    def pause(self, symbol: str | None = None) -> dict[str, Any]:
        self.read.paused = True
        # As DaemonControls does for every channel (tests/service/test_readmodel.py checks it).
        events.publish(ControlApplied("pause", symbol or "all"))
        return {"symbol": symbol or "all"}


async def serving(service: DashboardService, **settings: Any) -> AsyncIterator[Api]:
    api = Api(service, port=0, token=TOKEN, settings=Settings(**settings))
    await api.start()
    try:
        yield api
    finally:
        await api.stop()


@pytest.fixture
async def dash() -> AsyncIterator[tuple[DashboardService, Api]]:
    service = DashboardService()
    async for api in serving(service):
        yield service, api


def _bar(ts: int) -> events.BarClosed:
    return events.BarClosed.of(Bar("ETH/USDT", "1m", ts * 60_000, 1.0, 2.0, 0.5, 1.5, 1.0))


async def _messages(ws: aiohttp.ClientWebSocketResponse, n: int) -> list[dict[str, Any]]:
    """The next `n` events, a batch frame counting as its events."""
    out: list[dict[str, Any]] = []
    while len(out) < n:
        msg = await ws.receive_json(timeout=5)
        out += msg["events"] if msg["kind"] == "batch" else [msg]
    return out


async def test_snapshot_then_events_then_state(dash) -> None:
    _, api = dash
    async with aiohttp.ClientSession() as http, http.ws_connect(f"{api.url}/ws/events?tf=1h") as ws:
        first = await ws.receive_json(timeout=5)
        assert first["kind"] == "snapshot" and first["timeframe"] == "1h"
        events.publish(_bar(1))
        events.publish(events.StreamHealth("ETH/USDT 1m", True))
        got = await _messages(ws, 3)
        assert [g["kind"] for g in got] == ["bar_closed", "stream", "state"]
        assert got[0]["ts"] == 60_000
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{api.url}/api/chart", params={"symbol": "DOGE/USDT"}) as r:
            assert r.status == 400 and "unknown symbol" in await r.text()
        async with http.get(f"{api.url}/api/snapshot", params={"tf": "7m"}) as r:
            assert r.status == 400 and "unknown timeframe" in await r.text()


async def test_one_state_per_event_however_many_pages(dash) -> None:
    service, api = dash
    async with aiohttp.ClientSession() as http:
        pages = await asyncio.gather(*(http.ws_connect(f"{api.url}/ws/events") for _ in range(20)))
        for ws in pages:
            assert (await ws.receive_json(timeout=5))["kind"] == "snapshot"
        # Twenty pages connecting at once cost the daemon far fewer than twenty snapshots.
        assert service.read.snapshot_calls <= 10
        before = service.read.state_calls
        events.publish(events.StreamHealth("ETH/USDT 1m", False))
        for ws in pages:
            assert [m["kind"] for m in await _messages(ws, 2)] == ["stream", "state"]
        assert service.read.state_calls == before + 1
        for ws in pages:
            await ws.close()


async def test_a_control_updates_the_page_at_once(dash) -> None:
    _, api = dash
    async with aiohttp.ClientSession() as http, http.ws_connect(f"{api.url}/ws/events") as ws:
        assert (await ws.receive_json(timeout=5))["symbols"]["ETH/USDT"]["paused"] is False
        started = time.monotonic()
        async with http.post(f"{api.url}/pause", headers={"Authorization": f"Bearer {TOKEN}"}) as r:
            assert r.status == 200
        got = await _messages(ws, 2)
        assert [m["kind"] for m in got] == ["control", "state"] and got[0]["action"] == "pause"
        assert got[1]["symbols"]["ETH/USDT"]["paused"] is True
        assert time.monotonic() - started < 2.0  # not at the next bar


async def test_a_page_that_does_not_read_is_dropped_not_buffered_for() -> None:
    service = DashboardService()
    async for api in serving(service, send_timeout_s=0.5):
        async with aiohttp.ClientSession() as http:
            ws = await http.ws_connect(f"{api.url}/ws/events")
            assert (await ws.receive_json(timeout=5))["kind"] == "snapshot"
            ws._response.connection.transport.pause_reading()  # a client that never reads
            await eventually(lambda: REGISTRY.gauge("sigd_dashboard_clients", "").get() == 1, what="one page")
            big = "x" * 20_000
            for i in range(3000):  # 60 MB: more than any socket buffer holds
                events.publish(events.StreamHealth(f"{big}{i}", False))
                if i % 100 == 0:
                    await asyncio.sleep(0)
            await eventually(
                lambda: REGISTRY.gauge("sigd_dashboard_clients", "").get() == 0, 20.0, what="the page that does not read dropped"
            )
            ws._response.connection.transport.resume_reading()
            kinds = set()
            while True:
                msg = await ws.receive(timeout=10)
                if msg.type != WSMsgType.TEXT:
                    break
                kinds.add(msg.type)
            assert msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.ERROR)
            await ws.close()

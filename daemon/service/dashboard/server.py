"""The dashboard's routes on the API server: the page, its snapshot, and the live event stream.

/ws/events first sends a `snapshot` (everything the page shows, from the read model), then
every domain event from the bus as it is published, and a fresh `state` (portfolio, health,
decisions; no charts) after events that change it. The page is subscribed before the
snapshot is read, so nothing falls between the two; what arrives twice carries the same id
(markers) or bar time (bars) and replaces, never duplicates. A client too slow for its
bounded queue is dropped by the bus and its socket closed (1013): the page reconnects and
resyncs from a new snapshot.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from aiohttp import WSCloseCode, web

from daemon import events, log
from daemon.domain import TIMEFRAME_MS
from daemon.metrics import REGISTRY

_log = log.get("sigd.dashboard")
HERE = Path(__file__).parent
FILES = {"index.html": "text/html", "app.js": "text/javascript", "style.css": "text/css",
         "vendor/lightweight-charts.standalone.production.js": "text/javascript"}
QUEUE = 512  # events per client: minutes of bars even with a burst of backfilled ones
STATEFUL = frozenset({"decision", "fill", "position", "stream", "model_swapped", "retrain", "alert_dead", "order"})
_CLIENTS = REGISTRY.gauge("sigd_dashboard_clients", "Dashboard pages connected to /ws/events")


def add_routes(app: web.Application, read: Any) -> None:
    """The page (/ and /ui/...), /api/snapshot, /api/chart and /ws/events over `read` (a ReadModel)."""
    app.router.add_get("/", _page("index.html"))
    for name in FILES:
        app.router.add_get(f"/ui/{name}", _page(name))

    async def snapshot(request: web.Request) -> web.Response:
        return _json(read.snapshot(_timeframe(request)))

    async def chart(request: web.Request) -> web.Response:
        return _json(read.chart(_symbol(request, read), _timeframe(request)))

    shared = SharedState(read)

    async def stream(request: web.Request) -> web.WebSocketResponse:
        return await _stream(request, read, shared)

    app.router.add_get("/api/snapshot", snapshot)
    app.router.add_get("/api/chart", chart)
    app.router.add_get("/ws/events", stream)


def _page(name: str) -> Any:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=(HERE / name).read_bytes(), content_type=FILES[name], charset="utf-8",
                            headers={"Cache-Control": "no-cache"})

    return handler


def _timeframe(request: web.Request) -> str:
    tf = request.query.get("tf", "1m")
    if tf not in TIMEFRAME_MS:
        raise web.HTTPBadRequest(text=f"unknown timeframe {tf!r}")
    return tf


def _symbol(request: web.Request, read: Any) -> str:
    symbol = request.query.get("symbol", "")
    if symbol not in read.symbols():
        raise web.HTTPBadRequest(text=f"unknown symbol {symbol!r}")
    return symbol


def _json(body: Any) -> web.Response:
    return web.json_response(body, dumps=dumps)


def dumps(obj: Any) -> str:
    """Compact JSON; anything odd as its string."""
    return json.dumps(obj, default=str, separators=(",", ":"))


class SharedState:
    """The `state` after one event, computed once however many pages are open (the queries
    run on the event loop: their cost must not grow with the number of pages)."""

    def __init__(self, read: Any) -> None:
        self.read = read
        self._after: events.Event | None = None
        self._text = ""

    def after(self, event: events.Event) -> str:
        """The state as JSON text, as of `event` (the same object reaches every page)."""
        if event is not self._after:
            self._after, self._text = event, dumps({"kind": "state", **self.read.state()})
        return self._text


async def _stream(request: web.Request, read: Any, shared: SharedState) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(heartbeat=20.0)
    await ws.prepare(request)
    sub = events.BUS.subscribe(f"dashboard {request.remote}", maxsize=QUEUE)
    _CLIENTS.inc()
    pump: asyncio.Task[None] | None = None
    try:
        await ws.send_str(dumps({"kind": "snapshot", **read.snapshot(_timeframe(request))}))
        pump = asyncio.create_task(_pump(sub, ws, shared))
        async for _ in ws:  # the page has nothing to say; read until it leaves
            pass
    finally:
        sub.close()
        if pump is not None:
            pump.cancel()
        _CLIENTS.inc(-1)
    return ws


async def _pump(sub: events.Subscription, ws: web.WebSocketResponse, shared: SharedState) -> None:
    """Bus → socket; after state-changing events a fresh `state`. Closes 1013 when dropped."""
    try:
        async for event in sub:
            await ws.send_str(dumps(event.to_dict()))
            if event.kind in STATEFUL and sub.queue.empty():  # a burst gets one state, at its end
                await ws.send_str(shared.after(event))
        if sub.dropped:
            _log.warning("dashboard_client_dropped", subscriber=sub.name)
            await ws.close(code=WSCloseCode.TRY_AGAIN_LATER, message=b"too slow: reconnect and resync")
    except (ConnectionError, RuntimeError) as exc:  # the page went away mid-send
        _log.info("dashboard_client_gone", subscriber=sub.name, error=repr(exc))

"""The dashboard's routes in the HTTP server process: the page, its snapshot, the live stream.

/ws/events first sends a `snapshot` (everything the page shows, from the daemon's read
model), then every domain event the daemon's bus publishes, and a fresh `state` (portfolio,
health, decisions; no charts) after events that change it, a control's own event included
(the PAUSED badge shows at once). Events that queue up while a page is being written to
travel as one `batch` frame. The page joins the hub before its snapshot is asked for, so
nothing falls between the two; what arrives twice carries the same id (markers) or bar time
(bars) and replaces, never duplicates.

A page too slow for its bounded queue, or whose send does not finish within
`[api] send_timeout_s`, is dropped: closed with 1013 when it can still take the close frame,
else cut. It reconnects and resyncs from a new snapshot.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import functools
import hashlib
import time
from pathlib import Path
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from daemon import log

_log = log.get("sigd.dashboard")
HERE = Path(__file__).parent
FILES_CHARTS = "vendor/lightweight-charts.standalone.production.js"
FILES = {"index.html": "text/html", "app.js": "text/javascript", "style.css": "text/css", FILES_CHARTS: "text/javascript"}
STYLE_MARK = 'createElement("style"),this.qv.innerText="'  # where the library's one inline style is
QUEUE = 512  # event frames per page: minutes of bars even with a burst of backfilled ones
STATEFUL = frozenset(
    {"decision", "fill", "position", "stream", "model_swapped", "retrain", "alert_dead", "order", "control", "gate_verdict"}
)
GONE = "gone"
STATE_EVERY_S = 1.0  # at most this often a fresh `state` for every page, however many events
BATCH_HEAD, BATCH_TAIL = '{"kind":"batch","events":[', "]}"


def batch(frames: list[str]) -> str:
    """One frame for several: a `batch` of their events (a batch among them is opened, not nested)."""
    if len(frames) == 1:
        return frames[0]
    inner = (f[len(BATCH_HEAD) : -len(BATCH_TAIL)] if f.startswith(BATCH_HEAD) else f for f in frames)
    return BATCH_HEAD + ",".join(inner) + BATCH_TAIL


@functools.cache
def chart_style_hash() -> str:
    """'sha256-...' of the one <style> element the vendored charts library adds (its
    attribution logo), for the page's CSP: computed from the file, so an upgrade keeps it right."""
    lib = (HERE / FILES_CHARTS).read_text()
    start = lib.index(STYLE_MARK) + len(STYLE_MARK)
    text = lib[start : lib.index('"', start)]
    return "sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()


def event_kind(text: str) -> str:
    """The `kind` of an event's JSON text (the daemon writes it first: {"kind":"...",...})."""
    if text.startswith('{"kind":"'):
        return text[9 : text.find('"', 9)]
    return ""


class Page:
    """One connected page: a bounded queue of frames and the task that writes them."""

    def __init__(self, ws: web.WebSocketResponse, request: web.Request, send_timeout_s: float) -> None:
        self.ws, self.request, self.send_timeout_s = ws, request, send_timeout_s
        self.queue: collections.deque[str] = collections.deque()
        self.queued = 0  # events in the queue (a batch frame counts as its events)
        self.wake = asyncio.Event()
        self.dropped = ""
        self.started = time.monotonic()  # joined the hub: a snapshot asked for later is complete for it

    def offer(self, text: str, events: int = 1) -> None:
        if self.dropped:
            return
        if self.queued and self.queued + events > QUEUE:  # behind: an empty queue takes any one batch
            self.drop("queue full")
            return
        self.queue.append(text)
        self.queued += events
        self.wake.set()

    def drop(self, why: str) -> None:
        if not self.dropped:
            self.dropped = why
            self.wake.set()

    async def pump(self, first: str) -> None:
        """The snapshot, then queued frames, several at once as one batch."""
        await self._send(first)
        while not self.dropped:
            await self.wake.wait()
            self.wake.clear()
            if self.dropped or not self.queue:
                continue
            frames = list(self.queue)
            self.queue.clear()
            self.queued = 0
            await self._send(batch(frames))

    async def _send(self, text: str) -> None:
        try:
            async with asyncio.timeout(self.send_timeout_s):  # not wait_for: it can swallow a cancel (3.11)
                await self.ws.send_str(text)
        except TimeoutError:
            self.drop("send timeout: the page does not read")
        except (ConnectionError, RuntimeError):  # it went away mid-send
            self.drop(GONE)

    async def close(self) -> None:
        """1013 when the page takes the close frame in time, else cut the connection."""
        if self.dropped == GONE:  # a client reset: one debug line
            _log.debug("dashboard_client_gone", peer=self.request.remote)
        else:
            _log.info("dashboard_client_dropped", peer=self.request.remote, why=self.dropped)
        try:
            await asyncio.wait_for(
                self.ws.close(code=WSCloseCode.TRY_AGAIN_LATER, message=b"too slow: reconnect and resync"), 2.0
            )
        except (TimeoutError, ConnectionError, RuntimeError):
            pass
        if self.request.transport is not None:
            self.request.transport.abort()


class Hub:
    """Fans the daemon's events out to every page; asks for one `state` per burst."""

    def __init__(self, daemon: Any, settings: Any, counts: Any) -> None:
        self.daemon, self.settings, self.counts = daemon, settings, counts
        self.pages: set[Page] = set()
        self._state_due = asyncio.Event()
        self._last_state = b""
        self._task: asyncio.Task[None] | None = None  # started by the first state-changing event

    def publish(self, texts: list[str]) -> None:
        """Events (JSON texts, in order) to every page as one frame, built once for all of them;
        a state-changing one asks for a fresh state."""
        if not self.pages or not texts:
            return
        frame = batch(texts)
        for page in list(self.pages):
            page.offer(frame, len(texts))
        if any(event_kind(text) in STATEFUL for text in texts):
            self._state_due.set()
            if self._task is None:
                self._task = asyncio.create_task(self._states(), name="dashboard:state")

    def resync(self) -> None:
        """The daemon lost events for us: every page reconnects and reloads its snapshot."""
        for page in list(self.pages):
            page.drop("events lost: resync")

    async def _states(self) -> None:
        while True:
            await self._state_due.wait()
            self._state_due.clear()
            if self.pages:
                status, body = await self.daemon.read("state", sent_after=time.monotonic())
                if status == 200 and body != self._last_state:  # an unchanged state is not sent again
                    self._last_state = body
                    text = body.decode()
                    for page in list(self.pages):
                        page.offer(text)
            await asyncio.sleep(STATE_EVERY_S)

    def count(self) -> None:
        self.counts.set("dashboard_clients", len(self.pages))

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        for page in list(self.pages):
            page.drop("server stopping")


def add_routes(app: web.Application, daemon: Any, hub: Hub, settings: Any) -> None:
    """The page (/ and /ui/...), /api/snapshot, /api/chart and /ws/events."""
    app.router.add_get("/", _file("index.html"))
    for name in FILES:
        app.router.add_get(f"/ui/{name}", _file(name))

    def fresh() -> float:
        return time.monotonic() - settings.snapshot_max_age_s

    async def snapshot(request: web.Request) -> web.Response:
        status, body = await daemon.read("snapshot", request.query.get("tf", "1m"), sent_after=fresh())
        return web.Response(status=status, body=body, content_type="application/json")

    async def chart(request: web.Request) -> web.Response:
        status, body = await daemon.read(
            "chart", request.query.get("symbol", ""), request.query.get("tf", "1m"), sent_after=fresh()
        )
        return web.Response(status=status, body=body, content_type="application/json")

    async def stream(request: web.Request) -> web.StreamResponse:
        return await _stream(request, daemon, hub, settings)

    app.router.add_get("/api/snapshot", snapshot)
    app.router.add_get("/api/chart", chart)
    app.router.add_get("/ws/events", stream)


def _file(name: str) -> Any:
    body = (HERE / name).read_bytes()  # read once: the files ship with the code

    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type=FILES[name], charset="utf-8", headers={"Cache-Control": "no-cache"})

    return handler


async def _stream(request: web.Request, daemon: Any, hub: Hub, settings: Any) -> web.StreamResponse:
    # No per-message compression: deflating every frame for every page costs more CPU than the
    # bytes it saves on loopback or a LAN.
    ws = web.WebSocketResponse(heartbeat=settings.ws_heartbeat_s, max_msg_size=4096, compress=False)
    page = Page(ws, request, settings.send_timeout_s)
    try:
        await ws.prepare(request)
        hub.pages.add(page)  # joined before the snapshot is asked for: nothing falls between
        hub.count()
        status, body = await daemon.read("snapshot_event", request.query.get("tf", "1m"), sent_after=page.started)
        if status != 200:
            await ws.close(code=WSCloseCode.POLICY_VIOLATION, message=body[:120])
            return ws
        pump = asyncio.create_task(page.pump(body.decode()))
        reader = asyncio.create_task(_drain(ws))
        await asyncio.wait([pump, reader], return_when=asyncio.FIRST_COMPLETED)
        reader.cancel()
        if page.dropped and not ws.closed:
            await page.close()
        pump.cancel()
    except ConnectionError as exc:  # the page went away: one debug line, never a traceback
        _log.debug("dashboard_client_gone", peer=request.remote, error=type(exc).__name__)
    finally:
        hub.pages.discard(page)
        hub.count()
    return ws


async def _drain(ws: web.WebSocketResponse) -> None:
    """The page has nothing to say; read until it leaves (pongs and the close are handled here)."""
    async for msg in ws:
        if msg.type == WSMsgType.ERROR:
            return

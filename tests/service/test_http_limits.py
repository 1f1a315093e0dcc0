"""Client limits of the real HTTP server process: at most `max_connections`, a connection that
sends no request is cut after the handshake timeout (a slow header too), an idle kept-alive
one after the idle timeout, and clients that reset leave no error and no traceback."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import AsyncIterator

import aiohttp
import pytest

from daemon import events
from daemon.metrics import REGISTRY
from daemon.service.api import Api
from daemon.service.httpserver import Settings
from tests.alert_fakes import eventually
from tests.service.test_dashboard_ws import TOKEN, DashboardService


async def _served(**settings: float) -> Api:
    api = Api(DashboardService(), port=0, token=TOKEN, settings=Settings(**settings))  # type: ignore[arg-type]
    await api.start()
    return api


@pytest.fixture
async def limited() -> AsyncIterator[Api]:
    api = await _served(max_connections=5, handshake_timeout_s=0.5, idle_timeout_s=0.5)
    yield api
    await api.stop()


def _port(api: Api) -> int:
    return int(api.url.rsplit(":", 1)[1])


async def _closed_by_server(sock: socket.socket, within_s: float) -> bool:
    """True when the server closes (or cuts) the connection within `within_s`."""
    loop = asyncio.get_running_loop()
    sock.setblocking(False)
    try:
        data = await asyncio.wait_for(loop.sock_recv(sock, 4096), within_s)
        return data == b"" or b"HTTP/1.1" in data and await _closed_by_server(sock, within_s)
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


async def test_a_connection_that_sends_nothing_or_half_a_header_is_cut(limited: Api) -> None:
    silent = socket.create_connection(("127.0.0.1", _port(limited)))
    slow = socket.create_connection(("127.0.0.1", _port(limited)))
    slow.sendall(b"GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")  # and never the rest
    try:
        assert await _closed_by_server(silent, 5.0)
        assert await _closed_by_server(slow, 5.0)
    finally:
        silent.close()
        slow.close()
    await eventually(
        lambda: REGISTRY.counter("sigd_http_refused_total", "").get(reason="handshake_timeout") >= 2, what="both counted"
    )


async def test_an_idle_kept_alive_connection_is_closed(limited: Api) -> None:
    sock = socket.create_connection(("127.0.0.1", _port(limited)))
    try:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert await _closed_by_server(sock, 5.0)  # the answer, then the close when idle
    finally:
        sock.close()


async def test_no_more_than_max_connections() -> None:
    api = await _served(max_connections=5, handshake_timeout_s=30.0)
    held = [socket.create_connection(("127.0.0.1", _port(api))) for _ in range(5)]
    try:
        await asyncio.sleep(0.3)
        extra = socket.create_connection(("127.0.0.1", _port(api)))
        assert await _closed_by_server(extra, 5.0)
        extra.close()
        await eventually(
            lambda: REGISTRY.counter("sigd_http_refused_total", "").get(reason="max_connections") >= 1, what="the refusal counted"
        )
        for s in held:  # room again: served
            s.close()
        await asyncio.sleep(0.3)
        async with aiohttp.ClientSession() as http, http.get(api.url + "/healthz") as r:
            assert r.status == 200
    finally:
        await api.stop()


async def test_clients_that_reset_leave_one_debug_line_not_a_traceback(capfd: pytest.CaptureFixture[str]) -> None:
    api = await _served()
    try:
        async with aiohttp.ClientSession() as http:
            pages = [await http.ws_connect(f"{api.url}/ws/events") for _ in range(50)]
            for ws in pages:
                await ws.receive_json(timeout=10)
            for ws in pages:  # reset: RST instead of a close handshake
                sock = ws._response.connection.transport.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                ws._response.connection.transport.abort()
            for i in range(50):  # the server writes to the reset sockets
                events.publish(events.StreamHealth(f"ETH/USDT 1m {i}", False))
            await asyncio.sleep(1.0)
            async with http.get(api.url + "/healthz") as r:
                assert r.status == 200
    finally:
        await api.stop()
    err = capfd.readouterr().err
    assert "Traceback" not in err and '"level": "error"' not in err and "[error" not in err, err[-3000:]

"""The HTTP side against the real server process: a cross-origin page reads nothing, a foreign
Host (DNS rebinding) is refused on every endpoint, private data needs the token or a session
beyond loopback, and the signal websocket refuses pages and foreign Hosts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import WSServerHandshakeError
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from daemon.alerts.signalws import SignalWebsocket
from daemon.service.api import Api
from daemon.service.httpserver import Settings, host_allowed
from tests.service.test_dashboard_ws import TOKEN, DashboardService

ENDPOINTS = ("/healthz", "/status", "/metrics", "/", "/ui/app.js", "/api/snapshot", "/api/chart?symbol=ETH/USDT")


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    served = Api(DashboardService(), port=0, token=TOKEN, settings=Settings(allowed_hosts=("sigd.lan",)))
    await served.start()
    yield served
    await served.stop()


async def test_a_foreign_host_is_refused_on_every_endpoint(api: Api) -> None:
    async with aiohttp.ClientSession() as http:
        for path in ENDPOINTS + ("/ws/events",):
            async with http.get(api.url + path, headers={"Host": "evil.example"}) as r:
                assert r.status == 421, path
                assert "positions" not in await r.text()
        async with http.post(api.url + "/pause", headers={"Host": "evil.example:8787", "Authorization": f"Bearer {TOKEN}"}) as r:
            assert r.status == 421
        port = api.url.rsplit(":", 1)[1]
        for host in (f"localhost:{port}", f"127.0.0.1:{port}", f"sigd.lan:{port}", f"192.168.1.20:{port}"):
            async with http.get(api.url + "/status", headers={"Host": host}) as r:
                assert r.status == 200, host


def test_host_allow_list() -> None:
    s = Settings(host="127.0.0.1", allowed_hosts=("Sigd.Lan",))
    for ok in ("localhost", "localhost:8787", "127.0.0.1:1", "[::1]:8787", "sigd.lan", "SIGD.LAN.:80", "10.0.0.5"):
        assert host_allowed(ok, s), ok
    for bad in ("evil.example", "evil.example:8787", "localhost.evil.example", "", "127.0.0.1.evil.example"):
        assert not host_allowed(bad, s), bad


async def test_a_cross_origin_page_reads_nothing(api: Api) -> None:
    evil = {"Origin": "http://evil.example"}
    async with aiohttp.ClientSession() as http:
        with pytest.raises(WSServerHandshakeError) as refused:
            await http.ws_connect(f"{api.url}/ws/events", headers=evil)
        assert refused.value.status == 403
        for path in ENDPOINTS:
            async with http.get(api.url + path, headers=evil) as r:
                assert r.status == 403, path
        # The page's own origin streams.
        async with http.ws_connect(f"{api.url}/ws/events", headers={"Origin": api.url}) as ws:
            assert (await ws.receive_json(timeout=5))["kind"] == "snapshot"


async def test_beyond_loopback_private_data_needs_the_token_or_a_session() -> None:
    # Bound to every address (as `[api] host = "0.0.0.0"`); the test talks to it over loopback.
    served = Api(DashboardService(), host="0.0.0.0", port=0, token=TOKEN)
    await served.start()
    url = served.url.replace("0.0.0.0", "127.0.0.1")
    try:
        async with aiohttp.ClientSession() as http:
            for path in ("/status", "/metrics", "/api/snapshot"):
                async with http.get(url + path) as r:
                    assert r.status == 401, path
                    assert "paused" not in await r.text()
            with pytest.raises(WSServerHandshakeError) as refused:
                await http.ws_connect(f"{url}/ws/events")
            assert refused.value.status == 401
            for path in ("/healthz", "/", "/ui/app.js"):  # no private data there
                async with http.get(url + path) as r:
                    assert r.status == 200, path
            async with http.get(url + "/status", headers={"Authorization": f"Bearer {TOKEN}"}) as r:
                assert r.status == 200 and "paused" in await r.text()
            async with http.get(url + "/session") as r:
                assert await r.json() == {"required": True, "active": False}
            async with http.post(url + "/session", headers={"Authorization": "Bearer wrong"}) as r:
                assert r.status == 401
        # The page's way: a session cookie, HttpOnly and SameSite=Strict, then the websocket.
        jar = aiohttp.CookieJar(unsafe=True)
        async with aiohttp.ClientSession(cookie_jar=jar) as page:
            async with page.post(url + "/session", headers={"Authorization": f"Bearer {TOKEN}"}) as r:
                assert r.status == 200
                cookie = r.headers["Set-Cookie"]
                assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and TOKEN not in cookie
            async with page.ws_connect(f"{url}/ws/events", headers={"Origin": url}) as ws:
                assert (await ws.receive_json(timeout=5))["kind"] == "snapshot"
            async with page.delete(url + "/session") as r:
                assert r.status == 200
            async with page.get(url + "/status") as r:
                assert r.status == 401
    finally:
        await served.stop()


async def test_the_signal_websocket_refuses_pages_and_foreign_hosts() -> None:
    ws = SignalWebsocket(port=0)
    await ws.start()
    try:
        for headers in ({"Origin": "http://evil.example"}, {"Origin": "http://127.0.0.1:8787"}):
            with pytest.raises(InvalidStatus) as refused:
                async with connect(ws.url, additional_headers=headers):
                    pass
            assert refused.value.response.status_code == 403
        async with aiohttp.ClientSession() as http:
            with pytest.raises(WSServerHandshakeError) as foreign:
                await http.ws_connect(ws.url, headers={"Host": "evil.example"})
            assert foreign.value.status == 421
        async with connect(ws.url) as client:  # a program on this machine
            await asyncio.sleep(0.1)
            assert ws.clients == 1
            await client.close()
    finally:
        await ws.close()


async def test_a_token_with_undecodable_bytes_is_refused_not_an_error(api: Api) -> None:
    import socket

    port = int(api.url.rsplit(":", 1)[1])
    raw = (
        b"POST /pause HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ?\xe0\r\n"
        b"Content-Length: 0\r\nConnection: close\r\n\r\n"
    )

    def send() -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(raw)
            out = b""
            while chunk := s.recv(65536):
                out += chunk
            return out

    answer = await asyncio.to_thread(send)
    assert answer.startswith(b"HTTP/1.1 401"), answer[:200]

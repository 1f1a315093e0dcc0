"""`stall(until_resubscribed=true)` over the control API: a stream stuck on the exchange's side
that a SUBSCRIBE of that stream on the same connection heals, as on Binance."""

from __future__ import annotations

import asyncio
import json

import aiohttp

from daemon.localexchange import LocalExchange
from tests.localexchange.test_localexchange_streams import START


async def _closes(ws: aiohttp.ClientWebSocketResponse, seconds: float) -> list[str]:
    """Streams of the closing updates received within `seconds`."""
    got: list[str] = []
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while (left := end - loop.time()) > 0:
        try:
            msg = await ws.receive(timeout=left)
        except TimeoutError:
            break
        data = json.loads(msg.data)
        if data.get("e") == "kline" and data["k"]["x"]:
            got.append(f"{data['s'].lower()}@kline_{data['k']['i']}")
    return got


async def test_a_stall_until_resubscribed_ends_with_the_streams_subscribe() -> None:
    stuck, healthy = "ethusdt@kline_1m", "btcusdt@kline_1m"
    async with LocalExchange(start_ms=START, speed=300.0) as lx, aiohttp.ClientSession() as http:
        async with http.post(f"{lx.base_url}/_control/stall", json={"until_resubscribed": True}) as r:
            assert r.status == 400 and "until_resubscribed needs a stream" in (await r.json())["error"]
        async with http.ws_connect(f"{lx.ws_url}/0") as ws:
            await ws.send_json({"method": "SUBSCRIBE", "params": [stuck, healthy], "id": 1})
            async with http.post(f"{lx.base_url}/_control/stall", json={"stream": stuck, "until_resubscribed": True}) as r:
                assert r.status == 200
            first = await _closes(ws, 1.0)  # a 1m bar closes every 0.2 s
            assert healthy in first and stuck not in first
            assert lx.faults.stalled(stuck)  # no end of its own
            await ws.send_json({"method": "UNSUBSCRIBE", "params": [stuck], "id": 2})
            await ws.send_json({"method": "SUBSCRIBE", "params": [stuck], "id": 3})
            then = await _closes(ws, 1.0)
            assert stuck in then and healthy in then and not lx.faults.stalled(stuck)
            assert lx.pump.subscribes == {stuck: 2, healthy: 1}

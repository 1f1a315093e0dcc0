"""Real loopback servers for the alert tests: a webhook receiver and a fake Telegram Bot API.

Both are aiohttp servers on 127.0.0.1. The receiver checks each body's HMAC itself (with
hmac/hashlib, not sigd's code) and records what arrived; the fake Bot API implements
getUpdates (offset, long-poll timeout) and sendMessage, with scripted failures.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from aiohttp import web

from daemon.config import AlertsConfig, SignalWsConfig, TelegramConfig, WebhookConfig


def alerts_config(**overrides: Any) -> AlertsConfig:
    """[alerts] for tests: fast backoff, no websocket, no daily summary unless asked."""
    base = AlertsConfig(
        log=False,
        signal_ws=SignalWsConfig(enabled=False),
        backoff_base_s=0.05,
        backoff_max_s=0.2,
        delivery_timeout_s=1.0,
        daily_summary_utc="",
    )
    return replace(base, **overrides)


def webhook(name: str, url: str, secret_env: str, types: tuple[str, ...] = ()) -> WebhookConfig:
    """One [[alerts.webhooks]] entry."""
    return WebhookConfig(name=name, url=url, secret_env=secret_env, types=types)


def telegram(base_url: str, chat_id: int, allowed: tuple[int, ...], token_env: str = "TEST_TG_TOKEN") -> TelegramConfig:
    """[alerts.telegram] pointing at the fake Bot API."""
    return TelegramConfig(
        enabled=True,
        base_url=base_url,
        token_env=token_env,
        chat_id=chat_id,
        allowed_user_ids=allowed,
        poll_timeout_s=1.0,
        confirm_s=60.0,
    )


def signal_payload(bar_ts: int, side: str = "LONG", price: float = 3120.5) -> dict[str, Any]:
    """A signal event payload as the engine publishes it."""
    return {
        "symbol": "ETH/USDT",
        "side": side,
        "confidence": 0.71,
        "price": price,
        "bar_ts": bar_ts,
        "strategy": "threshold",
        "model_versions": {"mtf_transformer": "v3", "cnn_lstm_attn": "v2"},
    }


async def eventually(cond: Any, timeout_s: float = 10.0, what: str = "condition") -> None:
    """Wait until `cond()` is true (polling); fail naming `what` otherwise."""
    end = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


class _Server:
    """An aiohttp app on loopback that can be stopped and started again on the same port."""

    def __init__(self, port: int = 0) -> None:
        self.port = port
        self._runner: web.AppRunner | None = None

    def app(self) -> web.Application:
        raise NotImplementedError

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app(), shutdown_timeout=0.2)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


class WebhookReceiver(_Server):
    """Records verified webhook bodies; answers `status` (e.g. 503 for "down", 400 for "reject")."""

    def __init__(self, secret: str, status: int = 200, delay_s: float = 0.0, throttle: int = 0, retry_after: str = "1") -> None:
        super().__init__()
        self.secret = secret.encode()
        self.status = status
        self.delay_s = delay_s
        self.throttle = throttle  # answer this many requests with 429 + "Retry-After: <retry_after>" first
        self.retry_after = retry_after
        self.times: list[float] = []
        self.received: list[dict[str, Any]] = []
        self.attempts = 0
        self.bad_signatures = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        return app

    async def _hook(self, request: web.Request) -> web.Response:
        self.attempts += 1
        self.times.append(time.monotonic())
        body = await request.read()
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.throttle:
            self.throttle -= 1
            return web.Response(status=429, headers={"Retry-After": self.retry_after})
        if self.status >= 300:
            return web.Response(status=self.status)
        expected = "sha256=" + hmac.new(self.secret, body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, request.headers.get("X-Sigd-Signature", "")):
            self.bad_signatures += 1
            return web.Response(status=401)
        self.received.append(json.loads(body))
        return web.Response(status=200)

    def ids(self) -> list[str]:
        return [r["id"] for r in self.received]


class FakeBotApi(_Server):
    """A Telegram Bot API stand-in: getUpdates and sendMessage for one token."""

    def __init__(self, token: str) -> None:
        super().__init__()
        self.token = token
        self.updates: list[dict[str, Any]] = []
        self.sent: list[dict[str, Any]] = []
        self.send_times: list[float] = []
        self.send_failures: list[tuple[int, dict[str, Any]]] = []  # scripted answers, in order
        self.offsets_seen: list[int] = []
        self._next_id = 100
        self._arrived = asyncio.Event()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/bot{token}/{method}", self._call)
        return app

    def message(self, user_id: int, text: str, chat_id: int | None = None) -> None:
        """Queue a text message from `user_id` (in their private chat unless `chat_id`)."""
        self._next_id += 1
        self.updates.append(
            {
                "update_id": self._next_id,
                "message": {
                    "message_id": self._next_id,
                    "date": int(time.time()),
                    "text": text,
                    "from": {"id": user_id, "is_bot": False, "first_name": "t"},
                    "chat": {"id": chat_id if chat_id is not None else user_id, "type": "private"},
                },
            }
        )
        self._arrived.set()

    @property
    def last_update_id(self) -> int:
        return self._next_id

    def replies_to(self, chat_id: int) -> list[str]:
        return [m["text"] for m in self.sent if m["chat_id"] == chat_id]

    async def _call(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return web.json_response({"ok": False, "error_code": 401, "description": "Unauthorized"}, status=401)
        params: Mapping[str, Any] = await request.json()
        method = request.match_info["method"]
        if method == "getUpdates":
            return web.json_response({"ok": True, "result": await self._get_updates(params)})
        if method == "sendMessage":
            self.send_times.append(time.monotonic())
            if self.send_failures:
                status, body = self.send_failures.pop(0)
                return web.json_response(body, status=status)
            self.sent.append(dict(params))
            return web.json_response({"ok": True, "result": {"message_id": len(self.sent)}})
        return web.json_response({"ok": False, "error_code": 404, "description": "Not Found"}, status=404)

    async def _get_updates(self, params: Mapping[str, Any]) -> list[dict[str, Any]]:
        offset = int(params.get("offset", 0))
        self.offsets_seen.append(offset)
        self.updates = [u for u in self.updates if u["update_id"] >= offset]  # confirmed ones go
        if not self.updates:
            self._arrived.clear()
            try:
                async with asyncio.timeout(float(params.get("timeout", 0))):
                    await self._arrived.wait()
            except TimeoutError:
                pass
        return list(self.updates)


class RecordingControls:
    """A Controls implementation over plain attributes (the app's real one wraps the engine)."""

    def __init__(self) -> None:
        self.paused = False
        self.flat_calls = 0
        self.symbols: list[tuple[str, str | None]] = []  # (action, symbol or None = all)

    def status(self) -> Mapping[str, Any]:
        return {"mode": "paper", "paused": self.paused, "symbol": "ETH/USDT"}

    def positions(self) -> list[Mapping[str, Any]]:
        return [{"symbol": "ETH/USDT", "amount": 0.5, "entry_price": 3100.0}]

    def recent_signals(self, n: int) -> list[Mapping[str, Any]]:
        return [signal_payload(1_750_000_000_000 + i * 60_000) for i in range(n)]

    def pnl(self) -> Mapping[str, Any]:
        return {"realized": 12.5, "unrealized": -1.25, "fees": 0.75, "trades": 3}

    def pause(self, symbol: str | None = None) -> Mapping[str, Any]:
        self.paused = True
        self.symbols.append(("pause", symbol))
        return {"paused": True}

    def resume(self, symbol: str | None = None) -> Mapping[str, Any]:
        self.paused = False
        self.symbols.append(("resume", symbol))
        return {"paused": False}

    async def flat(self, symbol: str | None = None) -> Mapping[str, Any]:
        self.flat_calls += 1
        self.symbols.append(("flat", symbol))
        return {"closed": [symbol or "ETH/USDT"]}

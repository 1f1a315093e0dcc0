"""The loopback HTTP API over a real socket: open reads, bearer-guarded actions, Prometheus text."""

from __future__ import annotations

import argparse
from typing import Any

import aiohttp
import pytest

from daemon.commands.status import render_status, status_command
from daemon.metrics import REGISTRY
from daemon.service.api import Api
from daemon.service.httpserver import Settings


class RecordingService:
    """A small Service: state in memory, records every action it is asked for."""

    def __init__(self) -> None:
        self.paused = False
        self.actions: list[str] = []
        self.healthy = True

    def status(self) -> dict[str, Any]:
        return {
            "healthy": self.healthy,
            "health_reason": "" if self.healthy else "bars stale",
            "paused": self.paused,
            "mode": "paper",
            "uptime_s": 42.0,
            "streams": {
                "ETH/USDT 1m": {
                    "last_bar_ts": 1_700_000_000_000,
                    "age_s": 3.2,
                    "degraded": False,
                    "reconnects": 1,
                    "dropped_frames": 0,
                }
            },
            "models": [{"name": "mtf_transformer", "version": "v1", "threshold": 0.55}],
            "position": {"symbol": "ETH/USDT", "amount": 0.5, "entry_price": 2500.0, "realized_pnl": 1.5, "fees": 0.1},
            "last_signal": {"side": "LONG", "confidence": 0.7, "price": 2501.0, "bar_ts": 1_700_000_000_000},
            "last_decision": {
                "bar_ts": 1_700_000_000_000,
                "models": {"mtf_transformer": {"side": "FLAT", "confidence": 0.45, "threshold": 0.95}},
            },
            "outbox": {"pending": 2, "sent": 10},
            "symbols": {"ETH/USDT": {"paused": False, "halted": False}, "BTC/USDT": {"paused": True, "halted": False}},
        }

    def refresh_metrics(self) -> None:
        REGISTRY.gauge("sigd_test_refreshed", "set by refresh_metrics").set(1)

    def pause(self, symbol: str | None = None) -> dict[str, Any]:
        self._check(symbol)
        self.actions.append("pause" + (f" {symbol}" if symbol else ""))
        self.paused = True
        return {"symbol": symbol or "all"}

    def resume(self, symbol: str | None = None) -> dict[str, Any]:
        self._check(symbol)
        self.actions.append("resume" + (f" {symbol}" if symbol else ""))
        self.paused = False
        return {"symbol": symbol or "all"}

    async def flat(self, symbol: str | None = None) -> dict[str, Any]:
        self._check(symbol)
        self.actions.append("flat" + (f" {symbol}" if symbol else ""))
        return {"closed": 0.5}

    @staticmethod
    def _check(symbol: str | None) -> None:
        if symbol not in (None, "ETH/USDT", "BTC/USDT"):
            raise ValueError(f"unknown symbol {symbol!r}")

    async def retrain(self) -> dict[str, Any]:
        self.actions.append("retrain")
        return {"started": True}


@pytest.fixture
async def served():
    service = RecordingService()
    # Reads shared for 0 s: each request sees the service as it is now.
    api = Api(service, port=0, token="s3cret-token-value", settings=Settings(snapshot_max_age_s=0))
    await api.start()
    async with aiohttp.ClientSession() as http:
        yield service, api, http
    await api.stop()


async def test_reads_are_open_and_well_formed(served) -> None:
    service, api, http = served
    async with http.get(f"{api.url}/healthz") as r:
        assert r.status == 200 and (await r.json())["healthy"] is True
    service.healthy = False
    async with http.get(f"{api.url}/healthz") as r:
        assert r.status == 503 and (await r.json())["reason"] == "bars stale"
    async with http.get(f"{api.url}/status") as r:
        body = await r.json()
        assert body["streams"]["ETH/USDT 1m"]["reconnects"] == 1 and body["outbox"]["pending"] == 2
    async with http.get(f"{api.url}/metrics") as r:
        text = await r.text()
        assert r.headers["Content-Type"].startswith("text/plain")
        assert "# TYPE sigd_test_refreshed gauge" in text and "sigd_test_refreshed 1" in text


async def test_actions_need_the_bearer_token(served) -> None:
    service, api, http = served
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic s3cret-token-value"}):
        async with http.post(f"{api.url}/pause", headers=headers) as r:
            assert r.status == 401
            assert "s3cret" not in await r.text()
    assert service.actions == [] and not service.paused
    ok = {"Authorization": "Bearer s3cret-token-value"}
    for name in ("pause", "flat", "resume", "retrain"):
        async with http.post(f"{api.url}/{name}", headers=ok) as r:
            body = await r.json()
            assert r.status == 200 and body["action"] == name
            if name == "flat":
                assert body["outcome"] == {"closed": 0.5}
    assert service.actions == ["pause", "flat", "resume", "retrain"] and not service.paused
    async with http.get(f"{api.url}/pause") as r:
        assert r.status == 405


async def test_actions_per_symbol_and_never_cross_origin(served) -> None:
    service, api, http = served
    ok = {"Authorization": "Bearer s3cret-token-value"}
    async with http.post(f"{api.url}/pause", params={"symbol": "BTC/USDT"}, headers=ok) as r:
        assert r.status == 200 and (await r.json())["outcome"] == {"paused": True, "symbol": "BTC/USDT"}
    async with http.post(f"{api.url}/flat", params={"symbol": "DOGE/USDT"}, headers=ok) as r:
        assert r.status == 400 and "unknown symbol 'DOGE/USDT'" in (await r.json())["error"]
    # A page of another site cannot make the browser act, even with the token.
    async with http.post(f"{api.url}/resume", headers={**ok, "Origin": "http://evil.example"}) as r:
        assert r.status == 403 and "cross-origin" in (await r.json())["error"]
    same = api.url.replace("http://", "")
    async with http.post(f"{api.url}/resume", headers={**ok, "Origin": f"http://{same}"}) as r:
        assert r.status == 200
    assert service.actions == ["pause BTC/USDT", "resume"]
    async with http.get(f"{api.url}/status") as r:
        assert "default-src 'self'" in r.headers["Content-Security-Policy"]
        assert r.headers["X-Content-Type-Options"] == "nosniff"


async def test_actions_are_refused_without_a_configured_token() -> None:
    service = RecordingService()
    api = Api(service, port=0, token=None)
    await api.start()
    try:
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{api.url}/flat", headers={"Authorization": "Bearer "}) as r:
                assert r.status == 403
    finally:
        await api.stop()
    assert service.actions == []


async def test_sigd_status_prints_for_a_person_and_as_json(served, write_config, capsys) -> None:
    _, api, _ = served
    port = api.url.rsplit(":", 1)[1]
    cfg = write_config(f"[api]\nport = {port}\n")
    # status_command uses blocking urllib: run it off the loop so the server can answer.
    import asyncio

    rc = await asyncio.to_thread(status_command, argparse.Namespace(config=str(cfg), json=False))
    out = capsys.readouterr().out
    assert rc == 0 and "ETH/USDT 1m" in out and "mtf_transformer" in out and "LONG" in out
    assert "last decision: bar 2023-11-14 22:13:20Z  mtf_transformer FLAT 0.450/0.95" in out
    assert "  BTC/USDT       PAUSED" in out and f"dashboard: {api.url}/" in out
    rc = await asyncio.to_thread(status_command, argparse.Namespace(config=str(cfg), json=True))
    assert rc == 0 and '"paused": false' in capsys.readouterr().out


def test_sigd_status_says_when_the_daemon_is_unreachable(write_config, tmp_path, capsys) -> None:
    cfg = write_config(f'[api]\nport = 0\n[store]\npath = "{tmp_path / "none.sqlite"}"\n')
    assert status_command(argparse.Namespace(config=str(cfg), json=False)) == 1
    assert "cannot reach the daemon" in capsys.readouterr().err


def test_sigd_status_says_when_the_api_is_off(write_config, capsys) -> None:
    cfg = write_config("[api]\nenabled = false\n")
    assert status_command(argparse.Namespace(config=str(cfg), json=False)) == 1
    assert "api.enabled is false" in capsys.readouterr().err


def test_render_status_copes_with_an_empty_status() -> None:
    text = render_status({})
    assert "UNHEALTHY" in text and "last signal: none yet" in text


def test_render_status_shows_every_symbols_position() -> None:
    # Five traded symbols, two held: each held one on its own line, not only the first symbol's.
    held = [
        {"symbol": "ETH/USDT", "amount": 0.5, "entry_price": 2722.7, "realized_pnl": 0.0, "fees": 1.0},
        {"symbol": "XRP/USDT", "amount": 782.0, "entry_price": 1.28, "realized_pnl": 0.0, "fees": 1.0},
    ]
    text = render_status(
        {
            "symbols": {"ETH/USDT": {}, "XRP/USDT": {}, "ADA/USDT": {"paused": True}},
            "position": held[0],
            "positions": held,
            "last_signal": {"symbol": "XRP/USDT", "side": "LONG", "confidence": 0.6, "price": 1.28},
        }
    )
    assert "  ETH/USDT       trading   +0.5 @ 2722.7" in text and "  XRP/USDT       trading   +782 @ 1.28" in text
    assert "  ADA/USDT       PAUSED    flat" in text and "position:" not in text
    assert "last signal: XRP/USDT LONG conf 0.600 @ 1.28" in text


def test_a_non_loopback_api_needs_the_token(write_config, tmp_path) -> None:
    import os
    import subprocess
    import sys

    from tests.conftest import REPO

    cfg = write_config(
        f'[api]\nhost = "0.0.0.0"\nport = 0\ntoken_env = "SIGD_TEST_UNSET_TOKEN"\n[store]\npath = "{tmp_path / "state.sqlite"}"\n'
    )
    env = {k: v for k, v in os.environ.items() if k != "SIGD_TEST_UNSET_TOKEN"}
    done = subprocess.run(
        [sys.executable, "-m", "daemon", "run", "-c", str(cfg)], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert "api.host = '0.0.0.0' is not loopback" in done.stderr and "$SIGD_TEST_UNSET_TOKEN" in done.stderr
    assert str(cfg) in done.stderr

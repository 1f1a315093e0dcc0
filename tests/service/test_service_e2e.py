"""End to end: `sigd run` as a subprocess against its built-in local exchange at 60x replay,
with the real ccxt client, tiny models trained by the real pipeline, a temporary SQLite file,
a webhook receiver that checks every HMAC, a fake Telegram Bot API and a systemd notify socket.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.alert_fakes import FakeBotApi, WebhookReceiver
from tests.conftest import REPO
from tests.daemon_harness import DaemonProcess, free_port, write_toml

pytestmark = pytest.mark.slow
SECRET, TG_TOKEN, API_TOKEN = "whsec-e2e-0123456789", "12345:tg-e2e-token-abcdef", "api-e2e-token-9876"
ALLOWED, STRANGER = 4242, 999


def service_config(
    tmp: Path,
    artifacts: dict[str, Path],
    hook_url: str,
    *,
    bot_url: str | None = None,
    start: str = "",
    stale_after_s: float = 2.0,
) -> tuple[Path, int, int]:
    """A config for one daemon: local exchange at 60x, shaped tiny models, paper, webhook (+ Telegram)."""
    lx_port, api_port = free_port(), free_port()
    sections: dict[str, dict[str, Any]] = {
        "local_exchange": {"port": lx_port, "speed": 60.0, "start": start},
        "store": {"path": tmp / "state.sqlite"},
        "log": {"format": "json"},
        "models": {
            "device": "cpu",
            "paths": {"mtf_transformer": artifacts["mtf_transformer-flat"], "cnn_lstm_attn": artifacts["cnn_lstm_attn-long"]},
            "trade_only_validated": False,
        },  # the shaped test models have no validation block
        "api": {"port": api_port},
        "service": {"stale_after_s": stale_after_s, "shutdown_deadline_s": 5.0, "status_interval_s": 1.0},
        "retrain": {"enabled": False},
        # Always LONG, out at +-5 bp: entries and exits every few bars of real ETH prices.
        "strategy": {"combine": "either", "cooldown_bars": 0, "stop_loss": 0.0005, "take_profit": 0.0005},
        "alerts": {
            "backoff_base_s": 0.2,
            "backoff_max_s": 1.0,
            "delivery_timeout_s": 2.0,
            "daily_summary_utc": "",
            "webhooks": [{"name": "e2e", "url": hook_url, "secret_env": "E2E_WEBHOOK_SECRET"}],
        },
        "alerts.signal_ws": {"port": 0},
    }
    if bot_url:
        sections["alerts.telegram"] = {
            "enabled": True,
            "base_url": bot_url,
            "token_env": "E2E_TG_TOKEN",
            "chat_id": ALLOWED,
            "allowed_user_ids": [ALLOWED],
            "poll_timeout_s": 1.0,
        }
    return write_toml(tmp / "config.toml", sections), lx_port, api_port


ENV = {"E2E_WEBHOOK_SECRET": SECRET, "E2E_TG_TOKEN": TG_TOKEN, "SIGD_API_TOKEN": API_TOKEN}


def query(db: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """A read-only query against the daemon's SQLite file (WAL: safe while it runs)."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
        return conn.execute(sql, params).fetchall()


async def test_run_trades_alerts_obeys_and_stops_cleanly(tmp_path: Path, tiny_artifacts: dict[str, Path]) -> None:
    receiver, bot = WebhookReceiver(SECRET), FakeBotApi(TG_TOKEN)
    await receiver.start()
    await bot.start()
    cfg, lx_port, api_port = service_config(tmp_path, tiny_artifacts, receiver.url, bot_url=bot.base_url)
    daemon = DaemonProcess(cfg, tmp_path, ENV, watchdog_usec=600_000).start()
    api, lx = f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{lx_port}"
    db = tmp_path / "state.sqlite"
    try:
        await daemon.wait_ready()
        # Predictions, signals, paper fills and signed webhook deliveries.
        kinds = lambda t: [e for e in receiver.received if e["type"] == t]  # noqa: E731
        await daemon.wait_for(lambda: len(kinds("signal")) >= 2 and kinds("fill"), 60, "signals and fills")
        assert receiver.bad_signatures == 0
        [[n_pred]] = query(db, "SELECT COUNT(*) FROM predictions")
        signal_events = {r[0] for r in query(db, "SELECT event_id FROM signals WHERE event_id IS NOT NULL")}
        assert n_pred >= 4 and {e["id"] for e in kinds("signal")} <= signal_events
        sig = kinds("signal")[0]
        assert sig["symbol"] == "ETH/USDT" and sig["side"] in ("LONG", "SHORT", "FLAT") and sig["price"] > 0
        assert set(sig["model_versions"]) == {"mtf_transformer", "cnn_lstm_attn"}
        [[n_fills]] = query(db, "SELECT COUNT(*) FROM fills")
        assert n_fills >= 1

        async with aiohttp.ClientSession() as http:
            await _check_api(http, api)
            await _check_telegram(http, api, bot)
            await _check_watchdog(http, api, lx, daemon)

        rc = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "daemon", "status", "-c", str(cfg)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert rc.returncode == 0 and "ETH/USDT 1m" in rc.stdout and "mtf_transformer" in rc.stdout

        # SIGTERM: a clean exit within the shutdown deadline, alerts drained, systemd told.
        t0 = time.monotonic()
        daemon.signal(signal.SIGTERM)
        assert await daemon.wait_exit(15) == 0
        assert time.monotonic() - t0 < 5.0 + 3.0
        daemon.poll_notify()
        assert any(d.startswith(b"STOPPING=1") for _, d in daemon.datagrams)
        stopped = [e for e in daemon.log_events() if e.get("event") == "daemon_stopped"]
        assert stopped and stopped[0]["outbox_drained"] is True
        assert query(db, "SELECT COUNT(*) FROM outbox WHERE channel='webhook:e2e' AND status='pending'") == [(0,)]
        assert API_TOKEN not in daemon.log_path.read_text() and TG_TOKEN not in daemon.log_path.read_text()
    finally:
        daemon.close()
        await receiver.stop()
        await bot.stop()


async def _check_api(http: aiohttp.ClientSession, api: str) -> None:
    async with http.get(f"{api}/status") as r:
        status = await r.json()
    assert status["healthy"] is True and status["mode"] == "paper" and not status["paused"]
    assert {m["name"] for m in status["models"]} == {"mtf_transformer", "cnn_lstm_attn"}
    assert status["streams"]["ETH/USDT 1m"]["degraded"] is False and status["last_signal"] is not None
    assert set(status["last_decision"]["models"]) == {"mtf_transformer", "cnn_lstm_attn"}
    async with http.get(f"{api}/metrics") as r:
        text = await r.text()
    for name in (
        "sigd_bar_to_signal_ms_bucket",
        'sigd_inference_ms_count{model="cnn_lstm_attn"}',
        "sigd_outbox_depth",
        "sigd_watchdog_keepalives_total",
    ):
        assert name in text, name
    async with http.post(f"{api}/pause") as r:
        assert r.status == 401
    async with http.post(f"{api}/pause", headers={"Authorization": f"Bearer {API_TOKEN}"}) as r:
        assert r.status == 200
    async with http.get(f"{api}/status") as r:
        assert (await r.json())["paused"] is True
    async with http.post(f"{api}/resume", headers={"Authorization": f"Bearer {API_TOKEN}"}) as r:
        assert r.status == 200
    async with http.post(f"{api}/retrain", headers={"Authorization": f"Bearer {API_TOKEN}"}) as r:
        assert (await r.json())["outcome"] == {"started": False, "reason": "retraining is disabled"}


async def _status(http: aiohttp.ClientSession, api: str) -> dict[str, Any]:
    async with http.get(f"{api}/status") as r:
        return await r.json()


async def _eventually(cond: Any, timeout: float, what: str) -> None:
    """Poll a predicate (plain or async) until true."""
    end = time.monotonic() + timeout
    while not (await r if inspect.isawaitable(r := cond()) else r):
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def _check_telegram(http: aiohttp.ClientSession, api: str, bot: FakeBotApi) -> None:
    bot.message(STRANGER, "/pause")  # not on the allow-list: ignored
    bot.message(ALLOWED, "/status")
    await _eventually(lambda: any("uptime_s" in t for t in bot.replies_to(ALLOWED)), 10, "/status reply")
    assert bot.replies_to(STRANGER) == [] and (await _status(http, api))["paused"] is False
    bot.message(ALLOWED, "/pause")

    async def paused() -> bool:
        return (await _status(http, api))["paused"] is True

    await _eventually(paused, 10, "/pause from the allowed id")
    bot.message(ALLOWED, "/resume")

    async def resumed() -> bool:
        return (await _status(http, api))["paused"] is False

    await _eventually(resumed, 10, "/resume")


async def _check_watchdog(http: aiohttp.ClientSession, api: str, lx: str, daemon: DaemonProcess) -> None:
    daemon.poll_notify()
    daemon.datagrams.clear()
    await asyncio.sleep(1.0)
    daemon.poll_notify()
    assert sum(d == b"WATCHDOG=1" for _, d in daemon.datagrams) >= 2  # fed every 0.3 s while fresh
    async with http.post(f"{lx}/_control/pause_clock") as r:  # the market goes silent
        assert r.status == 200
    await asyncio.sleep(2.0 + 1.0)  # stale_after_s, plus a keep-alive period or two
    daemon.poll_notify()
    daemon.datagrams.clear()
    await asyncio.sleep(1.5)
    daemon.poll_notify()
    assert not any(d == b"WATCHDOG=1" for _, d in daemon.datagrams), "watchdog fed while bars are stale"
    async with http.get(f"{api}/healthz") as r:
        assert r.status == 503 and "old" in (await r.json())["reason"]
    async with http.post(f"{lx}/_control/resume_clock") as r:
        assert r.status == 200
    await daemon.wait_for(lambda: any(d == b"WATCHDOG=1" for _, d in daemon.datagrams), 20, "watchdog fed again")


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat().replace("+00:00", "Z")


async def test_sigkill_and_restart_loses_no_alert_and_duplicates_no_order(
    tmp_path: Path, tiny_artifacts: dict[str, Path]
) -> None:
    receiver = WebhookReceiver(SECRET, status=503)  # down for the whole first run
    await receiver.start()
    cfg, _, _ = service_config(tmp_path, tiny_artifacts, receiver.url)
    db = tmp_path / "state.sqlite"
    first = DaemonProcess(cfg, tmp_path, ENV).start()
    try:
        await first.wait_ready()
        await first.wait_for(lambda: db.exists() and query(db, "SELECT COUNT(*) FROM fills")[0][0] >= 2, 60, "two paper fills")
        first.signal(signal.SIGKILL)
        assert await first.wait_exit(10) == -signal.SIGKILL
    finally:
        first.close()
    assert receiver.received == [] and receiver.attempts > 0
    queued = {r[0] for r in query(db, "SELECT event_id FROM outbox WHERE channel='webhook:e2e'")}
    orders_before = query(db, "SELECT client_order_id, bar_ts, status FROM orders ORDER BY bar_ts")
    assert queued and orders_before

    # The daemon was down for a while: the replay resumes a little after the newest stored bar.
    [[newest]] = query(db, "SELECT MAX(ts) FROM bars WHERE symbol='ETH/USDT' AND timeframe='1m'")
    cfg, _, _ = service_config(tmp_path, tiny_artifacts, receiver.url, start=_iso(newest + 3 * 60_000 + 30_000))
    receiver.status = 200  # the receiver is back
    second = DaemonProcess(cfg, tmp_path, ENV).start()
    try:
        await second.wait_ready()
        await second.wait_for(lambda: queued <= set(receiver.ids()), 60, "every queued alert delivered")
        await second.wait_for(
            lambda: query(db, "SELECT COUNT(*) FROM orders WHERE bar_ts > ?", (newest,))[0][0] >= 1,
            60,
            "a new order after the restart",
        )
        second.signal(signal.SIGTERM)
        assert await second.wait_exit(15) == 0
    finally:
        second.close()
        await receiver.stop()
    assert receiver.bad_signatures == 0
    # No order twice: one per decided bar, one fill per order; the pre-crash orders are intact.
    per_bar = query(db, "SELECT bar_ts, COUNT(*) FROM orders GROUP BY bar_ts HAVING COUNT(*) > 1")
    per_order = query(db, "SELECT client_order_id, COUNT(*) FROM fills GROUP BY client_order_id HAVING COUNT(*) > 1")
    assert per_bar == [] and per_order == []
    after = {r[0]: r for r in query(db, "SELECT client_order_id, bar_ts, status FROM orders")}
    assert all(cid in after for cid, _, _ in orders_before)
    # Ids are stable: a delivery repeated across the crash carries the same id and body.
    by_id: dict[str, str] = {}
    for event in receiver.received:
        body = json.dumps(event, sort_keys=True)
        assert by_id.setdefault(event["id"], body) == body

"""Health that reflects failures: failed decisions and failed SQLite commits turn /healthz red
and stop WATCHDOG=1 after `[service] max_consecutive_failures` in a row, so systemd restarts
the service; a success ends the run and the keep-alives come back."""

from __future__ import annotations

import asyncio
import socket
import sqlite3
import time
from pathlib import Path

import aiohttp
import pytest

from daemon.domain import Bar
from daemon.health import FAILURES
from daemon.service.sdnotify import Notifier
from daemon.service.watchdog import Freshness, keepalive
from daemon.store import Store
from tests.alert_fakes import WebhookReceiver
from tests.daemon_harness import CRASH_ENV, WEBHOOK_SECRET, DaemonProcess, trading_sections, write_toml

FULL = "CREATE TRIGGER sigd_test_disk_full BEFORE INSERT ON predictions BEGIN SELECT RAISE(ABORT, 'disk full'); END"


async def _healthz(http: aiohttp.ClientSession, api: str) -> tuple[int, dict]:
    async with http.get(f"{api}/healthz") as r:
        return r.status, await r.json()


def _keepalives_within(daemon: DaemonProcess, seconds: float) -> int:
    daemon.poll_notify()
    daemon.datagrams.clear()
    time.sleep(seconds)
    daemon.poll_notify()
    return sum(d == b"WATCHDOG=1" for _, d in daemon.datagrams)


@pytest.mark.slow
async def test_failing_decisions_turn_health_red_and_starve_the_watchdog(
        tmp_path: Path, tiny_artifacts: dict[str, Path]) -> None:
    receiver = WebhookReceiver(WEBHOOK_SECRET)
    await receiver.start()
    sections = trading_sections(tmp_path, tiny_artifacts, receiver.url)
    sections["service"]["max_consecutive_failures"] = 2
    daemon = DaemonProcess(write_toml(tmp_path / "config.toml", sections), tmp_path, CRASH_ENV,
                           watchdog_usec=600_000).start()
    api, db = f"http://127.0.0.1:{sections['api']['port']}", tmp_path / "state.sqlite"
    try:
        await daemon.wait_ready()
        async with aiohttp.ClientSession() as http:
            # Ready comes before the first bar; health is green once bars flow (bounded wait).
            for _ in range(100):
                first = await _healthz(http, api)
                if first[0] == 200:
                    break
                await asyncio.sleep(0.1)
            assert first[0] == 200, first
            assert await asyncio.to_thread(_keepalives_within, daemon, 1.0) >= 2
            # Every prediction write now fails inside the daemon, as on a full disk.
            with sqlite3.connect(db, timeout=10) as conn:
                conn.execute(FULL)
            await daemon.wait_for(lambda: sum(e.get("event") == "decision_failed" for e in daemon.log_events()) >= 2,
                                  30, "two failed decisions")
            status, body = await _healthz(http, api)
            assert status == 503 and "failed decisions in a row (limit 2)" in body["reason"], body
            assert "disk full" in body["reason"]
            assert await asyncio.to_thread(_keepalives_within, daemon, 1.5) == 0  # systemd will restart it
            # The disk has room again: the next decision succeeds, health and keep-alives come back.
            with sqlite3.connect(db, timeout=10) as conn:
                conn.execute("DROP TRIGGER sigd_test_disk_full")
            await daemon.wait_for(lambda: any(d == b"WATCHDOG=1" for _, d in daemon.datagrams), 30,
                                  "the watchdog fed again")
            assert (await _healthz(http, api))[0] == 200
    finally:
        daemon.close()
        await receiver.stop()


async def test_failed_commits_withhold_the_keepalive_until_one_succeeds(tmp_path: Path) -> None:
    FAILURES.clear()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(tmp_path / "notify.sock"))
    listener.setblocking(False)
    notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "notify.sock"), "WATCHDOG_USEC": "100000"})
    store = Store(tmp_path / "s.sqlite")
    freshness = Freshness(stale_after_s=60.0, max_failures=2, failures=FAILURES)
    stop = asyncio.Event()
    task = asyncio.create_task(keepalive(notifier, freshness, stop, lambda: "ok", 60.0))

    def drain() -> list[bytes]:
        got = []
        while True:
            try:
                got.append(listener.recv(4096))
            except BlockingIOError:
                return got

    bar = Bar("ETH/USDT", "1m", 1_754_352_000_000, 1.0, 1.0, 1.0, 1.0, 1.0)
    try:
        await asyncio.sleep(0.2)
        assert b"WATCHDOG=1" in drain()
        store.db.conn.execute("PRAGMA query_only = ON")  # SQLite now refuses every write: a read-only database
        for i in range(2):
            with pytest.raises(sqlite3.OperationalError, match="readonly"):
                store.add_bars([Bar(bar.symbol, bar.timeframe, bar.ts + i * 60_000, *[1.0] * 5)])
        ok, why = freshness.healthy()
        assert not ok and why.startswith("2 failed commits in a row (limit 2)") and "readonly" in why
        await asyncio.sleep(0.1)
        drain()
        await asyncio.sleep(0.3)
        assert b"WATCHDOG=1" not in drain()
        store.db.conn.execute("PRAGMA query_only = OFF")
        store.add_bars([bar])
        assert freshness.healthy() == (True, "")
        await asyncio.sleep(0.3)
        assert b"WATCHDOG=1" in drain()
    finally:
        stop.set()
        await task
        store.close()
        listener.close()
        FAILURES.clear()


@pytest.mark.slow
async def test_a_full_disk_stops_the_daemon_for_systemd_to_restart(tmp_path: Path,
                                                                   tiny_artifacts: dict[str, Path]) -> None:
    import resource

    receiver = WebhookReceiver(WEBHOOK_SECRET)
    await receiver.start()
    sections = trading_sections(tmp_path, tiny_artifacts, receiver.url)
    daemon = DaemonProcess(write_toml(tmp_path / "config.toml", sections), tmp_path, CRASH_ENV)
    daemon.start(piped=True)  # its log goes through a pipe: only the daemon's own files hit the limit
    try:
        await daemon.wait_ready()
        assert daemon.proc is not None
        # A real full disk for this process: every write past byte 1 of a file fails (EFBIG).
        resource.prlimit(daemon.proc.pid, resource.RLIMIT_FSIZE, (1, 1))
        assert await daemon.wait_exit(30) == 1  # Restart=on-failure
        for _ in range(50):  # the pipe's last lines reach the log file just after the exit
            failed = [e for e in daemon.log_events() if e.get("event") == "daemon_failed"]
            if failed:
                break
            await asyncio.sleep(0.1)
        assert failed and "disk" in failed[0]["exception"]
    finally:
        daemon.close()
        await receiver.stop()

"""Health that reflects failures: a failed SQLite commit or refused decision write turns /healthz
red and stops WATCHDOG=1 at the first one, other failed decisions after `[service]
max_consecutive_failures` in a row, so systemd restarts the service; a success ends the run and
the keep-alives come back. A full disk (RLIMIT_FSIZE) turns it red while the daemon runs."""

from __future__ import annotations

import asyncio
import socket
import sqlite3
import time
from pathlib import Path

import aiohttp
import pytest

from daemon.domain import Bar
from daemon.health import FAILURES, Failures
from daemon.service.sdnotify import Notifier
from daemon.service.watchdog import Freshness, keepalive
from daemon.store import Store
from tests.alert_fakes import WebhookReceiver
from tests.daemon_harness import CRASH_ENV, WEBHOOK_SECRET, DaemonProcess, query, trading_sections, write_toml

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
async def test_the_first_refused_decision_write_turns_health_red_and_starves_the_watchdog(
    tmp_path: Path, tiny_artifacts: dict[str, Path]
) -> None:
    receiver = WebhookReceiver(WEBHOOK_SECRET)
    await receiver.start()
    sections = trading_sections(tmp_path, tiny_artifacts, receiver.url)
    sections["service"]["max_consecutive_failures"] = 3  # for other failures; a storage one counts at once
    daemon = DaemonProcess(write_toml(tmp_path / "config.toml", sections), tmp_path, CRASH_ENV, watchdog_usec=600_000).start()
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
            await daemon.wait_for(
                lambda: any(e.get("event") == "decision_failed" for e in daemon.log_events()), 30, "a failed decision"
            )
            status, body = await _healthz(http, api)
            assert status == 503 and "failed SQLite writes in a row (red at the first)" in body["reason"], body
            assert "disk full" in body["reason"]
            assert await asyncio.to_thread(_keepalives_within, daemon, 1.5) == 0  # systemd will restart it
            # The disk has room again: the next decision succeeds, health and keep-alives come back.
            with sqlite3.connect(db, timeout=10) as conn:
                conn.execute("DROP TRIGGER sigd_test_disk_full")
            await daemon.wait_for(lambda: any(d == b"WATCHDOG=1" for _, d in daemon.datagrams), 30, "the watchdog fed again")
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
    freshness = Freshness(stale_after_s=60.0, max_failures=3, failures=FAILURES)
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
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            store.add_bars([bar])
        ok, why = freshness.healthy()  # the first failed commit, not the third
        assert not ok and why.startswith("1 failed SQLite commits in a row (red at the first)") and "readonly" in why
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
async def test_a_full_disk_turns_health_red_at_once_and_loses_no_decision_row(
    tmp_path: Path, tiny_artifacts: dict[str, Path]
) -> None:
    import resource
    import signal

    receiver = WebhookReceiver(WEBHOOK_SECRET)
    await receiver.start()
    sections = trading_sections(tmp_path, tiny_artifacts, receiver.url)
    daemon = DaemonProcess(write_toml(tmp_path / "config.toml", sections), tmp_path, CRASH_ENV)
    daemon.start(piped=True)  # its log goes through a pipe: only the daemon's own files hit the limit
    api, db = f"http://127.0.0.1:{sections['api']['port']}", tmp_path / "state.sqlite"
    try:
        await daemon.wait_ready()
        assert daemon.proc is not None
        pid = daemon.proc.pid
        await daemon.wait_for(lambda: query(db, "SELECT COUNT(*) FROM decisions")[0][0] >= 1, 60, "a first decision")
        async with aiohttp.ClientSession() as http:
            assert (await _healthz(http, api))[0] == 200
            # A real full disk for this process: every write past byte 1 of a file fails (EFBIG).
            _, hard = resource.prlimit(pid, resource.RLIMIT_FSIZE)
            resource.prlimit(pid, resource.RLIMIT_FSIZE, (1, hard))
            await daemon.wait_for(
                lambda: any(e.get("event") == "bar_store_failed" for e in daemon.log_events()), 30, "the first refused write"
            )
            status, body = await _healthz(http, api)
            assert status == 503 and "failed SQLite" in body["reason"], body  # red at the first, not the third
            await daemon.wait_for(
                lambda: any(e.get("event") == "decision_commit_retry" for e in daemon.log_events()),
                30,
                "a decision refused and retried",
            )
            assert daemon.proc.poll() is None  # still running, red: systemd's watchdog restarts it if it lasts
            # Room on the disk again: owed bars and decision rows are written, health is green.
            resource.prlimit(pid, resource.RLIMIT_FSIZE, (hard, hard))
            await daemon.wait_for(
                lambda: any(e.get("event") == "decision_rows_written" for e in daemon.log_events()),
                30,
                "the owed decision rows written",
            )
            for _ in range(100):
                status, body = await _healthz(http, api)
                if status == 200:
                    break
                await asyncio.sleep(0.1)
            assert status == 200, body
        daemon.signal(signal.SIGTERM)
        assert await daemon.wait_exit(30) == 0
        refused = query(db, "SELECT detail FROM decisions WHERE reason='failed_commit'")
        assert refused and all("disk I/O error" in d or "full" in d for (d,) in refused), refused
        # Every trigger bar from the first decision on has its row (the newest may have been
        # stored as the shutdown cancelled the feed, before it reached the engine).
        missing = query(
            db,
            "SELECT ts FROM bars b WHERE symbol='ETH/USDT' AND timeframe='1m' "
            "AND ts >= (SELECT MIN(bar_ts) FROM decisions) "
            "AND ts < (SELECT MAX(ts) FROM bars WHERE symbol='ETH/USDT' AND timeframe='1m') "
            "AND NOT EXISTS (SELECT 1 FROM decisions d WHERE d.symbol=b.symbol AND d.bar_ts=b.ts)",
        )
        assert missing == []
        assert (
            query(
                db, "SELECT COUNT(*) FROM (SELECT symbol, timeframe, bar_ts FROM decisions GROUP BY 1, 2, 3 HAVING COUNT(*) > 1)"
            )[0][0]
            == 0
        )
    finally:
        daemon.close()
        await receiver.stop()


def test_other_failed_decisions_turn_it_red_only_at_the_configured_limit() -> None:
    failures = Failures()
    for _ in range(2):
        failures.failed("decision", "ZeroDivisionError('bug')")
    assert failures.reason(3) == ""
    failures.failed("decision", "ZeroDivisionError('bug')")
    assert failures.reason(3).startswith("3 failed decisions in a row (limit 3)")
    failures.succeeded("decision")
    failures.failed("write", "OperationalError: database or disk is full")
    assert failures.reason(3).startswith("1 failed SQLite writes in a row (red at the first)")

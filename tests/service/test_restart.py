"""Restarting `sigd run` on the same state: the embedded replay goes on after the newest
stored bar (a market does not rewind), no decision is made twice, and operator actions act on
the stored state before the first bar of the new run."""

from __future__ import annotations

import signal
from pathlib import Path

import aiohttp
import pytest

from tests.alert_fakes import WebhookReceiver
from tests.daemon_harness import (API_TOKEN, CRASH_ENV, WEBHOOK_SECRET, DaemonProcess, query, trading_sections,
                                  write_toml)

pytestmark = pytest.mark.slow
START = "2025-08-13T14:25:45Z"


def _bars_closed(daemon: DaemonProcess, timeframe: str = "1m") -> list[int]:
    return [e["ts"] for e in daemon.log_events() if e.get("event") == "bar_closed" and e.get("timeframe") == timeframe
            and e.get("symbol") == "ETH/USDT"]


async def _run_until(daemon: DaemonProcess, db: Path, predictions: int) -> None:
    """Start, wait for `predictions` prediction rows in all, stop with SIGTERM."""
    daemon.start()
    try:
        await daemon.wait_ready()
        await daemon.wait_for(lambda: query(db, "SELECT COUNT(*) FROM predictions")[0][0] >= predictions, 60,
                              f"{predictions} predictions")
        daemon.signal(signal.SIGTERM)
        assert await daemon.wait_exit(20) == 0
    finally:
        daemon.close()


async def test_a_restart_resumes_after_the_newest_stored_bar(tmp_path: Path, tiny_artifacts: dict[str, Path]) -> None:
    receiver = WebhookReceiver(WEBHOOK_SECRET)
    await receiver.start()
    db = tmp_path / "state.sqlite"
    try:
        cfg = write_toml(tmp_path / "config.toml", trading_sections(tmp_path, tiny_artifacts, receiver.url,
                                                                    start=START))
        first = DaemonProcess(cfg, tmp_path, CRASH_ENV)
        await _run_until(first, db, 6)  # two models: three decided bars
        [[newest_1m]] = query(db, "SELECT MAX(ts) FROM bars WHERE symbol='ETH/USDT' AND timeframe='1m'")
        first_run = _bars_closed(first)
        assert first_run and max(first_run) == newest_1m

        second = DaemonProcess(cfg, tmp_path, CRASH_ENV)
        await _run_until(second, db, 12)
        [started] = [e for e in second.log_events() if e.get("event") == "local_exchange_started"]
        assert started["replay_start_ms"] >= newest_1m + 60_000  # not the configured start again
        assert min(_bars_closed(second)) > max(first_run)
        dupes = query(db, "SELECT symbol, bar_ts, model, COUNT(*) FROM predictions GROUP BY 1, 2, 3 "
                          "HAVING COUNT(*) > 1")
        assert dupes == []
    finally:
        await receiver.stop()

"""bar_close_latency is measured from the exchange's event time also when the daemon talks to
a `sigd local-exchange` running on its own (a replay of a past day: the wall clock is ~480
days off there)."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from daemon.localexchange import LocalExchange
from daemon.service.exchangeclock import ExchangeClock
from tests.alert_fakes import WebhookReceiver
from tests.conftest import REPO
from tests.daemon_harness import CRASH_ENV, WEBHOOK_SECRET, DaemonProcess, trading_sections, write_toml

SPEED = 60.0


async def test_the_clock_follows_a_replay_at_its_speed() -> None:
    async with LocalExchange(speed=SPEED) as lx:
        clock = ExchangeClock(lx.base_url, SPEED)
        try:
            await clock.sync()
            for _ in range(3):
                await asyncio.sleep(0.3)
                assert abs(clock.now_ms() - lx.now_ms()) < 0.05 * 1000 * SPEED  # within 50 ms of wall time
        finally:
            await clock.close()


async def _start_exchange() -> tuple[subprocess.Popen[str], str]:
    """`sigd local-exchange --port 0` as its own process; (process, base URL)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "daemon", "local-exchange", "--port", "0", "--speed", str(SPEED)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 60)
    assert line.startswith("local exchange listening on "), line
    return proc, line.split()[-1]


@pytest.mark.slow
async def test_latency_with_a_separate_local_exchange_is_milliseconds_not_days(
    tmp_path: Path, tiny_artifacts: dict[str, Path]
) -> None:
    receiver = WebhookReceiver(WEBHOOK_SECRET)
    await receiver.start()
    exchange, url = await _start_exchange()
    sections = trading_sections(tmp_path, tiny_artifacts, receiver.url, lx_url=url, speed=SPEED)
    daemon = DaemonProcess(write_toml(tmp_path / "config.toml", sections), tmp_path, CRASH_ENV).start()
    try:
        await daemon.wait_ready()
        api = f"http://127.0.0.1:{sections['api']['port']}"
        async with aiohttp.ClientSession() as http:

            async def latencies() -> dict[str, float | None]:
                async with http.get(f"{api}/status") as r:
                    return {k: s["latency_ms_p50"] for k, s in (await r.json())["streams"].items()}

            end = asyncio.get_running_loop().time() + 60
            fast = ("ETH/USDT 1s", "ETH/USDT 1m", "BTC/USDT 1m")  # 1h and 1d close too rarely to wait for
            while True:
                seen = await latencies()
                if all(seen[k] is not None for k in fast):
                    break
                assert asyncio.get_running_loop().time() < end, f"no live closing update on some stream: {seen}"
                await asyncio.sleep(0.5)
        # Replay milliseconds at 60x: 30 000 is half a second of wall time (the old figure: ~4e10).
        assert all(abs(ms) < 30_000 for ms in seen.values() if ms is not None), seen
        daemon.signal(signal.SIGTERM)
        assert await daemon.wait_exit(20) == 0
    finally:
        daemon.close()
        exchange.send_signal(signal.SIGTERM)
        exchange.wait(10)
        await receiver.stop()

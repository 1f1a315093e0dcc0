"""Restarting `sigd run` on the same state: the embedded replay goes on after the newest
stored bar (a market does not rewind), no decision is made twice, and operator actions act on
the stored state before the first bar of the new run."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import aiohttp
import pytest

from daemon.localexchange import LocalExchange
from daemon.trading.orders import client_order_id
from tests.alert_fakes import WebhookReceiver
from tests.daemon_harness import API_TOKEN, CRASH_ENV, WEBHOOK_SECRET, DaemonProcess, market, query, trading_sections, write_toml

pytestmark = pytest.mark.slow
START = "2025-08-13T14:25:45Z"


def _bars_closed(daemon: DaemonProcess, timeframe: str = "1m") -> list[int]:
    return [
        e["ts"]
        for e in daemon.log_events()
        if e.get("event") == "bar_closed" and e.get("timeframe") == timeframe and e.get("symbol") == "ETH/USDT"
    ]


async def _run_until(daemon: DaemonProcess, db: Path, predictions: int) -> None:
    """Start, wait for `predictions` prediction rows in all, stop with SIGTERM."""
    daemon.start()
    try:
        await daemon.wait_ready()
        await daemon.wait_for(
            lambda: query(db, "SELECT COUNT(*) FROM predictions")[0][0] >= predictions, 60, f"{predictions} predictions"
        )
        daemon.signal(signal.SIGTERM)
        assert await daemon.wait_exit(20) == 0
    finally:
        daemon.close()


async def test_a_restart_resumes_after_the_newest_stored_bar(tmp_path: Path, tiny_artifacts: dict[str, Path]) -> None:
    receiver = WebhookReceiver(WEBHOOK_SECRET)
    await receiver.start()
    db = tmp_path / "state.sqlite"
    try:
        cfg = write_toml(tmp_path / "config.toml", trading_sections(tmp_path, tiny_artifacts, receiver.url, start=START))
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
        dupes = query(db, "SELECT symbol, bar_ts, model, COUNT(*) FROM predictions GROUP BY 1, 2, 3 HAVING COUNT(*) > 1")
        assert dupes == []
    finally:
        await receiver.stop()


async def _stop_with_position_open(daemon: DaemonProcess, db: Path, lx: LocalExchange) -> float:
    """Run until a position is open with nothing pending, freeze the market there, stop; the amount."""
    daemon.start()
    try:
        await daemon.wait_ready()
        for _ in range(20):
            await daemon.wait_for(lambda: query(db, "SELECT amount FROM positions WHERE amount != 0"), 60, "an open position")
            lx.pause_clock()  # no bar from here: the state cannot change under the check
            await asyncio.sleep(1.0)
            held = query(db, "SELECT amount FROM positions WHERE amount != 0")
            if held and not query(db, "SELECT 1 FROM orders WHERE status IN ('open', 'pending', 'unknown')"):
                break
            lx.resume_clock()
        else:
            raise AssertionError("never an open position without a pending order")
        daemon.signal(signal.SIGTERM)
        assert await daemon.wait_exit(20) == 0
    finally:
        daemon.close()
    return float(held[0][0])


async def test_flat_right_after_start_closes_the_stored_position(tmp_path: Path, tiny_artifacts: dict[str, Path]) -> None:
    async with market(tmp_path, tiny_artifacts) as m:
        held = await _stop_with_position_open(DaemonProcess(m.config, tmp_path, CRASH_ENV), m.db, m.lx)
        [[newest]] = query(m.db, "SELECT MAX(ts) FROM bars WHERE symbol='ETH/USDT' AND timeframe='1m'")

        second = DaemonProcess(m.config, tmp_path, CRASH_ENV).start()  # the market stays frozen: no bar yet
        try:
            await second.wait_ready()
            async with aiohttp.ClientSession() as http:
                async with http.post(f"{m.api}/flat", headers={"Authorization": f"Bearer {API_TOKEN}"}) as r:
                    outcome = (await r.json())["outcome"]
            assert not [e for e in second.log_events() if e.get("event") == "bar_closed"]  # really before any
            assert outcome["order_sent"] is True and outcome["position_before"] == held, outcome
            manual = client_order_id("ETH/USDT", newest, "manual")
            [(side, amount)] = query(m.db, "SELECT side, amount FROM orders WHERE client_order_id=?", (manual,))
            assert (side, amount) == ("sell" if held > 0 else "buy", abs(held))
            m.lx.resume_clock()  # the next price arrives: the close fills
            await second.wait_for(lambda: f"fill-{manual}" in m.receiver.ids(), 30, "the close's fill delivered")
            [fill] = [e for e in m.receiver.received if e["id"] == f"fill-{manual}"]
            assert fill["position"]["amount"] == 0.0
            second.signal(signal.SIGTERM)
            assert await second.wait_exit(20) == 0
        finally:
            second.close()


async def test_every_trigger_bar_has_a_decision_row_across_a_stall_and_a_restart(
    tmp_path: Path, tiny_artifacts: dict[str, Path]
) -> None:
    async with market(tmp_path, tiny_artifacts, start=START) as m:
        daemon = DaemonProcess(m.config, tmp_path, CRASH_ENV).start()
        try:
            await daemon.wait_ready()
            await daemon.wait_for(lambda: query(m.db, "SELECT COUNT(*) FROM decisions")[0][0] >= 2, 60, "decisions")
            # Ten replay minutes of ETH 1m never come over the websocket: they arrive as one
            # REST backfill burst, while a decision runs; only the newest of a burst is decided.
            m.lx.faults.stall("ethusdt@kline_1m", seconds=10.0)
            await daemon.wait_for(
                lambda: any(e.get("event") == "stream_backfilled" for e in daemon.log_events()),
                60,
                "the stalled stream backfilled",
            )
            await daemon.wait_for(
                lambda: query(m.db, "SELECT COUNT(*) FROM decisions WHERE reason='superseded'")[0][0] >= 1,
                30,
                "a superseded bar's row",
            )
            daemon.signal(signal.SIGTERM)
            assert await daemon.wait_exit(20) == 0
        finally:
            daemon.close()
        await asyncio.sleep(2.0)  # two replay minutes pass while it is down
        again = DaemonProcess(m.config, tmp_path, CRASH_ENV).start()
        try:
            await again.wait_ready()
            [[before]] = query(m.db, "SELECT MAX(bar_ts) FROM decisions")
            await again.wait_for(
                lambda: query(m.db, "SELECT MAX(bar_ts) FROM decisions")[0][0] >= before + 3 * 60_000,
                60,
                "decisions after the restart",
            )
            again.signal(signal.SIGTERM)
            assert await again.wait_exit(20) == 0
        finally:
            again.close()
    reasons = dict(query(m.db, "SELECT reason, COUNT(*) FROM decisions GROUP BY reason"))
    assert set(reasons) <= {"decided", "superseded", "missed", "paused", "halted"}, reasons
    assert reasons["superseded"] >= 1 and reasons["missed"] >= 1, reasons  # the burst; the minutes it was down
    # Every ETH 1m bar from the first decided one on has exactly one row, also the backfilled ones.
    missing = query(
        m.db,
        "SELECT ts FROM bars b WHERE symbol='ETH/USDT' AND timeframe='1m' "
        "AND ts >= (SELECT MIN(bar_ts) FROM decisions) "
        "AND NOT EXISTS (SELECT 1 FROM decisions d WHERE d.symbol=b.symbol AND d.bar_ts=b.ts)",
    )
    assert missing == []
    assert query(
        m.db,
        "SELECT COUNT(*) FROM decisions d WHERE NOT EXISTS (SELECT 1 FROM bars b WHERE "
        "b.symbol=d.symbol AND b.timeframe=d.timeframe AND b.ts=d.bar_ts)",
    ) == [(0,)]

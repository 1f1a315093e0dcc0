"""kill -9 between the commit of a cycle's orders and their sending (crash points
after_order_recorded / after_signal_commit), then a restart: no order is sent twice and none
is lost silently. An intent still fresh (its bar is the newest closed bar on the exchange's
clock) is sent after the restart; an older one is rejected with its reason and an "error" alert.

`sigd run` is a real subprocess; the local exchange runs in the test process (it outlives the
daemon, as an exchange does), and its clock is frozen right after the crash, then moved on or
not, so the test decides which case the restart meets. The crashed daemon's HTTP server process
ends with it (it would hold the API port the restart binds)."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import pytest

from daemon.crashpoints import CRASH_EXIT_CODE
from daemon.localexchange import LocalExchange
from tests.daemon_harness import CRASH_ENV, DaemonProcess, assert_invariants, market, query, wait_crash

pytestmark = pytest.mark.slow
MIN = 60_000
# The fresh case needs the clock frozen within the minute after the decided bar closed: at 60x
# that is one wall second for the decision, the crash and the freeze, too little on a busy
# machine; at 10x it is six.
FRESH_SPEED = 10.0


def http_servers_of(pid: int) -> list[int]:
    """Pids of the HTTP server processes started by the daemon `pid` that still run."""
    out = []
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if b"daemon.service.httpserver" in argv and str(pid).encode() in argv and state not in ("Z", "X"):
            out.append(int(proc.name))
    return out


async def crash_at(point: str, m, tmp_path: Path) -> tuple[str, int, str]:
    """Run until the crash point, freeze the exchange clock; the order left behind."""
    # No bar closes while the daemon starts: one that closed then is backfilled and decided
    # late, after a newer one closed, and the fresh case would not be fresh.
    m.lx.pause_clock()
    first = DaemonProcess(m.config, tmp_path, {**CRASH_ENV, "SIGD_CRASH_AT": point}).start()
    try:
        await first.wait_ready()
        m.lx.resume_clock()
        assert await wait_crash(first, 90) == CRASH_EXIT_CODE
        m.lx.pause_clock()
    finally:
        first.close()
    assert first.proc is not None
    deadline = time.monotonic() + 10.0
    while http_servers_of(first.proc.pid):  # ended by the kernel with its daemon (PR_SET_PDEATHSIG)
        assert time.monotonic() < deadline, f"the crashed daemon's HTTP server still runs: {http_servers_of(first.proc.pid)}"
        await asyncio.sleep(0.05)
    [(cid, bar_ts, status)] = query(m.db, "SELECT client_order_id, bar_ts, status FROM orders")
    assert all(o.client_id != cid for o in m.lx.account.orders.values())  # nothing reached the exchange
    return cid, int(bar_ts), status


async def restart(m, tmp_path: Path) -> DaemonProcess:
    second = DaemonProcess(m.config, tmp_path, CRASH_ENV).start()
    await second.wait_ready()
    return second


async def stop(daemon: DaemonProcess) -> None:
    daemon.signal(signal.SIGTERM)
    assert await daemon.wait_exit(20) == 0


@pytest.mark.parametrize("mode, point", [("testnet", "after_order_recorded"), ("paper", "after_signal_commit")])
async def test_a_fresh_intent_is_sent_once_after_the_restart(
    mode: str, point: str, tmp_path: Path, tiny_artifacts: dict[str, Path]
) -> None:
    async with market(tmp_path, tiny_artifacts, mode, speed=FRESH_SPEED) as m:
        cid, bar_ts, _ = await crash_at(point, m, tmp_path)
        newest = (m.lx.now_ms() // MIN) * MIN - MIN
        assert bar_ts == newest, "the clock froze too late for this case (decision bar no longer the newest)"
        second = await restart(m, tmp_path)
        try:
            m.lx.resume_clock()
            await second.wait_for(
                lambda: query(m.db, "SELECT status FROM orders WHERE client_order_id=?", (cid,)) == [("filled",)],
                30,
                "the fresh intent filled",
            )
            assert query(m.db, "SELECT COUNT(*) FROM fills WHERE client_order_id=?", (cid,)) == [(1,)]
            if mode == "testnet":  # at the exchange exactly once
                assert sum(o.client_id == cid for o in m.lx.account.orders.values()) == 1
            await second.wait_for(
                lambda: query(m.db, "SELECT COUNT(*) FROM outbox WHERE status != 'sent'") == [(0,)], 30, "the outbox delivered"
            )
            await stop(second)
        finally:
            second.close()
        assert not [e for e in m.receiver.received if e.get("kind") == "stale_order"]
        assert_invariants(m.db, m.receiver.received, m.lx.account if mode == "testnet" else None, 10.0)


@pytest.mark.parametrize("mode, point", [("testnet", "after_order_recorded"), ("paper", "after_signal_commit")])
async def test_a_stale_intent_is_rejected_with_a_reason_and_an_alert(
    mode: str, point: str, tmp_path: Path, tiny_artifacts: dict[str, Path]
) -> None:
    async with market(tmp_path, tiny_artifacts, mode) as m:
        cid, bar_ts, _ = await crash_at(point, m, tmp_path)
        m.lx.advance(3 * MIN)  # the daemon was down for three bars
        second = await restart(m, tmp_path)
        try:
            [(status, error)] = query(m.db, "SELECT status, error FROM orders WHERE client_order_id=?", (cid,))
            assert status == "rejected" and error.startswith("stale intent: decided on the bar opening")
            await second.wait_for(
                lambda: [e for e in m.receiver.received if e.get("kind") == "stale_order"], 30, "the stale-order alert delivered"
            )
            [alert] = [e for e in m.receiver.received if e.get("kind") == "stale_order"]
            assert alert["type"] == "error" and alert["client_order_id"] == cid and "not sent" in alert["message"]
            m.lx.resume_clock()
            await second.wait_for(
                lambda: query(m.db, "SELECT COUNT(*) FROM outbox WHERE status != 'sent'") == [(0,)], 30, "the outbox delivered"
            )
            await stop(second)
        finally:
            second.close()
        assert query(m.db, "SELECT COUNT(*) FROM fills WHERE client_order_id=?", (cid,)) == [(0,)]
        assert all(o.client_id != cid for o in m.lx.account.orders.values())  # never sent
        assert_invariants(m.db, m.receiver.received, m.lx.account if mode == "testnet" else None, 10.0)


async def test_the_exchange_stops_right_after_its_clock_is_paused() -> None:
    """What hung this file's failures for minutes: the exchange's pump, cancelled by stop() in
    the loop turn where pause_clock() woke it, went on forever (asyncio.wait_for on Python 3.11
    returns the woken result instead of the cancel)."""
    lx = LocalExchange(speed=60.0)
    await lx.start()
    await asyncio.sleep(0.2)  # the pump waits for its next due update
    lx.pause_clock()  # wakes the pump ...
    await asyncio.wait_for(lx.stop(), 10.0)  # ... and stop() cancels it in the same turn

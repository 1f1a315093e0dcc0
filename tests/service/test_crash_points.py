"""Aimed crashes: `sigd run` as a subprocess dies hard at one named crash point
(SIGD_CRASH_AT), is started again without it on the same state, and the written invariants
hold afterwards (tests/daemon_harness.assert_invariants, README "Operations: crash recovery").

The local exchange runs in the test process, so it outlives the daemon as a real exchange
does: its order book and balances are what the restarted daemon reconciles against. Alerts go
to a real webhook receiver that checks every HMAC.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from daemon.crashpoints import CRASH_EXIT_CODE, POINTS
from daemon.localexchange import LocalExchange
from tests.daemon_harness import API_TOKEN, CRASH_ENV, DaemonProcess, assert_invariants, market, query, wait_crash, write_toml

pytestmark = pytest.mark.slow
ETH_START = 10.0  # the local exchange's default ETH balance


def _undelivered(db: Path, event_id: str, received: list[dict[str, Any]]) -> None:
    """The event is committed in the outbox, and nobody has it yet."""
    assert query(db, "SELECT status FROM outbox WHERE event_id=?", (event_id,)) == [("pending",)]
    assert event_id not in {e["id"] for e in received}


def _signal_committed_order_not_sent(db: Path, lx: LocalExchange, received: list[dict[str, Any]]) -> None:
    [(event_id,)] = query(db, "SELECT event_id FROM signals")
    _undelivered(db, event_id, received)
    [(status,)] = query(db, "SELECT status FROM orders")  # the decision's order: stored, never executed
    assert status == "open" and query(db, "SELECT COUNT(*) FROM fills") == [(0,)]


def _order_only_stored(db: Path, lx: LocalExchange, received: list[dict[str, Any]]) -> None:
    [(cid, status)] = query(db, "SELECT client_order_id, status FROM orders")
    assert status == "pending" and all(o.client_id != cid for o in lx.account.orders.values())


def _order_at_exchange_not_recorded(db: Path, lx: LocalExchange, received: list[dict[str, Any]]) -> None:
    [(cid, status)] = query(db, "SELECT client_order_id, status FROM orders")
    assert status == "pending" and query(db, "SELECT COUNT(*) FROM fills") == [(0,)]
    [placed] = [o for o in lx.account.orders.values() if o.client_id == cid]
    assert placed.status == "FILLED"  # the exchange did it; sigd never heard


def _fill_committed_undelivered(db: Path, lx: LocalExchange, received: list[dict[str, Any]]) -> None:
    [(event_id,)] = query(db, "SELECT event_id FROM fills")
    [(amount,)] = query(db, "SELECT amount FROM positions")
    assert amount != 0  # fill, position and its alert committed together
    _undelivered(db, event_id, received)


def _delivered_but_pending(db: Path, lx: LocalExchange, received: list[dict[str, Any]]) -> None:
    assert received, "the receiver got nothing before the crash"
    first = received[0]["id"]
    assert query(db, "SELECT status FROM outbox WHERE event_id=?", (first,)) == [("pending",)]


# point -> (broker mode, what the state must show right after the crash)
CASES: dict[str, tuple[str, Callable[[Path, LocalExchange, list[dict[str, Any]]], None]]] = {
    "after_signal_commit": ("paper", _signal_committed_order_not_sent),
    "after_order_recorded": ("testnet", _order_only_stored),
    "after_order_sent_before_ack": ("testnet", _order_at_exchange_not_recorded),
    "after_fill_commit": ("testnet", _fill_committed_undelivered),
    "mid_outbox_delivery": ("paper", _delivered_but_pending),
}


def test_every_trading_crash_point_has_a_restart_test() -> None:
    assert set(CASES) | {"mid_retrain_install"} == set(POINTS)


@pytest.mark.parametrize("point", sorted(CASES))
async def test_crash_then_restart_keeps_the_invariants(point: str, tmp_path: Path, tiny_artifacts: dict[str, Path]) -> None:
    mode, evidence = CASES[point]
    async with market(tmp_path, tiny_artifacts, mode) as m:
        first = DaemonProcess(m.config, tmp_path, {**CRASH_ENV, "SIGD_CRASH_AT": point}).start()
        try:
            assert await wait_crash(first, 90) == CRASH_EXIT_CODE
        finally:
            first.close()
        assert f'"point": "{point}"' in first.log_path.read_text()
        evidence(m.db, m.lx, m.receiver.received)

        second = DaemonProcess(m.config, tmp_path, CRASH_ENV).start()
        try:
            await second.wait_ready()
            [[fills_before]] = query(m.db, "SELECT COUNT(*) FROM fills")
            # It goes on trading, and what the crash left behind is delivered.
            await second.wait_for(
                lambda: query(m.db, "SELECT COUNT(*) FROM fills")[0][0] >= fills_before + 2,
                60,
                "two more fills after the restart",
            )
            await second.wait_for(
                lambda: query(m.db, "SELECT COUNT(*) FROM outbox WHERE status != 'sent'") == [(0,)], 30, "the outbox delivered"
            )
            await _stop(second)
        finally:
            second.close()
        assert m.receiver.bad_signatures == 0
        assert_invariants(m.db, m.receiver.received, m.lx.account if mode == "testnet" else None, ETH_START)
        if point == "mid_outbox_delivery":  # at-least-once: the cut delivery came again, same id
            first_id = m.receiver.received[0]["id"]
            assert sum(e["id"] == first_id for e in m.receiver.received) >= 2


async def _stop(daemon: DaemonProcess) -> None:
    daemon.signal(signal.SIGTERM)
    assert await daemon.wait_exit(20) == 0


@pytest.mark.parametrize("mode", ["paper", "testnet"])
async def test_webhook_consumers_see_order_then_fill_in_every_mode(
    mode: str, tmp_path: Path, tiny_artifacts: dict[str, Path]
) -> None:
    async with market(tmp_path, tiny_artifacts, mode) as m:
        daemon = DaemonProcess(m.config, tmp_path, CRASH_ENV).start()
        try:
            await daemon.wait_ready()
            await daemon.wait_for(lambda: sum(e["type"] == "fill" for e in m.receiver.received) >= 2, 60, "two fill events")
            await _stop(daemon)
        finally:
            daemon.close()
        received = m.receiver.received
        assert {e["type"] for e in received} == {"signal", "order", "fill"}
        opens = [e for e in received if e["type"] == "order"]
        assert opens and all(e["status"] == "open" and e["id"].endswith("-open") for e in opens)
        assert_invariants(m.db, received, m.lx.account if mode == "testnet" else None, ETH_START)


def test_an_unknown_crash_point_is_refused(tmp_path: Path) -> None:
    import subprocess
    import sys

    from tests.conftest import REPO

    cfg = write_toml(tmp_path / "config.toml", {"store": {"path": tmp_path / "s.sqlite"}})
    rc = subprocess.run(
        [sys.executable, "-m", "daemon", "run", "-c", str(cfg)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env={**CRASH_ENV, "PATH": "/usr/bin:/bin", "SIGD_CRASH_AT": "after_lunch"},
    )
    assert rc.returncode == 2 and "SIGD_CRASH_AT" in rc.stderr and "after_signal_commit" in rc.stderr


@pytest.mark.parametrize("point", ["mid_retrain_install"])
async def test_a_crash_mid_install_keeps_serving_the_registered_model(
    point: str, tmp_path: Path, tiny_artifacts: dict[str, Path]
) -> None:
    async with market(tmp_path, tiny_artifacts, start="2025-08-14T00:00:00Z") as m:
        # Unseen stored history after the tiny models' training end, and a retrain that always promotes.
        m.sections["retrain"] = {
            "enabled": True,
            "cron": "0 0 1 1 *",
            "preset": "tiny",
            "epochs": 1,
            "max_batches": 2,
            "holdout_hours": 2.0,
            "min_improvement": -1e9,
            "artifacts_dir": tmp_path / "models",
        }
        config = write_toml(m.config, m.sections)
        m.lx.pause_clock()
        first = DaemonProcess(config, tmp_path, {**CRASH_ENV, "SIGD_CRASH_AT": point}).start()
        try:
            await first.wait_ready()
            async with aiohttp.ClientSession() as http:
                async with http.post(f"{m.api}/retrain", headers={"Authorization": f"Bearer {API_TOKEN}"}) as r:
                    assert (await r.json())["outcome"] == {"started": True}
            assert await wait_crash(first, 240) == CRASH_EXIT_CODE
        finally:
            first.close()
        # The first model promoted died mid-install: its copy sits beside its place, never renamed in.
        installed = [p for p in (tmp_path / "models").glob("*/*") if p.parent.name != ".staging"]
        assert len(installed) == 1 and installed[0].name.startswith(".") and installed[0].name.endswith(".tmp")
        assert query(m.db, "SELECT COUNT(*) FROM models WHERE status='current'") == [(0,)]

        second = DaemonProcess(config, tmp_path, CRASH_ENV).start()
        try:
            await second.wait_ready()
            # The restart removed the half-installed copy and the crashed run's staging folder.
            assert not installed[0].exists() and not (tmp_path / "models" / ".staging").exists()
            async with aiohttp.ClientSession() as http:
                async with http.get(f"{m.api}/status") as r:
                    served = {x["name"]: x["path"] for x in (await r.json())["models"]}
            assert served == {name: str(path) for name, path in m.sections["models"]["paths"].items()}
            await _stop(second)
        finally:
            second.close()
        assert_invariants(m.db, m.receiver.received)  # the failed model's "error" alert was not lost either

"""kill -9 in the middle of a decision cycle: nothing of it is half-written (no signal without its
outbox rows, no order without its signal), and the restarted engine decides those bars once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from daemon.store import Store

REPO = Path(__file__).resolve().parents[2]


def run_child(state: Path, *extra: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, "-m", "tests.trading.kill_child", str(state), *extra],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def consistent(store: Store) -> None:
    """Every signal has its outbox row, every order its signal and its outbox row."""
    db = store.db
    assert db.execute("SELECT COUNT(*) FROM signals WHERE event_id NOT IN (SELECT event_id FROM outbox)").fetchone()[0] == 0
    orphans = db.execute(
        "SELECT COUNT(*) FROM orders o WHERE NOT EXISTS (SELECT 1 FROM signals s WHERE s.symbol=o.symbol AND s.bar_ts=o.bar_ts)"
    ).fetchone()[0]
    assert orphans == 0
    assert (
        db.execute(
            "SELECT COUNT(*) FROM orders WHERE 'order-' || client_order_id || '-open' NOT IN (SELECT event_id FROM outbox)"
        ).fetchone()[0]
        == 0
    )
    undecided = db.execute(
        "SELECT COUNT(*) FROM predictions p WHERE NOT EXISTS (SELECT 1 FROM decisions d "
        "WHERE d.symbol=p.symbol AND d.bar_ts=p.bar_ts)"
    ).fetchone()[0]
    assert undecided == 0


def test_kill_9_mid_cycle_leaves_no_half_decision_and_restart_decides_once(tmp_path: Path) -> None:
    child = run_child(tmp_path, "--hold-after", "2")  # frozen after ETH's and SOL's signals, before XRP's
    deadline = time.monotonic() + 60
    while not (tmp_path / "held").exists():
        assert child.poll() is None, child.stderr.read().decode() if child.stderr else ""
        assert time.monotonic() < deadline, "the child never reached the hold point"
        time.sleep(0.05)
    assert (tmp_path / "held").read_text() == "True"  # it stopped inside the open transaction
    child.send_signal(signal.SIGKILL)
    child.wait(10)
    store = Store(tmp_path / "sigd.sqlite")
    assert store.count("signals") == 0 and store.count("orders") == 0 and store.count("decisions") == 0
    consistent(store)
    store.close()

    (tmp_path / "held").unlink()
    for _ in range(2):  # restart: the bars are decided now; a second restart decides nothing again
        child = run_child(tmp_path)
        assert child.wait(60) == 0, child.stderr.read().decode() if child.stderr else ""
    store = Store(tmp_path / "sigd.sqlite")
    consistent(store)
    rows = store.db.execute("SELECT symbol, COUNT(*) FROM signals GROUP BY symbol").fetchall()
    assert dict(rows) == {"ETH/USDT": 1, "SOL/USDT": 1, "XRP/USDT": 1}  # one entry each, never twice
    assert store.count("orders") == 3 and store.count("fills") == 3
    assert store.count("decisions") == 9  # three instants × three symbols, once
    store.close()

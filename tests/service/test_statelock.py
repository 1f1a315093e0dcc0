"""One daemon per state directory: a second `sigd run` exits 2 naming the first, before it
opens the store; the lock dies with its holder, however it dies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from daemon.service.statelock import StateLock, StateLocked
from tests.conftest import REPO

HOLD = (
    "import sys, time; from pathlib import Path; from daemon.service.statelock import StateLock; "
    "StateLock(Path(sys.argv[1])).acquire(); print('locked', flush=True); time.sleep(60)"
)


def _holder(state: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(state)], cwd=REPO, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    return proc


def test_second_run_on_the_same_state_exits_2_naming_the_holder(write_config, tmp_path: Path) -> None:
    state = tmp_path / "state"
    cfg = write_config(f'[store]\npath = "{state / "sigd.sqlite"}"\n')
    holder = _holder(state)
    try:
        second = subprocess.run(
            [sys.executable, "-m", "daemon", "run", "-c", str(cfg)], cwd=REPO, capture_output=True, text=True, timeout=60
        )
        assert second.returncode == 2, second.stderr
        assert f"pid {holder.pid}" in second.stderr and str(state) in second.stderr
        assert "Traceback" not in second.stderr and second.stderr.count("\n") == 1
        # Refused before the store (and so the engine and the broker) existed.
        assert not (state / "sigd.sqlite").exists()
    finally:
        holder.kill()
        holder.wait(10)


def test_lock_is_released_by_kill_9(tmp_path: Path) -> None:
    holder = _holder(tmp_path)
    with pytest.raises(StateLocked, match=f"pid {holder.pid}"):
        StateLock(tmp_path).acquire()
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait(10)
    with StateLock(tmp_path) as lock:
        assert (tmp_path / "sigd.lock").read_text().strip() == str(os.getpid())
        assert lock.path == tmp_path / "sigd.lock"

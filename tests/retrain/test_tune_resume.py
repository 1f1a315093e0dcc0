"""`sigd tune` resumes after its driver dies: run as a user runs it (a subprocess with its own
local Ray), kill -9 the driver once Tune's experiment state holds a finished trial, run the same
command again → the finished trial is kept as it was, the rest run, the leaderboard is written."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.backtest_builders import TEST_CONFIG, tape_dir
from tests.conftest import REPO

TRIALS = 2
FAMILY = "cnn_lstm_attn"


def _command(cfg: Path, data: Path, out: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "daemon",
        "tune",
        "-c",
        str(cfg),
        "--data",
        str(data),
        "--folds",
        "1:1",
        "--families",
        FAMILY,
        "--trials",
        str(TRIALS),
        "--preset",
        "tiny",
        "--epochs",
        "1",
        "--max-batches",
        "2",
        "--out",
        str(out),
        "--name",
        "t",
        "--num-cpus",
        "1",
        "--seed",
        "3",
    ]


def _env() -> dict[str, str]:
    # A fresh local Ray of its own (never a cluster found on the machine); Tune saves its
    # experiment state every second, so "a trial finished" is on disk soon after it happens.
    return {
        **os.environ,
        "RAY_ADDRESS": "local",
        "RAY_AUTH_MODE": "disabled",
        "RAY_USAGE_STATS_ENABLED": "0",
        "TUNE_GLOBAL_CHECKPOINT_S": "1",
        "PYTHONPATH": str(REPO),
    }


def _trial_states(study: Path) -> dict[str, str]:
    """trial id -> status, from the newest experiment state Tune wrote ({} while there is none)."""
    states = sorted(study.glob("experiment_state-*.json"))
    if not states:
        return {}
    try:
        doc = json.loads(states[-1].read_text())
    except ValueError:  # caught mid-write
        return {}
    trials = [json.loads(t) for t, _ in doc["trial_data"]]
    return {t["trial_id"]: t["status"] for t in trials}


def _session_pids(sid: int) -> list[int]:
    """Processes of the session the test started (the driver's Ray: GCS, raylet, agents, workers)."""
    out = []
    for pid in (p for p in os.listdir("/proc") if p.isdigit()):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[3]) == sid:  # after "(comm)": state ppid pgrp session
            out.append(int(pid))
    return out


def _end_session(sid: int) -> None:
    for pid in _session_pids(sid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_a_study_resumes_after_its_driver_is_killed(tmp_path: Path) -> None:
    pytest.importorskip("ray")
    data = tape_dir(tmp_path / "data", minutes=3 * 1440 + 200, days_before=10, hours_before=0)
    cfg = tmp_path / "sigd.toml"
    cfg.write_text(TEST_CONFIG + "\n[research]\nsearch = { horizon = [3, 8], label_threshold = [0.001, 0.003] }\n")
    out = tmp_path / "tune"
    study = out / f"t-{FAMILY}"
    cmd = _command(cfg, data, out)

    first = subprocess.Popen(
        cmd, cwd=REPO, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 180
        while "TERMINATED" not in _trial_states(study).values():
            assert first.poll() is None, f"sigd tune exited ({first.returncode}) before a trial finished"
            assert time.monotonic() < deadline, "no trial finished within 180 s"
            time.sleep(0.2)
        os.kill(first.pid, signal.SIGKILL)  # the driver dies; its Ray goes with it
        first.wait(10)
    finally:
        first.kill()
        _end_session(first.pid)
    before = _trial_states(study)
    finished = [tid for tid, status in before.items() if status == "TERMINATED"]
    assert len(finished) < TRIALS and not (out / "t" / "leaderboard.json").exists(), before  # killed mid-study
    [done_dir] = [d for d in study.iterdir() if d.is_dir() and f"_{finished[0]}_" in d.name]
    kept = (done_dir / "result.json").read_bytes(), (done_dir / "result.json").stat().st_mtime_ns

    second = subprocess.Popen(
        cmd, cwd=REPO, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    try:
        log, _ = second.communicate(timeout=240)
    finally:
        second.kill()
        _end_session(second.pid)
    assert second.returncode == 0, log[-3000:]
    assert '"event": "tune_resumed"' in log
    after = _trial_states(study)
    assert len(after) == TRIALS and set(after.values()) == {"TERMINATED"}, after
    assert set(finished) <= set(after)  # the same trial, not a new one in its place
    # Not re-run: its results are byte for byte what the killed driver left.
    assert ((done_dir / "result.json").read_bytes(), (done_dir / "result.json").stat().st_mtime_ns) == kept
    board = json.loads((out / "t" / "leaderboard.json").read_text())
    assert len(board) == TRIALS and all(row["folds"] == 1 and row["family"] == FAMILY for row in board)
    params = json.loads((done_dir / "params.json").read_text())
    assert any(row["horizon"] == params["horizon"] and row["label_threshold"] == params["label_threshold"] for row in board)

"""The CPCV x configurations grid on a real two-node Ray cluster (two `ray start` on loopback,
each with its own temp dir) gives the local runner's results split by split. The data folder is
deleted before the grid is submitted: the workers get the arrays from the object store only."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from daemon.research import calibration
from daemon.research.backtest import parse_iso

ray = pytest.importorskip("ray")
REPO = Path(__file__).resolve().parents[2]
HOURLY = Path("/work/shared/data/hourly")
RAY = str(Path(sys.executable).with_name("ray"))
pytestmark = pytest.mark.skipif(not HOURLY.is_dir() or not Path(RAY).exists(), reason="no hourly data or no ray CLI")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(args: list[str], temp: str, env: dict[str, str]) -> int:
    """`ray start ...` in its own session; the process group id of what it leaves running."""
    proc = subprocess.Popen(
        [
            RAY,
            "start",
            *args,
            "--num-cpus",
            "1",
            "--temp-dir",
            temp,
            "--object-store-memory",
            str(80 * 2**20),
            "--disable-usage-stats",
        ],
        env=env,
        cwd=temp,
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    out, _ = proc.communicate(timeout=180)
    if proc.returncode != 0:
        pytest.skip(f"ray start failed here: {out.decode(errors='replace')[-300:]}")
    return proc.pid


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    port = _free_port()
    # loopback only, a throwaway cluster: no token authentication (the driver must agree)
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    head_dir, worker_dir = tempfile.mkdtemp(prefix="rh-", dir="/tmp"), tempfile.mkdtemp(prefix="rw-", dir="/tmp")
    groups = []
    try:
        groups.append(_start(["--head", "--port", str(port), "--include-dashboard=false"], head_dir, env))
        groups.append(_start(["--address", f"127.0.0.1:{port}"], worker_dir, env))
        yield f"127.0.0.1:{port}"
    finally:
        if ray.is_initialized():
            ray.shutdown()
        for pgid in groups:  # only the processes these two `ray start` left behind
            try:
                os.killpg(pgid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.5)
        shutil.rmtree(head_dir, ignore_errors=True)
        shutil.rmtree(worker_dir, ignore_errors=True)


def traced(trial: calibration.Trial, data: dict[str, np.ndarray]) -> tuple[calibration.TrialResult, str]:
    """run_trial, and which node ran it."""
    return calibration.run_trial(trial, data), ray.get_runtime_context().get_node_id()


def test_two_nodes_give_the_local_results_split_by_split(cluster: str, tmp_path: Path) -> None:
    from daemon.retrain.runners import LocalRunner, RayRunner

    data_dir = tmp_path / "data"  # the driver's private copy of the data, gone before any task runs
    data_dir.mkdir()
    for name in ("BTC_USDT-1h.csv.gz", "ETH_USDT-1h.csv.gz", "XRP_USDT-1h.csv.gz"):
        shutil.copy(HOURLY / name, data_dir / name)
    ts, close, _ = calibration._load_closes_from_tapes(
        data_dir, [], parse_iso("2024-01-01", "--from"), parse_iso("2024-07-01", "--to")
    )
    shutil.rmtree(data_dir)
    spec = calibration.CalibrationSpec(sharpes=(4.0,), seeds=2, n_groups=4, n_test_groups=2)
    trials = [calibration.Trial(seed, 0, 0.05, seed == 1, spec) for seed in range(4)]
    data = {"ts": ts, "close": close}
    local = LocalRunner().map(calibration.run_trial, trials, shared=data)
    runner = RayRunner(address=cluster)
    assert len(ray.nodes()) == 2 and ray.cluster_resources().get("CPU") == 2
    remote: list[Any] = runner.map(traced, trials, shared=data)
    assert len({node for _, node in remote}) == 2  # both nodes ran trials
    for a, (b, _) in zip(local, remote, strict=True):
        assert len(a.split_predictions) == len(b.split_predictions) == 6  # C(4, 2) splits
        for pa, pb in zip(a.split_predictions, b.split_predictions, strict=True):
            np.testing.assert_allclose(pa, pb, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(a.path_sharpes, b.path_sharpes, rtol=1e-9)
        assert (a.passed, a.oracle_sharpe) == (b.passed, pytest.approx(b.oracle_sharpe, rel=1e-12))

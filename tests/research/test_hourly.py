"""`sigd research`: a tiny grid on the bundled 2021 tape, end to end (real LightGBM, real MLflow
registry in a temporary SQLite file, real portfolio simulation), and its bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from daemon.research.cpcv import cpcv_paths, cpcv_splits
from daemon.research.hourly import GridSpec, path_scores, run_grid
from tests.conftest import REPO

TAPE_2021 = REPO / "daemon" / "localexchange" / "tape_2021"


def test_path_scores_cover_every_row_once() -> None:
    ts = np.arange(60, dtype=np.int64)
    splits = cpcv_splits(ts, 4, 2, ts + 1, 0)
    paths = cpcv_paths(splits, 4)
    oos = [np.column_stack([idx * 10 + s, -idx]).astype(float) for s, idx in enumerate(sp.test_idx for sp in splits)]
    out = path_scores(splits, paths, oos, (60, 2))
    assert len(out) == 3
    for p in out:
        assert np.isfinite(p).all() and np.array_equal(p[:, 1], -np.arange(60))


def test_tiny_grid_end_to_end_and_n_counts_across_runs(tmp_path: Path) -> None:
    grid = GridSpec(
        families=("lgbm",),
        targets=("forward_return", "meta"),
        timeframes=("1h",),
        deep_timeframes=(),
        n_groups=4,
        n_test_groups=2,
        max_train=5000,
        lgbm_trees=10,
        top_k=2,
    )
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    first = run_grid(TAPE_2021, grid, None, None, None, uri, cache_dir=tmp_path / "c")
    r = first["timeframes"]["1h"]
    assert r["n_trials"] == 2 and len(r["configs"]) == 2
    for c in r["configs"]:
        assert len(c["sharpe_paths"]) == 3 and all(np.isfinite(c["sharpe_paths"]))
        assert c["gate"]["n_trials"] >= 1 and 0 <= c["psr"] <= 1
    assert set(r["baselines"]) == {"flat", "buy_and_hold", "vol_target_buy_and_hold", "ts_momentum", "xs_momentum", "reversal_1d"}
    assert r["baselines"]["flat"]["sharpe"] == 0.0
    assert 0.0 <= r["pbo"]["pbo"] <= 1.0
    # a second run with one new configuration: N counts every configuration ever tried on the data set
    grid2 = GridSpec(
        families=("lgbm",),
        targets=("forward_return", "triple_barrier"),
        timeframes=("1h",),
        deep_timeframes=(),
        n_groups=4,
        n_test_groups=2,
        max_train=5000,
        lgbm_trees=10,
        top_k=2,
    )
    second = run_grid(TAPE_2021, grid2, None, None, None, uri, cache_dir=tmp_path / "c")
    assert second["timeframes"]["1h"]["n_trials"] == 3
    assert second["timeframes"]["1h"]["dataset_id"] == r["dataset_id"]


@pytest.mark.parametrize(
    "flags,key",
    [
        (["--timeframes", "1m"], "--timeframes"),
        (["--cost-bps", "-1"], "--cost-bps"),
        (["--top-k", "99"], "--top-k"),
        (["--turnover-penalty", "-1"], "--turnover-penalty"),
        (["--families", "nope"], "--families"),
        (["--data", "/nonexistent"], "--data"),
        (["--from", "2030-01-01"], "--from/--to"),
    ],
)
def test_bad_input_is_one_line_exit_2(tmp_path: Path, flags: list[str], key: str) -> None:
    cmd = [
        sys.executable,
        "-m",
        "daemon",
        "research",
        "--data",
        str(TAPE_2021),
        "--timeframes",
        "1d",
        "--tracking-uri",
        f"sqlite:///{tmp_path / 'm.db'}",
        "--out",
        str(tmp_path / "out"),
        *flags,
    ]
    p = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
        check=False,
        env={"PYTHONPATH": str(REPO), "SIGD_CACHE_DIR": str(tmp_path / "c"), "PATH": "/usr/bin:/bin"},
    )
    assert p.returncode == 2, p.stderr
    lines = [x for x in p.stderr.strip().splitlines() if x.strip()]
    assert len(lines) == 1 and key in lines[0], p.stderr
    assert "Traceback" not in p.stderr and not (tmp_path / "out").exists()


def test_leaderboard_files(tmp_path: Path) -> None:
    cmd = [
        sys.executable,
        "-m",
        "daemon",
        "research",
        "--data",
        str(TAPE_2021),
        "--timeframes",
        "1h",
        "--families",
        "lgbm",
        "--targets",
        "forward_return",
        "--groups",
        "3",
        "--test-groups",
        "1",
        "--max-train",
        "2000",
        "--trees",
        "5",
        "--top-k",
        "2",
        "--tracking-uri",
        f"sqlite:///{tmp_path / 'm.db'}",
        "--out",
        str(tmp_path / "out"),
    ]
    p = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
        check=False,
        env={"PYTHONPATH": str(REPO), "SIGD_CACHE_DIR": str(tmp_path / "c"), "PATH": "/usr/bin:/bin"},
    )
    assert p.returncode == 0, p.stderr
    md = (tmp_path / "out" / "leaderboard.md").read_text()
    assert "lgbm/forward_return" in md and "baseline: buy_and_hold" in md and "N = 1" in md
    doc = json.loads((tmp_path / "out" / "leaderboard.json").read_text())
    assert doc["timeframes"]["1h"]["configs"][0]["config"] == "lgbm/forward_return"
    assert "fits" in p.stderr  # the progress line

"""`sigd compare` on the runners of walk-forward/tune: Ray gives the local runner's leaderboard."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from daemon.research import leaderboard
from daemon.retrain.runners import LocalRunner, RayRunner
from daemon.service.cli import build_parser, main
from tests.conftest import REPO

TAPE = REPO / "daemon" / "localexchange" / "tape"


def _args(out: Path) -> list[str]:
    return ["compare", "--families", "stacked_lstm", "--data", str(TAPE), "--out", str(out), "--preset", "tiny",
            "--folds", "2", "--train-days", "2", "--test-days", "0.25", "--setups", "1m:15", "--epochs", "1",
            "--max-batches", "2"]


def _explode(item: int) -> int:
    if item == 2:
        raise ValueError(f"item {item} is bad")
    return item * 10


def test_map_keeps_order_and_raises_the_items_error(ray_local: None) -> None:
    for runner in (LocalRunner(), RayRunner()):
        assert runner.map(_explode, [3, 1, 0]) == [30, 10, 0]
        with pytest.raises(ValueError, match="item 2 is bad"):
            runner.map(_explode, [1, 2, 3])


def test_compare_on_ray_equals_the_local_runner_row_by_row(ray_local: None, tmp_path: Path) -> None:
    parser = build_parser()
    boards = {}
    for name, runner in (("local", LocalRunner()), ("ray", RayRunner())):
        boards[name] = leaderboard.compare(parser.parse_args(_args(tmp_path / name)), runner)
    local, ray = boards["local"]["rows"], boards["ray"]["rows"]
    assert [r["name"] for r in local] == [r["name"] for r in ray] and len(local) == 6
    for a, b in zip(local, ray):
        for key, value in a.items():
            if isinstance(value, float):
                assert b[key] == pytest.approx(value, rel=1e-6, abs=1e-9, nan_ok=True), (a["name"], key)
            else:
                assert b[key] == value, (a["name"], key)


def test_compare_command_reports_a_bad_research_config(tmp_path: Path, write_config,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    bad = write_config('[research]\nrunner = "cluster"\n')
    assert main([*_args(tmp_path / "x"), "-c", str(bad)]) == 2
    assert "research.runner" in capsys.readouterr().err

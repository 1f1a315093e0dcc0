"""`sigd compare` on the runners of walk-forward/tune: Ray gives the local runner's leaderboard."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from daemon.research import leaderboard
from daemon.retrain.runners import LocalRunner, RayRunner
from daemon.service.cli import build_parser, main
from tests.conftest import REPO

TAPE = REPO / "daemon" / "localexchange" / "tape"


def _args(out: Path) -> list[str]:
    return [
        "compare",
        "--families",
        "stacked_lstm",
        "--data",
        str(TAPE),
        "--out",
        str(out),
        "--preset",
        "tiny",
        "--folds",
        "2",
        "--train-days",
        "2",
        "--test-days",
        "0.25",
        "--setups",
        "1m:15",
        "--epochs",
        "1",
        "--max-batches",
        "2",
    ]


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
        args = parser.parse_args(_args(tmp_path / name))
        args.gate = {"min_trades": 1, "min_psr": 0.0, "min_dsr": 0.0}  # [models] gate_* as compare_command sets it
        boards[name] = leaderboard.compare(args, runner)
    local, ray = boards["local"]["rows"], boards["ray"]["rows"]
    # the gate's thresholds are the ones given: only a rule without a trade fails
    assert {r["name"] for r in local if not r["passed"]} == {r["name"] for r in local if r["trades"] < 1}
    flat = next(r for r in local if r["name"] == "always_flat")
    assert flat["why"] == "0 trades < 1" and any(r["passed"] for r in local)
    assert [r["name"] for r in local] == [r["name"] for r in ray] and len(local) == 6
    for a, b in zip(local, ray):
        for key, value in a.items():
            if isinstance(value, float):
                assert b[key] == pytest.approx(value, rel=1e-6, abs=1e-9, nan_ok=True), (a["name"], key)
            else:
                assert b[key] == value, (a["name"], key)


def test_compare_command_reports_a_bad_research_config(tmp_path: Path, write_config, capsys: pytest.CaptureFixture[str]) -> None:
    bad = write_config('[research]\nrunner = "cluster"\n')
    assert main([*_args(tmp_path / "x"), "-c", str(bad)]) == 2
    assert "research.runner" in capsys.readouterr().err


def test_gate_thresholds_are_config_keys(
    tmp_path: Path, write_config, tiny_artifacts: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    from daemon import config
    from models.artifacts import read_meta

    for text, key in (
        ("gate_min_trades = 0", "models.gate_min_trades"),
        ("gate_min_psr = 1.5", "models.gate_min_psr"),
        ("gate_min_dsr = -0.1", "models.gate_min_dsr"),
        ('gate_min_psr = "high"', "models.gate_min_psr"),
    ):
        with pytest.raises(config.ConfigError, match=key):
            config.load(write_config(f"[models]\n{text}\n"))
    assert main([*_args(tmp_path / "x"), "-c", str(write_config("[models]\ngate_min_dsr = 2\n"))]) == 2
    assert "models.gate_min_dsr" in capsys.readouterr().err
    # --validate gates with the configured thresholds and records them in the block
    art = Path(shutil.copytree(tiny_artifacts["cnn_lstm_attn"], tmp_path / "art"))
    late = read_meta(art)["data"]["last_close_ts"] + leaderboard.DAY_MS
    iso = lambda ms: np.datetime_as_string(np.datetime64(ms, "ms"), unit="m") + "Z"  # noqa: E731
    lax = write_config("[models]\ngate_min_trades = 1\ngate_min_psr = 0.0\ngate_min_dsr = 0.0\n", "lax.toml")
    strict = write_config("[models]\ngate_min_trades = 100000\n", "strict.toml")
    verdicts = {}
    for name, cfg in (("lax", lax), ("strict", strict)):
        rc = main(
            [
                "compare",
                "--validate",
                str(art),
                "--data",
                str(TAPE),
                "--out",
                str(tmp_path / name),
                "-c",
                str(cfg),
                "--from",
                iso(late),
                "--to",
                iso(late + leaderboard.DAY_MS // 2),
            ]
        )
        assert rc == 0, capsys.readouterr().err
        verdicts[name] = json.loads((tmp_path / name / "validation.json").read_text())[0]
    assert verdicts["lax"]["gate"] == {"min_trades": 1, "min_psr": 0.0, "min_dsr": 0.0}
    assert verdicts["strict"]["gate"] == {"min_trades": 100000, "min_psr": 0.95, "min_dsr": 0.95}
    assert verdicts["strict"]["passed"] is False and "< 100000" in verdicts["strict"]["why"]
    if verdicts["lax"]["trades"] >= 1:  # any PSR/DSR passes a threshold of 0
        assert verdicts["lax"]["passed"] is True
    else:
        assert verdicts["lax"]["why"].startswith("0 trades < 1")


def test_fold_results_on_ray_are_bit_identical_to_the_local_runner(ray_local: None, tmp_path: Path) -> None:
    # The same fold job on a Ray worker (OMP_NUM_THREADS=1) and in this process (torch's default
    # threads) used to give other weights: another version and log-loss ~1e-9 apart. Each job now
    # pins its torch threads, so on one machine every number is exactly the same.
    import torch

    if torch.get_num_threads() < 2:
        pytest.skip("one CPU thread here: as a Ray worker, nothing to tell apart")
    parser = build_parser()
    results = {}
    for name, runner in (("local", LocalRunner()), ("ray", RayRunner())):
        # a served family at the small preset: tensors large enough for torch to split an
        # operation across threads (with 1 vs 2 threads its weights differ after a few batches)
        args = parser.parse_args(
            [
                "compare",
                "--families",
                "cnn_lstm_attn",
                "--data",
                str(TAPE),
                "--out",
                str(tmp_path / name),
                "--folds",
                "1",
                "--train-days",
                "2",
                "--test-days",
                "0.25",
                "--setups",
                "1m:15",
                "--epochs",
                "1",
                "--max-batches",
                "20",
            ]
        )
        args.fee = 0.001
        jobs = leaderboard.plan_jobs(args)
        results[name] = leaderboard.run_jobs(jobs, runner)
    for a, b in zip(results["local"], results["ray"], strict=True):
        assert a.version == b.version and a.threshold == b.threshold and a.inner_sharpe == b.inner_sharpe
        for part in ("inner", "test"):
            for key in ("close_ts", "probs", "y", "step_ret"):
                assert np.array_equal(getattr(getattr(a, part), key), getattr(getattr(b, part), key)), (part, key)

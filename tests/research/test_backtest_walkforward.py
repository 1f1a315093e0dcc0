"""Walk-forward folds: planning, and no fold ever trains on its test window."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from daemon.research import replay, walkforward
from daemon.research.walkforward import DAY_MS, Fold
from tests.backtest_builders import T0, tape_dir

ETH_1M = ("ETH/USDT", "1m")
STREAMS = [("ETH/USDT", "1m"), ("ETH/USDT", "1h"), ("ETH/USDT", "1d"), ("BTC/USDT", "1m")]


def test_spec_parsing() -> None:
    assert walkforward.parse_spec("30:7") == (30, 7)
    for bad in ("30", "a:b", "0:7", "30:7:1", "-1:2"):
        with pytest.raises(ValueError, match="walk-forward"):
            walkforward.parse_spec(bad)


def test_folds_tile_the_period_and_test_after_train() -> None:
    folds = walkforward.plan_folds(T0, T0 + 20 * DAY_MS + 5 * 3_600_000, 10, 3)
    assert [f.index for f in folds] == [0, 1, 2, 3]
    for f in folds:
        assert f.train_end == f.test_start and f.train_end - f.train_start == 10 * DAY_MS
    assert [f.test_start for f in folds] == [T0 + d * DAY_MS for d in (10, 13, 16, 19)]
    assert folds[-1].test_end == T0 + 20 * DAY_MS + 5 * 3_600_000  # a shorter last fold (>= 1 day) is kept
    with pytest.raises(ValueError, match="needs at least 11 days"):
        walkforward.plan_folds(T0, T0 + 5 * DAY_MS, 10, 3)


def test_training_tape_holds_nothing_of_the_test_window(tmp_path: Path) -> None:
    tape = replay.load_streams(tape_dir(tmp_path / "data", minutes=3 * 1440, days_before=3, hours_before=0), STREAMS, ETH_1M)
    fold = Fold(0, T0 + 3_600_000, T0 + DAY_MS, T0 + DAY_MS, T0 + 2 * DAY_MS)
    out = walkforward.write_training_tape(tape, ETH_1M, fold, tmp_path / "train", context_bars=10)
    for (symbol, tf), _ in tape.streams.items():
        rows = replay.load_tape(replay.tape_path(out, symbol, tf), tf)
        close = rows[:, 0] + {"1m": 60_000, "1h": 3_600_000, "1d": DAY_MS}[tf]
        assert close.max() <= fold.train_end, (symbol, tf)  # nothing that closes inside the test window
    trigger = replay.load_tape(replay.tape_path(out, *ETH_1M), "1m")
    assert trigger[0, 0] == fold.train_start and trigger[-1, 0] == fold.train_end - 60_000
    hourly = replay.load_tape(replay.tape_path(out, "ETH/USDT", "1h"), "1h")
    assert np.sum(hourly[:, 0] < fold.train_start) == 10  # context before the window


def _wf_world(root: Path) -> tuple[Path, dict[str, Path]]:
    from tests.backtest_builders import set_threshold, train_tiny

    data = tape_dir(root / "data", minutes=3 * 1440 + 200, days_before=10, hours_before=0)
    served = train_tiny(data, root / "served", names=("cnn_lstm_attn",))
    set_threshold(served / "cnn_lstm_attn", 0.34)
    return data, {"cnn_lstm_attn": served / "cnn_lstm_attn"}


def test_walk_forward_trains_each_fold_before_its_test_window(tmp_path: Path, write_config) -> None:
    import json

    from daemon import config
    from daemon.research import backtest
    from models.artifacts import read_meta
    from tests.backtest_builders import TEST_CONFIG, TINY_TARGET

    cfg = config.load(write_config(TEST_CONFIG))
    data, dirs = _wf_world(tmp_path)
    tape = replay.load_streams(data, backtest.live_order(cfg), ETH_1M)
    plan = backtest.make_plan(cfg, tape, None, None)
    kw = {"preset": "tiny", "epochs": 1, "max_batches": 2, "symbols": ["ETH/USDT"]}
    result = walkforward.run_walk_forward(plan, data, "1:1", dirs, train_kwargs=kw, work=tmp_path / "wf")
    folds = walkforward.plan_folds(plan.start_ms, plan.end_ms, 1, 1)
    assert [f["fold"] for f in result.folds] == [0, 1]
    assert result.bars[0, 0] == folds[0].test_start  # only out-of-sample bars are traded
    versions = set()
    for fold in folds:
        meta = read_meta(tmp_path / "wf" / f"fold{fold.index}" / "cnn_lstm_attn")
        assert meta["data"]["last_close_ts"] <= fold.test_start  # its training data ended before its test
        assert meta["target"] == TINY_TARGET | {"mode": "classification"}
        versions.add(meta["version"])
    assert len(versions) == 2 and result.models[0].version == ",".join(sorted(versions))
    json.dumps(result.folds)  # JSON-ready for summary.json

    # The same fold trained on a tape whose test window is scrambled gives the same model.
    rows = tape.streams[ETH_1M].copy()
    inside = (rows[:, 0] >= folds[0].test_start) & (rows[:, 0] < folds[0].test_end)
    rows[inside, 1:5] *= 1.5
    scrambled = replay.Tape({**tape.streams, ETH_1M: rows}, [], {})
    again = walkforward.train_fold(folds[0], scrambled, ETH_1M, dirs, tmp_path / "again", kw)
    assert again["cnn_lstm_attn"].version == read_meta(tmp_path / "wf" / "fold0" / "cnn_lstm_attn")["version"]


def test_sigd_walk_forward_runs_the_folds_as_jobs_and_prints_each_fold(
    tmp_path: Path, write_config, capsys: pytest.CaptureFixture[str]
) -> None:
    from daemon.service.cli import main
    from tests.backtest_builders import TEST_CONFIG

    data, dirs = _wf_world(tmp_path)
    cfg = write_config(TEST_CONFIG + '\n[retrain]\npreset = "tiny"\nepochs = 1\nmax_batches = 2\n')
    rc = main(
        [
            "walk-forward",
            "-c",
            str(cfg),
            "--data",
            str(data),
            "--folds",
            "1:1",
            "--runner",
            "local",
            "--model-dir",
            str(dirs["cnn_lstm_attn"]),
            "--report",
            str(tmp_path / "rep"),
        ]
    )
    out = capsys.readouterr()
    assert rc == 0, out.err
    folds = [line for line in out.out.splitlines() if line.startswith("fold ")]
    assert [line.split()[1] for line in folds] == ["0", "1"] and all("cnn_lstm_attn" in line for line in folds)
    assert (tmp_path / "rep" / "report.md").is_file()
    # a spec it cannot plan is one line on stderr and exit 1, not a traceback
    assert (
        main(
            [
                "walk-forward",
                "-c",
                str(cfg),
                "--data",
                str(data),
                "--folds",
                "9:1",
                "--runner",
                "local",
                "--model-dir",
                str(dirs["cnn_lstm_attn"]),
            ]
        )
        == 1
    )
    assert "needs at least 10 days" in capsys.readouterr().err

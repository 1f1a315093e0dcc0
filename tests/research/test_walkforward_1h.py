"""Walk-forward and compare at a 1h/4h trigger straight from 1h files (a slice of the shared
hourly data set: one year of ETH and BTC 1h bars, no 1m file): every fold trains a tiny model
sampled at the trigger and trades its out-of-sample window at the trigger's closes."""

from __future__ import annotations

import argparse
import gzip
from pathlib import Path

import numpy as np
import pytest

from daemon import config
from daemon.research import backtest, replay, walkforward
from daemon.research.leaderboard import compare
from daemon.research.selection import parse_setups
from models.artifacts import read_meta
from models.data import load_series, tape_name
from models.targets import TargetSpec
from pipeline.spec import TrainSpec
from pipeline.train import train
from tests.conftest import SHARED_DATA

HOURLY = SHARED_DATA / "hourly"
pytestmark = pytest.mark.skipif(not (HOURLY / "README.md").exists(), reason="the shared hourly data set is not here")
START, END = 1_640_995_200_000, 1_672_531_200_000  # 2022-01-01 .. 2023-01-01 UTC
HOUR, DAY = 3_600_000, 86_400_000
CONFIG = """
[exchange]
endpoint = "local"
symbols = ["ETH/USDT"]
reference_symbol = "BTC/USDT"
timeframes = ["1h", "1d"]
reference_timeframe = "1h"
warmup_bars = 600

[log]
level = "warning"

[models]
device = "cpu"
trade_only_validated = false

[retrain]
preset = "tiny"
epochs = 1
max_batches = 5
device = "cpu"

[engine]
trigger_timeframe = "1h"
strategies = ["confidence"]

[strategy]
combine = "either"
"""


@pytest.fixture(scope="module")
def hourly(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ETH and BTC 1h bars of 2022 from the shared hourly set: 1h files only."""
    out = tmp_path_factory.mktemp("hourly")
    for sym in ("ETH/USDT", "BTC/USDT"):
        bars = load_series([HOURLY], sym, "1h", start_ms=START, end_ms=END)
        assert bars is not None
        with gzip.open(out / f"{tape_name(sym, '1h')}.csv.gz", "wt") as fh:
            fh.write("timestamp,open,high,low,close,volume\n")
            fh.writelines(",".join([str(int(r[0])), *(repr(float(v)) for v in r[1:])]) + "\n" for r in bars)
    return out


@pytest.fixture(scope="module")
def served(hourly: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The "served" model: a tiny GRU sampled at 1h (a 24-bar, one-day horizon) on Jan..Apr 2022."""
    out = tmp_path_factory.mktemp("served") / "gru"
    spec = TrainSpec(
        "gru",
        preset="tiny",
        data_dirs=(str(hourly),),
        symbols=("ETH/USDT", "BTC/USDT"),
        start="2022-01-01T00:00:00Z",
        end="2022-05-01T00:00:00Z",
        target=TargetSpec("classification", 24, 0.02, 0.005),
        epochs=1,
        max_batches=5,
        device="cpu",
        trigger_timeframe="1h",
    )
    train(spec, out)
    return out


def _config(tmp_path: Path, timeframe: str) -> config.Config:
    path = tmp_path / "wf.toml"
    path.write_text(CONFIG)
    return walkforward.at_timeframe(config.load(str(path)), timeframe)


@pytest.mark.parametrize(
    ("timeframe", "horizon", "spec", "period"),
    [("1h", 24, "60:30", ("2022-06-01", "2022-09-29")), ("4h", 6, "180:40", ("2022-03-01", "2022-11-16"))],
)
def test_walk_forward_trains_and_trades_each_fold_at_the_trigger(
    hourly: Path, served: Path, tmp_path: Path, timeframe: str, horizon: int, spec: str, period: tuple[str, str]
) -> None:
    cfg = _config(tmp_path, timeframe)
    trigger = ("ETH/USDT", timeframe)
    tape = replay.load_streams(hourly, backtest.live_order(cfg), trigger)
    if timeframe == "4h":  # no 4h file: the bars are the 1h file's complete 4-hour periods
        assert tape.derived[trigger]["derived"] > 0 and not (hourly / "ETH_USDT-4h.csv.gz").exists()
    plan = backtest.make_plan(cfg, tape, f"{period[0]}T00:00:00Z", f"{period[1]}T00:00:00Z")
    result = walkforward.run_walk_forward(plan, hourly, spec, {"gru": served}, work=tmp_path / "wf", timeframe=timeframe)

    folds = walkforward.plan_folds(plan.start_ms, plan.end_ms, *walkforward.parse_spec(spec))
    assert len(folds) >= 2 and [f["fold"] for f in result.folds] == [f.index for f in folds]
    step = {"1h": HOUR, "4h": 4 * HOUR}[timeframe]
    assert result.timeframe == timeframe and result.bars[0, 0] == folds[0].test_start  # only out-of-sample bars
    assert np.all(np.diff(result.bars[:, 0]) == step)  # decided at every trigger close, no finer
    assert result.fills and all(f.ts >= folds[0].test_start for f in result.fills)  # trades, out of sample
    for fold in folds:
        meta = read_meta(tmp_path / "wf" / f"fold{fold.index}" / "gru")
        assert meta["train_spec"]["trigger_timeframe"] == timeframe and meta["features"]["trigger"] == timeframe
        assert meta["target"]["horizon"] == horizon  # the served one-day horizon, in trigger bars
        assert meta["data"]["last_close_ts"] <= fold.test_start  # trained before its test window


def test_walk_forward_command_refuses_a_timeframe_the_data_cannot_give(
    hourly: Path, served: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from daemon.service.cli import main

    path = tmp_path / "wf.toml"
    path.write_text(
        CONFIG.replace("trade_only_validated = false", f'trade_only_validated = false\npaths = {{ gru = "{served}" }}')
    )
    rc = main(["walk-forward", "-c", str(path), "--data", str(hourly), "--timeframe", "1m", "--folds", "60:30"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("sigd walk-forward: --timeframe 1m:") and "ETH_USDT-1m" in err[0]


def _compare_args(hourly: Path, out: Path, **over: object) -> argparse.Namespace:
    from daemon.service.cli import build_parser

    argv = ["compare", "--families", "gru", "--data", str(hourly), "--out", str(out), "--symbols", "ETH/USDT", "BTC/USDT"]
    argv += ["--preset", "tiny", "--folds", "2", "--train-days", "120", "--test-days", "30", "--epochs", "1"]
    argv += ["--max-batches", "5", "--timeframe", "1h", "--setups", "24", "72"]
    args = build_parser().parse_args(argv)
    for key, value in over.items():
        setattr(args, key, value)
    return args


def test_compare_at_1h_ranks_setups_in_trigger_bars(hourly: Path, tmp_path: Path) -> None:
    board = compare(_compare_args(hourly, tmp_path / "board"))
    assert [r["name"] for r in board["rows"] if r["kind"] == "model"] == ["gru", "gru"]
    assert sorted({r["setup"] for r in board["rows"]}) == ["1h/1d", "1h/3d"]
    for row in board["rows"]:  # every rule on the same 1h decisions of the two 30-day test windows
        assert 1000 < row["decisions"] <= 2 * 30 * 24
    folds = board["folds"]
    assert len(folds) == 4 and all(f["test"][0] - f["train"][1] >= 24 * HOUR for f in folds)  # purged by a horizon
    art = next((tmp_path / "board" / "folds" / "1h_1d").glob("fold0/gru"))
    meta = read_meta(art)
    assert meta["train_spec"]["trigger_timeframe"] == "1h" and meta["target"]["horizon"] == 24
    assert (tmp_path / "board" / "leaderboard.md").read_text().count("### 1h/") == 2


def test_compare_setups_count_trigger_bars_and_bad_input_names_the_flag(
    hourly: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from daemon.service.cli import main

    day, four = parse_setups(["24"], "1h")[0], parse_setups(["6"], "4h")[0]
    assert (day.name, day.hold, day.horizon_ms) == ("1h/1d", 24, DAY) and (four.name, four.hold) == ("4h/1d", 6)
    assert day.label_thresholds() == four.label_thresholds()  # the same span, the same label
    with pytest.raises(ValueError, match="--setups '1h:60': with --timeframe 1h a setup is a horizon in 1h bars"):
        parse_setups(["1h:60"], "1h")
    base = ["compare", "--families", "gru", "--data", str(hourly), "--out", str(tmp_path / "x"), "--symbols", "ETH/USDT"]
    assert main([*base, "--timeframe", "1m"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0] == f"sigd compare: --timeframe 1m: no tape ETH_USDT-1m.csv[.gz] in any of: {hourly}"


def test_validate_gates_a_1h_artifact_from_1h_files(hourly: Path, served: Path) -> None:
    from daemon.research.selection import validate_artifact

    june, september = 1_654_041_600_000, 1_661_990_400_000  # 2022-06-01, 2022-09-01 UTC: after its training
    block = validate_artifact(served, [str(hourly)], "ETH/USDT", june, september)
    assert block["decision_timeframe"] == "1h" and block["hold_decisions"] == 24  # 24 1h bars, one decision per bar
    assert 2000 < block["decisions"] <= (september - june) // HOUR

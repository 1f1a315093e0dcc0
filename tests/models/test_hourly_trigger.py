"""Training at a 1h/4h/1d trigger straight from 1h files (the hourly data set): every family of
the registry trains tiny at 1h and 4h on a slice of the real data, its windows are the trigger
plus 1d and BTC-1h context (4h/1d derived from 1h), and the artifact serves live windows."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from models import registry
from models.data import derive_bars, load_series, load_tape, tape_name
from models.datasets import live_windows
from models.features import HOURLY_KEYS
from models.targets import TargetSpec
from pipeline.predictor import Predictor
from pipeline.train import TrainSpec, load_symbol, train
from tests.conftest import REPO, SHARED_DATA

HOURLY = SHARED_DATA / "hourly"
needs_hourly = pytest.mark.skipif(not (HOURLY / "README.md").exists(), reason="the shared hourly data set is not here")
START, END = 1_640_995_200_000, 1_672_531_200_000  # 2022-01-01 .. 2023-01-01 UTC
SYMBOLS = ("ETH/USDT", "BTC/USDT")
TARGETS = {"1h": TargetSpec("classification", 24, 0.02, 0.005), "4h": TargetSpec("classification", 6, 0.02, 0.005)}


def _write(path: Path, bars: np.ndarray) -> None:
    with gzip.open(path, "wt") as fh:
        fh.write("timestamp,open,high,low,close,volume\n")
        for row in bars:
            fh.write(",".join([str(int(row[0])), *(repr(float(v)) for v in row[1:])]) + "\n")


@pytest.fixture(scope="module")
def hourly_slice(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One year of ETH and BTC 1h bars from the shared hourly set: 1h files only, as there."""
    out = tmp_path_factory.mktemp("hourly")
    for sym in SYMBOLS:
        bars = load_series([HOURLY], sym, "1h", start_ms=START, end_ms=END)
        assert bars is not None
        _write(out / f"{tape_name(sym, '1h')}.csv.gz", bars)
    return out


def test_derived_bars_are_complete_periods_only() -> None:
    hour = 3_600_000
    ts = np.array([0, 1, 2, 3, 4, 5, 6, 8, 9, 10, 11], dtype=np.int64) * hour  # hour 7 missing
    bars = np.column_stack(
        [ts, np.arange(11) + 10.0, np.arange(11) + 12.0, np.arange(11) + 9.0, np.arange(11) + 11.0, np.ones(11)]
    )
    out = derive_bars(bars, "1h", "4h")
    assert out[:, 0].tolist() == [0, 8 * hour]  # the period 4h-8h has a gap: left out, never filled
    assert out[0, 1:].tolist() == [10.0, 15.0, 9.0, 14.0, 4.0]


@needs_hourly
def test_4h_and_1d_come_from_the_1h_file(hourly_slice: Path) -> None:
    one_h = load_tape(hourly_slice / "ETH_USDT-1h.csv.gz", "1h")
    for tf in ("4h", "1d"):
        got = load_series([hourly_slice], "ETH/USDT", tf)
        assert got is not None and len(got) > 0
        np.testing.assert_array_equal(got, derive_bars(one_h, "1h", tf))
    loaded = load_symbol([hourly_slice], "ETH/USDT", HOURLY_KEYS["1h"], None, None, lambda s: None, "1h")
    assert set(loaded) == {"1h", "1d", "btc_1h"} and all(v is not None and len(v) for v in loaded.values())


@needs_hourly
@pytest.mark.parametrize("trigger", ["1h", "4h"])
@pytest.mark.parametrize("family", list(registry.FAMILIES))
def test_every_family_trains_at_an_hourly_trigger_and_serves_it(
    family: str, trigger: str, hourly_slice: Path, tmp_path: Path
) -> None:
    spec = TrainSpec(
        family,
        preset="tiny",
        data_dirs=(str(hourly_slice),),
        symbols=SYMBOLS,
        target=TARGETS[trigger],
        epochs=1,
        max_batches=2,
        max_val=64,
        trigger_timeframe=trigger,
    )
    assert spec.decision_timeframe == trigger  # an hourly trigger decides at its own closes
    res = train(spec, tmp_path / "art")
    meta = json.loads((res.artifact_dir / "artifact.json").read_text())
    feats = meta["features"]
    assert feats["trigger"] == trigger and feats["inputs"] == list(HOURLY_KEYS[trigger])
    assert "1d" in feats["inputs"] and "btc_1h" in feats["inputs"]  # 1d and BTC context, derived from 1h files
    assert meta["train_spec"]["trigger_timeframe"] == trigger
    assert meta["threshold"]["bars_per_year"] == pytest.approx(
        365 * 24 * 3_600_000 / {"1h": 3_600_000, "4h": 14_400_000}[trigger]
    )
    assert res.samples["train"] > 0 and res.samples["test"] > 0

    # Served: the daemon's windows at the close of the last trigger bars -> a prediction each.
    predictor = Predictor.load(res.artifact_dir, "cpu")
    series = load_symbol([hourly_slice], "ETH/USDT", feats["inputs"], None, None, lambda s: None, trigger)
    prim = series[trigger]
    assert prim is not None
    bar_ts = [int(t) for t in prim[-3:, 0]]
    windows = [live_windows(series, t, predictor.required_windows, trigger) for t in bar_ts]
    preds = predictor.predict_batch(windows, bar_ts)
    assert [p.bar_ts for p in preds] == bar_ts
    assert all(np.isfinite(list(p.scores.values())).all() for p in preds)


def _sigd_train(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "daemon", "train", *args], cwd=REPO, capture_output=True, text=True, timeout=300)


@needs_hourly
def test_bad_trigger_input_is_one_line_naming_the_flag(hourly_slice: Path, tmp_path: Path) -> None:
    base = (
        "--model",
        "gru",
        "--preset",
        "tiny",
        "--data",
        str(hourly_slice),
        "--symbols",
        "ETH/USDT",
        "--out",
        str(tmp_path / "a"),
    )
    res = _sigd_train(*base, "--timeframe", "1m")  # the hourly set has no 1m file
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr[-2000:]
    assert res.stderr.strip().splitlines()[-1].startswith("sigd train: --timeframe 1m: no tape ETH_USDT-1m")
    res = _sigd_train(*base, "--timeframe", "1h", "--from", "2030-01-01T00:00:00Z")  # no pair covers the span
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr[-2000:]
    assert res.stderr.strip().splitlines()[-1].startswith("sigd train: --from/--to: ETH/USDT has no 1h bar in the span")

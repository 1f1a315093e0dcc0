"""The research data set: panel alignment, the Parquet cache, derived 4h/1d bars, bad input."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from daemon.research.dataset import DatasetError, load_panel
from tests.conftest import REPO, SHARED_DATA

HOUR = 3_600_000
TAPE_2021 = REPO / "daemon" / "localexchange" / "tape_2021"


def write_tape(folder: Path, symbol: str, timeframe: str, ts: np.ndarray, seed: int) -> pd.DataFrame:
    """A random-walk tape with real-looking OHLCV at the given open times."""
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, len(ts))))
    open_ = np.concatenate([[100.0], close[:-1]]) * np.exp(rng.normal(0, 1e-3, len(ts)))
    high = np.maximum(open_, close) * (1 + rng.uniform(0, 0.01, len(ts)))
    low = np.minimum(open_, close) * (1 - rng.uniform(0, 0.01, len(ts)))
    df = pd.DataFrame(
        {
            "timestamp": ts.astype(np.int64),
            "open": open_,
            "high": high,
            "low": low,
            "close": close,
            "volume": rng.uniform(1, 100, len(ts)),
        }
    )
    folder.mkdir(parents=True, exist_ok=True)
    df.to_csv(folder / f"{symbol.replace('/', '_')}-{timeframe}.csv.gz", index=False)
    return df


@pytest.fixture
def gappy(tmp_path: Path) -> tuple[Path, dict[str, pd.DataFrame]]:
    """Two pairs of 1h bars over 20 days, starting mid-day, with holes of 1, 3 and 30 hours."""
    start = 1_600_041_600_000 + 7 * HOUR  # a UTC midnight + 7 h
    ts = start + np.arange(24 * 20) * HOUR
    a = np.delete(ts, [30, 100, 101, 102, *range(200, 230)])
    b = np.delete(ts[48:], [5])
    frames = {
        "AAA/USDT": write_tape(tmp_path / "data", "AAA/USDT", "1h", a, 1),
        "BBB/USDT": write_tape(tmp_path / "data", "BBB/USDT", "1h", b, 2),
    }
    return tmp_path / "data", frames


def pandas_resample(df: pd.DataFrame, rule: str, hours: int) -> pd.DataFrame:
    """The independent reference: pandas resample, keeping only periods with every hour."""
    d = df.set_index(pd.to_datetime(df["timestamp"], unit="ms", utc=True))
    agg = (
        d.tz_convert(None)
        .resample(rule, origin="epoch")
        .agg({"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum", "timestamp": "count"})
    )
    agg = agg[agg["timestamp"] == hours]
    return agg.drop(columns="timestamp").tz_localize("UTC")


@pytest.mark.parametrize("timeframe,rule,hours", [("4h", "4h", 4), ("1d", "1D", 24)])
def test_derived_bars_equal_an_independent_resample(gappy, tmp_path: Path, timeframe: str, rule: str, hours: int) -> None:
    folder, frames = gappy
    panel = load_panel(folder, timeframe, cache_dir=tmp_path / "cache")
    assert panel.timeframe == timeframe and np.all(np.diff(panel.ts) == hours * HOUR)
    for s, df in frames.items():
        ref = pandas_resample(df, rule, hours)
        bars = panel.bars(s)
        got = pd.DataFrame(
            bars[:, 1:],
            columns=["open", "high", "low", "close", "volume"],
            index=pd.to_datetime(bars[:, 0].astype(np.int64), unit="ms", utc=True),
        )
        assert got.index.equals(ref.index)
        for f in ("open", "high", "low", "close"):  # prices are picked, not computed: exact
            assert np.array_equal(got[f].to_numpy(), ref[f].to_numpy()), f
        # volume is a sum: equal up to the order of float additions
        assert np.allclose(got["volume"].to_numpy(), ref["volume"].to_numpy(), rtol=1e-12, atol=0)


def test_real_tape_derived_daily_equals_resample(tmp_path: Path) -> None:
    # the bundled 2021 tape: real Binance hours (with the April 2021 halts)
    panel = load_panel(TAPE_2021, "1d", symbols=["DOGE/USDT", "BTC/USDT"], cache_dir=tmp_path / "cache")
    for s in panel.symbols:
        df = pd.read_csv(TAPE_2021 / f"{s.replace('/', '_')}-1h.csv.gz")
        ref = pandas_resample(df, "1D", 24)
        assert np.array_equal(panel.bars(s)[:, 4], ref["close"].to_numpy())
        assert np.allclose(panel.bars(s)[:, 5], ref["volume"].to_numpy(), rtol=1e-12)


def test_gaps_stay_gaps_and_are_counted(gappy, tmp_path: Path) -> None:
    folder, frames = gappy
    h = load_panel(folder, "1h", cache_dir=tmp_path / "cache")
    assert h.symbols == ("AAA/USDT", "BBB/USDT")
    assert h.gaps == {"AAA/USDT": 1 + 3 + 30, "BBB/USDT": 1}
    a = h.column("AAA/USDT")
    assert np.isnan(h.close[30, a]) and np.isnan(h.close[100:103, a]).all()
    assert np.isnan(h.close[:48, h.column("BBB/USDT")]).all()  # before its first bar: not a gap, not filled
    assert np.count_nonzero(h.present[:, a]) == len(frames["AAA/USDT"])
    d = load_panel(folder, "1d", cache_dir=tmp_path / "cache")
    # AAA starts at 07:00 on day 0 and misses an hour of day 1: its first complete day is day 2,
    # the panel's first row; the holes then hit days 4, 8 and 9 (3 gaps); day 19 is the last full day
    assert d.ts[0] == 1_600_041_600_000 + 2 * 24 * HOUR and len(d.ts) == 18
    assert d.gaps["AAA/USDT"] == 3
    assert np.isnan(d.close[[2, 6, 7], d.column("AAA/USDT")]).all()
    assert np.isfinite(np.delete(d.close[:, d.column("AAA/USDT")], [2, 6, 7])).all()


def test_cache_is_used_and_invalidated_and_data_dir_may_be_read_only(gappy, tmp_path: Path) -> None:
    folder, _ = gappy
    ro = tmp_path / "ro"
    shutil.copytree(folder, ro)
    for p in [*ro.iterdir(), ro]:
        p.chmod(p.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    try:
        cache = tmp_path / "cache"
        first = load_panel(ro, cache_dir=cache)
        cached = sorted(cache.glob("*.parquet"))
        assert len(cached) == 2 and not list(ro.glob("*.parquet"))
        second = load_panel(ro, cache_dir=cache)
        assert np.array_equal(first.close, second.close, equal_nan=True)
        # a cached file is what is read: a marker written into it shows up in the panel
        import pyarrow.parquet as pq

        t = pq.read_table(cached[0]).to_pandas()
        t.loc[0, "close"] = 12345.0
        pq.write_table(__import__("pyarrow").Table.from_pandas(t, preserve_index=False), cached[0])
        assert 12345.0 in load_panel(ro, cache_dir=cache).close
    finally:
        for p in [ro, *ro.iterdir()]:
            p.chmod(p.stat().st_mode | stat.S_IWUSR)
    # a rewritten source (new size/mtime) is read again, not served stale from the cache
    df = pd.read_csv(ro / "AAA_USDT-1h.csv.gz")
    df.loc[0, "close"] = 777.0
    df.to_csv(ro / "AAA_USDT-1h.csv.gz", index=False)
    os.utime(ro / "AAA_USDT-1h.csv.gz", ns=(1, 2))
    p = load_panel(ro, cache_dir=cache)
    assert 777.0 in p.close and 12345.0 not in p.close


def test_span_and_symbols(gappy, tmp_path: Path) -> None:
    folder, frames = gappy
    ts = frames["BBB/USDT"]["timestamp"].to_numpy()
    p = load_panel(folder, "1h", symbols=["BBB/USDT"], start_ms=int(ts[10]), end_ms=int(ts[20]), cache_dir=tmp_path / "c")
    assert p.symbols == ("BBB/USDT",) and p.ts[0] == ts[10] and p.ts[-1] == ts[19]
    # a span only AAA covers: BBB is left out when no symbols are named
    a0 = int(frames["AAA/USDT"]["timestamp"].iloc[0])
    assert load_panel(folder, "1h", end_ms=a0 + 5 * HOUR, cache_dir=tmp_path / "c").symbols == ("AAA/USDT",)


@pytest.mark.parametrize(
    "kwargs,flag",
    [
        ({"timeframe": "1m"}, "--timeframe 1m"),
        ({"timeframe": "7x"}, "--timeframe"),
        ({"symbols": ["ZZZ/USDT"]}, "--symbols"),
        ({"start_ms": 2_000_000_000_000}, "--from/--to"),
        ({"symbols": ["AAA/USDT", "BBB/USDT"], "end_ms": 1_600_041_600_000 + 20 * HOUR}, "--symbols"),
    ],
)
def test_bad_input_is_one_line_naming_the_flag(gappy, tmp_path: Path, kwargs: dict, flag: str) -> None:
    folder, _ = gappy
    with pytest.raises(DatasetError) as e:
        load_panel(folder, cache_dir=tmp_path / "c", **kwargs)
    assert str(e.value).startswith(flag) and "\n" not in str(e.value)


def test_4h_needs_1h_files(tmp_path: Path) -> None:
    write_tape(tmp_path / "d", "AAA/USDT", "1d", 1_600_041_600_000 + np.arange(10) * 24 * HOUR, 3)
    assert load_panel(tmp_path / "d", "1d", cache_dir=tmp_path / "c").close.shape == (10, 1)  # a 1d file serves 1d
    with pytest.raises(DatasetError, match=r"^--timeframe 4h: .* has only 1d files"):
        load_panel(tmp_path / "d", "4h", cache_dir=tmp_path / "c")
    with pytest.raises(DatasetError, match=r"^--data: "):
        load_panel(tmp_path / "nowhere", cache_dir=tmp_path / "c")


HOURLY = SHARED_DATA / "hourly"


@pytest.mark.skipif(not (HOURLY / "README.md").exists(), reason="the shared hourly data set is not here")
def test_hourly_set_gaps_match_its_readme(tmp_path: Path) -> None:
    # the README's table: "| `BTC_USDT-1h.csv.gz` | first | last | rows | 122 in 27 gap(s) | ..."
    expected = {}
    for line in (HOURLY / "README.md").read_text().splitlines():
        cells = [c.strip() for c in line.split("|")]
        if len(cells) > 6 and cells[1].endswith("-1h.csv.gz`"):
            expected[cells[1].strip("`").removesuffix("-1h.csv.gz").replace("_", "/")] = (int(cells[4]), int(cells[5].split()[0]))
    panel = load_panel(HOURLY, "1h", cache_dir=tmp_path / "c")
    assert len(expected) == 16 and set(panel.symbols) == set(expected)
    for s, (rows, gaps) in expected.items():
        assert int(panel.present[:, panel.column(s)].sum()) == rows and panel.gaps[s] == gaps, s

"""Tape loading: valid files, malformed files named by line, gaps, several data directories."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.data import TapeError, find_gaps, find_tape, load_series, load_tape
from tests.pipeline_builders import random_bars, write_tape


def test_round_trip_of_a_written_tape(tmp_path: Path) -> None:
    bars = random_bars(50)
    path = write_tape(tmp_path, "ETH/USDT", "1m", bars)
    np.testing.assert_array_equal(load_tape(path, "1m"), bars)
    assert find_gaps(bars, "1m") == []


@pytest.mark.parametrize(
    "edit, why",
    [
        (lambda lines: lines.__setitem__(3, lines[3].rsplit(",", 1)[0] + ",abc"), "line 4: a value is missing, not a number"),
        (lambda lines: lines.__setitem__(4, lines[2]), "line 5: timestamp not strictly after"),
        (lambda lines: lines.__setitem__(5, "1722470460001,1,1,1,1,1"), "line 6: timestamp not aligned"),
        (lambda lines: lines.__setitem__(6, lines[6].split(",")[0] + ",10,9,8,12,1"), "line 7: OHLC out of order"),
        (lambda lines: lines.__setitem__(0, "time,o,h,l,c,v"), "line 1: header"),
    ],
)
def test_malformed_rows_name_the_file_and_line(tmp_path: Path, edit, why: str) -> None:
    path = write_tape(tmp_path, "ETH/USDT", "1m", random_bars(10), gz=False)
    lines = path.read_text().splitlines()
    edit(lines)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(TapeError, match=why) as err:
        load_tape(path, "1m")
    assert str(path) in str(err.value) and "line" in str(err.value)


def test_garbage_gzip_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ETH_USDT-1m.csv.gz"
    path.write_bytes(b"not gzip at all")
    with pytest.raises(TapeError, match="unreadable"):
        load_tape(path, "1m")


def test_gaps_are_found_not_filled(tmp_path: Path) -> None:
    bars = np.delete(random_bars(30), [10, 11, 12, 20], axis=0)
    gaps = find_gaps(bars, "1m")
    assert [(g.missing, (g.end_ts - g.start_ts) // 60_000) for g in gaps] == [(3, 3), (1, 1)]
    assert len(load_tape(write_tape(tmp_path, "ETH/USDT", "1m", bars), "1m")) == 26


def test_first_directory_holding_a_file_wins_and_ranges_cut(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    write_tape(a, "ETH/USDT", "1m", random_bars(20, seed=1))
    write_tape(b, "ETH/USDT", "1m", random_bars(20, seed=2))
    write_tape(b, "ETH/USDT", "1h", random_bars(5, "1h"))
    assert find_tape([a, b], "ETH/USDT", "1m").parent == a
    assert find_tape([a, b], "ETH/USDT", "1h").parent == b
    start = int(random_bars(1)[0, 0]) + 5 * 60_000
    cut = load_series([a, b], "ETH/USDT", "1m", start_ms=start, end_ms=start + 10 * 60_000)
    assert len(cut) == 10 and cut[0, 0] == start
    assert load_series([a], "ETH/USDT", "1d", required=False) is None
    with pytest.raises(TapeError, match="ETH_USDT-1d"):
        load_series([a], "ETH/USDT", "1d")

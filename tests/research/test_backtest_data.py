"""Data directories a backtest must refuse clearly, or replay in a documented degraded way."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from daemon.research import replay
from daemon.research.replay import TapeError
from tests.backtest_builders import T0, tape_dir, walk

ETH_1M = ("ETH/USDT", "1m")
STREAMS = [("ETH/USDT", "1m"), ("ETH/USDT", "1h"), ("ETH/USDT", "1d"), ("BTC/USDT", "1m")]


def _write_csv(path: Path, text: str) -> Path:
    with gzip.open(path, "wt") as fh:
        fh.write(text)
    return path


def _good_lines(n: int = 5) -> list[str]:
    rows = walk("1m", n)
    return ["timestamp,open,high,low,close,volume"] + [f"{int(r[0])},{r[1]},{r[2]},{r[3]},{r[4]},{r[5]}" for r in rows]


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda ls: ["ts,o,h,l,c,v"] + ls[1:], "line 1: header"),
        (lambda ls: ls[:3] + [ls[3].replace(ls[3].split(",")[4], "abc", 1)] + ls[4:], "line 4: a value is missing, not a number"),
        (lambda ls: ls[:3] + [ls[4], ls[3]] + ls[5:], "line 5: timestamp not strictly after"),
        (lambda ls: ls[:3] + [ls[2]] + ls[3:], "line 4: timestamp not strictly after"),
        (lambda ls: ls[:2] + [str(T0 + 60_000 + 7) + ls[2][ls[2].index(",") :]] + ls[3:], "line 3: timestamp not aligned"),
        (lambda ls: ls[:5] + [",".join(ls[5].split(",")[:3] + ["1e9"] + ls[5].split(",")[4:])], "line 6: OHLC out of order"),
        (lambda ls: ls[:2] + [ls[2].rsplit(",", 1)[0] + ",-1"] + ls[3:], "line 3: negative volume"),
    ],
)
def test_malformed_file_names_file_line_and_reason(tmp_path: Path, mutate, message: str) -> None:
    path = _write_csv(tmp_path / "ETH_USDT-1m.csv.gz", "\n".join(mutate(_good_lines())) + "\n")
    with pytest.raises(TapeError) as exc:
        replay.load_streams(tmp_path, STREAMS, ETH_1M)
    assert str(path) in str(exc.value) and message in str(exc.value)


def test_garbage_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "ETH_USDT-1m.csv.gz").write_bytes(b"\x1f\x8b\x08not really gzip")
    with pytest.raises(TapeError, match="unreadable tape file"):
        replay.load_streams(tmp_path, STREAMS, ETH_1M)


def test_missing_trigger_stream_is_an_error_others_degrade(tmp_path: Path) -> None:
    tape_dir(tmp_path, minutes=200, days_before=2)
    (tmp_path / "ETH_USDT-1d.csv.gz").unlink()
    tape = replay.load_streams(tmp_path, STREAMS, ETH_1M)
    assert tape.notes()["missing_streams"] == ["ETH/USDT 1d"]
    (tmp_path / "ETH_USDT-1m.csv.gz").unlink()
    with pytest.raises(TapeError, match="ETH_USDT-1m.csv.*trigger stream"):
        replay.load_streams(tmp_path, STREAMS, ETH_1M)
    with pytest.raises(TapeError, match="not a directory"):
        replay.load_streams(tmp_path / "nope", STREAMS, ETH_1M)


def test_gaps_are_listed_and_replayed_as_recorded(tmp_path: Path) -> None:
    rows = walk("1m", 100)
    replay.write_tape(tmp_path, "ETH/USDT", "1m", np.delete(rows, np.s_[40:45], axis=0))
    tape = replay.load_streams(tmp_path, [ETH_1M], ETH_1M)
    gap = {"from": replay.iso(int(rows[40, 0])), "next_bar": replay.iso(int(rows[45, 0])), "missing": 5}
    assert tape.notes()["gaps"] == {"ETH/USDT 1m": [gap]}
    assert tape.notes(since_ms=int(rows[45, 0]) + 1)["gaps"] == {}  # a gap before the period is left out
    _, idx = replay.replay_order(tape, [ETH_1M], 0, 2**62)
    assert len(idx) == 95  # nothing invented inside the gap


def test_same_close_instant_follows_the_fixed_stream_order(tmp_path: Path) -> None:
    tape_dir(tmp_path, minutes=180, days_before=1, hours_before=2)
    tape = replay.load_streams(tmp_path, STREAMS, ETH_1M)
    order = [("ETH/USDT", "1d"), ("ETH/USDT", "1h"), ("BTC/USDT", "1m"), ("ETH/USDT", "1m")]
    streams, rows = replay.replay_order(tape, order, T0, T0 + 3 * 3_600_000)
    closes = [int(tape.streams[order[s]][r, 0]) + (3_600_000 if order[s][1] == "1h" else 60_000) for s, r in zip(streams, rows)]
    assert closes == sorted(closes)
    at_hour = [order[s] for s, c in zip(streams, closes) if c == T0 + 3_600_000]
    assert at_hour == [("ETH/USDT", "1h"), ("BTC/USDT", "1m"), ("ETH/USDT", "1m")]
    assert len(streams) == 3 * 60 * 2 + 3  # every 1m of both symbols and three 1h bars


def test_tape_round_trip_is_exact(tmp_path: Path) -> None:
    rows = walk("1h", 50, seed=3)
    replay.write_tape(tmp_path, "ETH/USDT", "1h", rows)
    assert np.array_equal(replay.load_tape(tmp_path / "ETH_USDT-1h.csv.gz", "1h"), rows)

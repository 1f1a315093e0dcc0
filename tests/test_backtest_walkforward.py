"""Walk-forward folds: planning, and no fold ever trains on its test window."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from daemon import replay, walkforward
from daemon.walkforward import DAY_MS, Fold
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
    tape = replay.load_streams(tape_dir(tmp_path / "data", minutes=3 * 1440, days_before=3, hours_before=0),
                               STREAMS, ETH_1M)
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

"""Walk-forward evaluation: retrain on a window, trade the window after it, roll forward.

Fold k trains on trigger bars opening in [start + k·test, start + k·test + train) and trades
the following `test` days. The training data is cut at the train window's end before the
training code ever sees it (tape files written for that window only), so no label, scaler
or threshold of a fold can see its test window. Training is the nightly retrain's code path
(`models.train.train_pipeline`: fit, threshold optimized on its own validation split).
The test windows are traded by ONE engine run that swaps predictors at each fold boundary,
as the live daemon swaps a retrained model between decisions, so the concatenated
out-of-sample result is one continuous equity curve.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from daemon.domain import timeframe_ms
from daemon.replay import Stream, Tape, TapeError, write_tape

DAY_MS = 86_400_000


@dataclass(frozen=True)
class Fold:
    """One walk-forward step: train on [train_start, train_end), trade [test_start, test_end)."""

    index: int
    train_start: int
    train_end: int
    test_start: int
    test_end: int


def parse_spec(spec: str) -> tuple[int, int]:
    """"TRAIN_DAYS:TEST_DAYS" → (train_days, test_days); a clear error otherwise."""
    parts = spec.split(":")
    try:
        train, test = (int(p) for p in parts)
    except ValueError:
        raise ValueError(f"--walk-forward {spec!r}: expected TRAIN_DAYS:TEST_DAYS, e.g. 30:7") from None
    if train < 1 or test < 1:
        raise ValueError(f"--walk-forward {spec!r}: both day counts must be >= 1")
    return train, test


def plan_folds(start_ms: int, end_ms: int, train_days: int, test_days: int) -> list[Fold]:
    """Folds whose test windows tile [start + train, end); the last one may be shorter (≥ 1 day)."""
    folds: list[Fold] = []
    train_start = start_ms
    while True:
        test_start = train_start + train_days * DAY_MS
        test_end = min(test_start + test_days * DAY_MS, end_ms)
        if test_end - test_start < min(DAY_MS, test_days * DAY_MS):
            break
        folds.append(Fold(len(folds), train_start, test_start, test_start, test_end))
        train_start += test_days * DAY_MS
    if not folds:
        raise ValueError(f"walk-forward {train_days}:{test_days} days needs at least {train_days + 1} days of "
                         f"data from the start; the period has {(end_ms - start_ms) / DAY_MS:.1f}")
    return folds


def write_training_tape(tape: Tape, trigger: Stream, fold: Fold, out: Path, context_bars: int) -> Path:
    """Tape files of what fold `fold` may train on: bars closed by train_end, nothing later.

    The trigger stream starts at train_start; every other stream keeps `context_bars` bars
    of history before train_start, the context the first training windows need.
    """
    for stream, rows in tape.streams.items():
        close = rows[:, 0].astype(np.int64) + timeframe_ms(stream[1])
        keep = close <= fold.train_end
        if stream == trigger:
            keep &= rows[:, 0] >= fold.train_start
        else:
            first = int(np.searchsorted(rows[:, 0], fold.train_start)) - context_bars
            keep[: max(first, 0)] = False
        if not keep.any():
            if stream == trigger:
                raise TapeError(f"fold {fold.index}: no {stream[0]} {stream[1]} bars in its training window")
            continue
        write_tape(out, stream[0], stream[1], rows[keep])
    return out

"""Recorded bars on disk: tape files `<BASE>_<QUOTE>-<tf>.csv[.gz]` -> float64 arrays [n, 6].

Columns are (ts, open, high, low, close, volume), `ts` the open time in ms UTC: the same layout
as the daemon's ring-buffer windows. Several data directories may be combined: for each
(symbol, timeframe) the first directory that holds a file wins, so
`--data extra/2024-07_2024-08 shared/data` takes 1m from the 2024 slice and 1h/1d from the
main set. Malformed input raises TapeError naming the file and the line; gaps are tolerated,
found by `find_gaps` and reported, never filled.
4h and 1d bars with no file of their own are derived from the pair's 1h file (`derive_bars`):
a bar exists only where every hour of its UTC-aligned period is present, so the hourly data set
(1h files only) and what `sigd backfill` writes give 1h/4h/1d windows without a 1m file.
"""

from __future__ import annotations

import gzip
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # imported where a tape is read: the daemon's run path never is (~100 MB of RSS)
    import pandas as pd

from daemon.domain import timeframe_ms

COLUMNS = ("timestamp", "open", "high", "low", "close", "volume")
TS, OPEN, HIGH, LOW, CLOSE, VOLUME = range(6)


class TapeError(ValueError):
    """A tape file that is missing or malformed; the message names the file and line."""


@dataclass(frozen=True)
class Gap:
    """Missing bars between two recorded ones: bars opening in [start_ts, end_ts) are absent."""

    start_ts: int
    end_ts: int
    missing: int


def tape_name(symbol: str, timeframe: str) -> str:
    """'ETH/USDT', '1m' -> 'ETH_USDT-1m' (the file stem, without .csv[.gz])."""
    return f"{symbol.replace('/', '_')}-{timeframe}"


def find_tape(dirs: Sequence[Path | str], symbol: str, timeframe: str) -> Path | None:
    """The first `<dir>/<BASE>_<QUOTE>-<tf>.csv[.gz]` that exists, or None."""
    for d in dirs:
        for suffix in (".csv.gz", ".csv"):
            p = Path(d) / f"{tape_name(symbol, timeframe)}{suffix}"
            if p.is_file():
                return p
    return None


def _read_frame(path: Path) -> pd.DataFrame:
    import pandas as pd

    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt") as fh:
            header = fh.readline().strip()
        if tuple(h.strip() for h in header.split(",")) != COLUMNS:
            raise TapeError(f"{path}: line 1: header must be {','.join(COLUMNS)}, got {header!r}")
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, EOFError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise TapeError(f"{path}: unreadable tape file: {exc}") from exc


def _bad_row(path: Path, mask: np.ndarray, why: str) -> None:
    if mask.any():
        i = int(np.flatnonzero(mask)[0])
        raise TapeError(f"{path}: line {i + 2}: {why} ({int(mask.sum())} such row(s))")


def load_tape(path: Path | str, timeframe: str) -> np.ndarray:
    """Read and validate one tape file -> float64 [n, 6], sorted, no duplicates."""
    import pandas as pd

    path = Path(path)
    frame = _read_frame(path)
    numeric = frame.apply(pd.to_numeric, errors="coerce")
    arr = numeric.to_numpy(dtype=np.float64)
    if arr.size == 0:
        raise TapeError(f"{path}: no rows")
    _bad_row(path, ~np.isfinite(arr).all(axis=1), "a value is missing, not a number or not finite")
    ts = arr[:, TS]
    _bad_row(path, ts != np.round(ts), "timestamp is not an integer of milliseconds")
    _bad_row(path, ts % timeframe_ms(timeframe) != 0, f"timestamp not aligned to {timeframe}")
    _bad_row(path, np.diff(ts, prepend=-np.inf) <= 0, "timestamp not strictly after the previous row")
    _bad_row(path, (arr[:, OPEN : CLOSE + 1] <= 0).any(axis=1), "price <= 0")
    body_hi = np.maximum(arr[:, OPEN], arr[:, CLOSE])
    body_lo = np.minimum(arr[:, OPEN], arr[:, CLOSE])
    _bad_row(path, (arr[:, HIGH] < body_hi) | (arr[:, LOW] > body_lo), "OHLC out of order (need low <= open,close <= high)")
    _bad_row(path, arr[:, VOLUME] < 0, "negative volume")
    return arr


def find_gaps(bars: np.ndarray, timeframe: str) -> list[Gap]:
    """Every run of missing bars in a sorted array [n, 6] (open times not one timeframe apart)."""
    step = timeframe_ms(timeframe)
    ts = bars[:, TS].astype(np.int64)
    idx = np.flatnonzero(np.diff(ts) != step)
    return [Gap(int(ts[i] + step), int(ts[i + 1]), int((ts[i + 1] - ts[i]) // step - 1)) for i in idx]


def contiguous_ends(bars: np.ndarray, timeframe: str) -> np.ndarray:
    """For each row, how many rows up to and including it are gap-free (run length)."""
    step = timeframe_ms(timeframe)
    ok = np.diff(bars[:, TS].astype(np.int64), prepend=np.int64(-1)) == step
    # run[i] = i - (index of the last break at or before i) + 1
    breaks = np.where(~ok, np.arange(len(ok)), 0)
    return np.arange(len(ok)) - np.maximum.accumulate(breaks) + 1


DERIVED_FROM_1H: tuple[str, ...] = ("4h", "1d")  # timeframes built from a 1h file when no file of their own


def derive_bars(bars: np.ndarray, source_tf: str, timeframe: str) -> np.ndarray:
    """Bars [n, 6] at `source_tf` (sorted, gaps allowed) -> complete bars at `timeframe`, aligned
    to UTC: first open, max high, min low, last close, volume sum. A period with a missing source
    bar is left out (a gap stays a gap, never filled)."""
    step, period = timeframe_ms(source_tf), timeframe_ms(timeframe)
    if period % step:
        raise ValueError(f"timeframe {timeframe} is not a multiple of the source timeframe {source_tf}")
    k = period // step
    if k == 1 or len(bars) == 0:
        return bars
    ts = bars[:, TS].astype(np.int64)
    first = ts[0] - ts[0] % period
    n_periods = int((ts[-1] - first) // period) + 1
    grid = np.full((n_periods * k, 6), np.nan)
    grid[((ts - first) // step).astype(np.int64)] = bars
    shaped = grid.reshape(n_periods, k, 6)
    complete = np.isfinite(shaped[:, :, CLOSE]).all(axis=1)
    out = np.column_stack(
        [
            first + np.arange(n_periods, dtype=np.int64) * period,
            shaped[:, 0, OPEN],
            shaped[:, :, HIGH].max(axis=1),
            shaped[:, :, LOW].min(axis=1),
            shaped[:, -1, CLOSE],
            shaped[:, :, VOLUME].sum(axis=1),
        ]
    ).astype(np.float64)
    return out[complete]


def load_series(
    dirs: Sequence[Path | str],
    symbol: str,
    timeframe: str,
    *,
    start_ms: int | None = None,
    end_ms: int | None = None,
    required: bool = True,
) -> np.ndarray | None:
    """One (symbol, timeframe) from the first directory holding it, cut to [start, end); 4h/1d
    derived from the 1h file when no directory holds a file of that timeframe."""
    path = find_tape(dirs, symbol, timeframe)
    source = find_tape(dirs, symbol, "1h") if path is None and timeframe in DERIVED_FROM_1H else None
    if path is None and source is None:
        if required:
            where = ", ".join(str(d) for d in dirs)
            also = f" (nor a {tape_name(symbol, '1h')} file to derive it from)" if timeframe in DERIVED_FROM_1H else ""
            raise TapeError(f"no tape {tape_name(symbol, timeframe)}.csv[.gz]{also} in any of: {where}")
        return None
    bars = load_tape(path, timeframe) if path is not None else derive_bars(load_tape(source, "1h"), "1h", timeframe)  # type: ignore[arg-type]
    keep = np.ones(len(bars), dtype=bool)
    if start_ms is not None:
        keep &= bars[:, TS] >= start_ms
    if end_ms is not None:
        keep &= bars[:, TS] < end_ms
    return bars[keep]


def fingerprint(arrays: Iterable[tuple[str, np.ndarray]]) -> str:
    """sha256 over named arrays (name, shape, bytes): identifies the exact training data."""
    h = hashlib.sha256()
    for name, arr in arrays:
        h.update(name.encode())
        h.update(str(arr.shape).encode())
        h.update(np.ascontiguousarray(arr, dtype=np.float64).tobytes())
    return h.hexdigest()

"""Recorded bars for a backtest: load tape files, check them, and merge every stream into the
order in which the live feed delivers the bars.

Tape format (the format of shared/data): one file per stream, `<BASE>_<QUOTE>-<tf>.csv[.gz]`,
header `timestamp,open,high,low,close,volume`, timestamp = open time in ms UTC.

What a data directory may and may not get away with:

- a malformed file (wrong header, a value that is not a number, timestamps out of order,
  duplicated or off the timeframe grid, a bar that breaks OHLC order) is an error naming the
  file, the line and what is wrong: a backtest never runs on a silently repaired tape;
- gaps (missing bars, e.g. exchange halts) are replayed as they are: the live feed
  backfills a gap over REST, and for a range the exchange has no bars for the backfill is
  empty, so the next bar the engine sees is the one after the gap. Every gap is listed
  in the report (`data.gaps`);
- a missing file for the trigger stream is an error; a missing file for any other stream
  gives a degraded run: that window stays empty (the models mask a missing timeframe, as
  they do live) and the report says so (`data.missing_streams`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pandas as pd

from daemon.domain import Bar, timeframe_ms

HEADER = ["timestamp", "open", "high", "low", "close", "volume"]
Stream = tuple[str, str]  # (symbol, timeframe)


class TapeError(ValueError):
    """A tape file or data directory that cannot be replayed faithfully; the message says why."""


def tape_path(data_dir: Path, symbol: str, timeframe: str) -> Path | None:
    """The file holding one stream (`ETH/USDT` 1m → `ETH_USDT-1m.csv.gz` or `.csv`), if any."""
    stem = f"{symbol.replace('/', '_')}-{timeframe}"
    for suffix in (".csv.gz", ".csv"):
        if (data_dir / f"{stem}{suffix}").is_file():
            return data_dir / f"{stem}{suffix}"
    return None


def load_tape(path: Path, timeframe: str) -> np.ndarray:
    """A checked tape file as float64 [n, 6] (ts, open, high, low, close, volume), oldest first."""
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, EOFError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise TapeError(f"{path}: cannot be read as CSV: {exc}") from None
    if list(df.columns) != HEADER:
        raise TapeError(f"{path}: header is {','.join(map(str, df.columns))!r}, expected {','.join(HEADER)!r}")
    values = df.apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(values).all(axis=1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise TapeError(f"{path}: line {i + 2}: not a finite number in {','.join(df.iloc[i])!r}")
    _check_rows(path, values, timeframe)
    return values


def _check_rows(path: Path, a: np.ndarray, timeframe: str) -> None:
    """Order, grid and OHLC invariants; the first offending line is named."""
    step = timeframe_ms(timeframe)
    ts = a[:, 0]
    checks = (
        (np.diff(ts, prepend=-np.inf) <= 0, "timestamp not strictly after the previous line (unsorted or duplicate)"),
        (ts % step != 0, f"timestamp not aligned to the {timeframe} grid"),
        (a[:, 3] > np.minimum(a[:, 1], a[:, 4]), "low above open or close"),
        (a[:, 2] < np.maximum(a[:, 1], a[:, 4]), "high below open or close"),
        (a[:, 5] < 0, "negative volume"),
    )
    for mask, why in checks:
        if mask.any():
            i = int(np.flatnonzero(mask)[0])
            raise TapeError(f"{path}: line {i + 2} (timestamp {int(ts[i])}): {why}")


def find_gaps(a: np.ndarray, timeframe: str) -> list[dict[str, int]]:
    """Missing bars inside a stream: [{"after_ts", "next_ts", "missing"}], in order."""
    step = timeframe_ms(timeframe)
    d = np.diff(a[:, 0])
    idx = np.flatnonzero(d > step)
    return [{"after_ts": int(a[i, 0]), "next_ts": int(a[i + 1, 0]), "missing": int(d[i] // step - 1)} for i in idx]


@dataclass
class Tape:
    """Every stream of one backtest, checked, with what the report must say about them."""

    streams: dict[Stream, np.ndarray]  # present streams only
    missing: list[Stream]
    gaps: dict[Stream, list[dict[str, int]]]

    def notes(self) -> dict:
        """The data section of the report."""
        return {
            "streams": {f"{s} {tf}": int(len(a)) for (s, tf), a in self.streams.items()},
            "missing_streams": [f"{s} {tf}" for s, tf in self.missing],
            "gaps": {f"{s} {tf}": g for (s, tf), g in self.gaps.items() if g},
        }


def load_streams(data_dir: Path, streams: Sequence[Stream], trigger: Stream) -> Tape:
    """Load and check every stream; the trigger stream must exist."""
    if not data_dir.is_dir():
        raise TapeError(f"{data_dir}: not a directory")
    loaded, missing, gaps = {}, [], {}
    for symbol, tf in streams:
        path = tape_path(data_dir, symbol, tf)
        if path is None:
            missing.append((symbol, tf))
            continue
        loaded[(symbol, tf)] = a = load_tape(path, tf)
        gaps[(symbol, tf)] = find_gaps(a, tf)
    if trigger not in loaded:
        stem = f"{trigger[0].replace('/', '_')}-{trigger[1]}.csv[.gz]"
        raise TapeError(f"{data_dir}: no {stem}: the trigger stream {trigger[0]} {trigger[1]} is required")
    if len(loaded[trigger]) == 0:
        raise TapeError(f"{data_dir}: the trigger stream {trigger[0]} {trigger[1]} has no bars")
    return Tape(loaded, missing, gaps)


def replay_order(tape: Tape, order: Sequence[Stream], start_ms: int, end_ms: int) -> tuple[np.ndarray, np.ndarray]:
    """The bars that close in (start_ms, end_ms], merged as the live feed delivers them.

    Sorted by close instant; bars closing at the same instant come in the fixed stream
    `order`. Returns (stream index into `order` [k], row index into that stream [k]).
    """
    keys, streams_idx, rows_idx = [], [], []
    for rank, stream in enumerate(order):
        a = tape.streams.get(stream)
        if a is None:
            continue
        close = a[:, 0].astype(np.int64) + timeframe_ms(stream[1])
        rows = np.flatnonzero((close > start_ms) & (close <= end_ms))
        keys.append(close[rows] * len(order) + rank)
        streams_idx.append(np.full(len(rows), rank))
        rows_idx.append(rows)
    key = np.concatenate(keys)
    perm = np.argsort(key, kind="stable")
    return np.concatenate(streams_idx)[perm], np.concatenate(rows_idx)[perm]


def warmup_rows(tape: Tape, stream: Stream, start_ms: int, n: int) -> np.ndarray:
    """The last `n` bars of a stream closed at or before start_ms: what warms its buffer."""
    a = tape.streams.get(stream)
    if a is None:
        return np.zeros((0, 6))
    close = a[:, 0].astype(np.int64) + timeframe_ms(stream[1])
    end = int(np.searchsorted(close, start_ms, side="right"))
    return a[max(0, end - n):end]


def bars_of(symbol: str, timeframe: str, rows: np.ndarray) -> Iterator[Bar]:
    """Rows [n, 6] as Bars."""
    for r in rows.tolist():
        yield Bar(symbol, timeframe, int(r[0]), r[1], r[2], r[3], r[4], r[5])


def write_tape(data_dir: Path, symbol: str, timeframe: str, rows: np.ndarray) -> Path:
    """Write rows [n, 6] as one gzip tape file (the walk-forward training windows use it)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / f"{symbol.replace('/', '_')}-{timeframe}.csv.gz"
    df = pd.DataFrame(rows, columns=HEADER)
    df["timestamp"] = df["timestamp"].astype(np.int64)
    df.to_csv(path, index=False)  # full float precision: a round trip changes no value
    return path


def discover(data_dir: Path) -> list[Stream]:
    """Every (symbol, timeframe) with a tape file in a directory, e.g. ETH_USDT-1h.csv.gz → ("ETH/USDT", "1h")."""
    found = set()
    for p in data_dir.glob("*-*.csv*"):
        stem = p.name.removesuffix(".gz").removesuffix(".csv")
        pair, _, tf = stem.rpartition("-")
        if "_" in pair and tf and p.name.endswith((".csv", ".csv.gz")):
            found.add((pair.replace("_", "/", 1), tf))
    return sorted(found)

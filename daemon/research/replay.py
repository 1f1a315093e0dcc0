"""Recorded bars for a backtest: load tape files, check them, and merge every stream into the
order in which the live feed delivers the bars.

Tape format (the format of shared/data): one file per stream, `<BASE>_<QUOTE>-<tf>.csv[.gz]`,
header `timestamp,open,high,low,close,volume`, timestamp = open time in ms UTC. Files are read
and checked by models/data.py, the same code the training reads them with.

What a data directory may and may not get away with:

- a malformed file (wrong header, a value that is not a number, timestamps out of order,
  duplicated or off the timeframe grid, a bar that breaks OHLC order) is an error naming the
  file, the line and what is wrong: a backtest never runs on a silently repaired tape;
- gaps (missing bars, e.g. exchange halts) are replayed as they are: the live feed
  backfills a gap over REST, and for a range the exchange has no bars for the backfill is
  empty, so the next bar the engine sees is the one after the gap. Every gap is listed
  in the report (`data.gaps`);
- 1h, 4h and 1d bars are derived from the symbol's 1m file wherever every minute of the
  period is there (first open, max high, min low, last close, volume summed exactly to 1e-8),
  as the local exchange serves them: inside the 1m file's span the derived bars are used,
  before it (or for a period with a missing minute) the recorded file's bars. A period with a
  missing minute and no recorded bar stays a gap (never filled) and is counted
  (`data.derived_from_1m`). So a tape with 1m files for every symbol (the bundled 2021 one,
  whose recorded 1h files of XRP/ADA/DOGE/LTC end before its 1m span) decides every symbol at 1h;
- a symbol with no 1m file gets its 4h and 1d bars from its 1h file by the same rule (a period
  with a missing hour stays a gap), so a folder of 1h files (the hourly data set) replays at
  1h, 4h or 1d (counted under `data.derived_from_1m` too, the source being 1h);
- a missing file for the trigger stream (recorded or derived) is an error; a missing file for
  any other stream gives a degraded run: that window stays empty (the models mask a missing
  timeframe, as they do live) and the report says so (`data.missing_streams`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from daemon.domain import Bar, timeframe_ms
from models import data
from models.data import TapeError, derive_bars, find_tape, load_tape

__all__ = [
    "TapeError",
    "load_tape",
    "tape_path",
    "find_gaps",
    "Tape",
    "load_streams",
    "replay_order",
    "warmup_rows",
    "bars_of",
    "write_tape",
    "discover",
]


def iso(ms: int) -> str:
    """ms UTC → ISO 8601 with a Z."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


HEADER = ["timestamp", "open", "high", "low", "close", "volume"]
Stream = tuple[str, str]  # (symbol, timeframe)


def tape_path(data_dir: Path, symbol: str, timeframe: str) -> Path | None:
    """The file holding one stream (`ETH/USDT` 1m → `ETH_USDT-1m.csv.gz` or `.csv`), if any."""
    return find_tape([data_dir], symbol, timeframe)


def find_gaps(rows: np.ndarray, timeframe: str) -> list[dict[str, Any]]:
    """Missing bars inside a stream, for the report: first missing open time, next bar, count."""
    return [
        {"from": iso(g.start_ts), "next_bar": iso(g.end_ts), "missing": g.missing, "start_ts": g.start_ts, "end_ts": g.end_ts}
        for g in data.find_gaps(rows, timeframe)
    ]


@dataclass
class Tape:
    """Every stream of one backtest, checked, with what the report must say about them."""

    streams: dict[Stream, np.ndarray]  # present streams only
    missing: list[Stream]
    gaps: dict[Stream, list[dict[str, Any]]]
    # per stream built from 1m: {"derived": bars taken from 1m, "incomplete": periods of the
    # 1m span with a missing minute (left out), "recorded": bars taken from the recorded file}
    derived: dict[Stream, dict[str, int]] = field(default_factory=dict)

    def notes(self, since_ms: int = 0, until_ms: int = 2**62) -> dict:
        """The data section of the report; gaps only where they touch [since_ms, until_ms)."""
        gaps = {
            f"{s} {tf}": [
                {k: v for k, v in g.items() if not k.endswith("_ts")}
                for g in found
                if g["end_ts"] > since_ms and g["start_ts"] < until_ms
            ]
            for (s, tf), found in self.gaps.items()
        }
        return {
            "streams": {f"{s} {tf}": int(len(a)) for (s, tf), a in self.streams.items()},
            "missing_streams": [f"{s} {tf}" for s, tf in self.missing],
            "gaps": {k: v for k, v in gaps.items() if v},
            "derived_from_1m": {f"{s} {tf}": dict(d) for (s, tf), d in self.derived.items()},
        }


def load_streams(data_dir: Path, streams: Sequence[Stream], trigger: Stream) -> Tape:
    """Load and check every stream; the trigger stream must exist."""
    if not data_dir.is_dir():
        raise TapeError(f"{data_dir}: not a directory")
    loaded: dict[Stream, np.ndarray] = {}
    missing: list[Stream] = []
    gaps: dict[Stream, list[dict[str, Any]]] = {}
    derived: dict[Stream, dict[str, int]] = {}
    sources: dict[tuple[str, str], np.ndarray | None] = {}  # each symbol's 1m and 1h rows, read once
    for symbol, tf in streams:
        path = tape_path(data_dir, symbol, tf)
        recorded = load_tape(path, tf) if path is not None else None
        for source_tf in DERIVED_FROM.get(tf, ()):
            key = (symbol, source_tf)
            if key not in sources:
                src = loaded.get(key)
                if src is None:
                    src_path = tape_path(data_dir, symbol, source_tf)
                    src = load_tape(src_path, source_tf) if src_path is not None else None
                sources[key] = src
            src = sources[key]
            if src is not None and len(src):
                rows, derived[(symbol, tf)] = from_source(src, source_tf, tf, recorded)
                recorded = rows if len(rows) or recorded is not None else None  # nothing at all: a missing stream
                break  # the finest source there is wins
        if recorded is None:
            missing.append((symbol, tf))
            continue
        loaded[(symbol, tf)] = recorded
        gaps[(symbol, tf)] = find_gaps(recorded, tf)
    if trigger not in loaded:
        stem = f"{trigger[0].replace('/', '_')}-{trigger[1]}.csv[.gz]"
        raise TapeError(f"{data_dir}: no {stem}: the trigger stream {trigger[0]} {trigger[1]} is required")
    if len(loaded[trigger]) == 0:
        raise TapeError(f"{data_dir}: the trigger stream {trigger[0]} {trigger[1]} has no bars")
    return Tape(loaded, missing, gaps, derived)


DERIVED_TIMEFRAMES = ("1h", "4h", "1d")  # built from 1m (or 4h/1d from 1h) where every source bar is there
# the files a derived timeframe is built from, finest first: 1m when the symbol has one, else 1h
DERIVED_FROM: dict[str, tuple[str, ...]] = {"1h": ("1m",), "4h": ("1m", "1h"), "1d": ("1m", "1h")}


def from_source(
    src: np.ndarray, source_tf: str, timeframe: str, recorded: np.ndarray | None
) -> tuple[np.ndarray, dict[str, int]]:
    """Bars of `timeframe` for one symbol: the complete periods of its `source_tf` rows [n, 6]
    (1m, or 1h for 4h/1d), and the recorded rows [k, 6] (if any) before the source's span or where
    a period of it misses a source bar. Returns (rows sorted by open time, counts {"derived",
    "incomplete", "recorded"})."""
    step = timeframe_ms(source_tf)
    ts = src[:, 0].astype(np.int64)
    # volume in units of 1e-8 (integers in float64 sum exactly), as the local exchange sums it
    scaled = np.column_stack([src[:, :5], np.rint(src[:, 5] * 1e8)])
    out = derive_bars(scaled, source_tf, timeframe)
    out_ts = out[:, 0].astype(np.int64)
    period = timeframe_ms(timeframe)
    inside = (out_ts >= int(ts[0])) & (out_ts + period <= int(ts[-1]) + step)  # a whole period inside the source span
    rows = np.column_stack([out[:, :5], out[:, 5] / 1e8])[inside]
    lo, hi = -(-int(ts[0]) // period) * period, (int(ts[-1]) + step) // period * period  # whole periods inside the span
    incomplete = max(0, (hi - lo) // period - len(rows))
    kept = np.zeros((0, 6))
    if recorded is not None and len(recorded):
        rec_ts = recorded[:, 0].astype(np.int64)
        kept = recorded[~np.isin(rec_ts, rows[:, 0].astype(np.int64))]
    merged = np.vstack([kept, rows]) if len(kept) else rows
    merged = merged[np.argsort(merged[:, 0], kind="stable")]
    return merged, {"derived": len(rows), "incomplete": int(incomplete), "recorded": len(kept)}


def from_minutes(m1: np.ndarray, timeframe: str, recorded: np.ndarray | None) -> tuple[np.ndarray, dict[str, int]]:
    """`from_source` on a symbol's 1m rows."""
    return from_source(m1, "1m", timeframe, recorded)


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
    return a[max(0, end - n) : end]


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

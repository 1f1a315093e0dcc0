"""The research data set: years of many pairs as one aligned panel of bars.

`load_panel` reads the tape files of a folder (`<BASE>_<QUOTE>-<tf>.csv.gz`, as in
`../shared/data/hourly/` and what `sigd backfill` writes) and returns a `Panel`: one array per
OHLCV field, shape (T, S), on a regular time grid (every step of the timeframe from the first bar
to the last), NaN where a pair has no bar. Nothing is filled.

Cache: gzip CSV parsing is the slow part, so each file is converted once to a Parquet file under
the cache folder, keyed by the source's absolute path, size and mtime (a rewritten tape is read
again). The data folder itself is never written: it may be read-only. Default cache folder:
`$SIGD_CACHE_DIR/tapes` or `~/.cache/sigd/tapes`.

Derived bars: 4h and 1d bars come from a pair's 1h file, aligned to UTC (4h periods start at
00:00, 04:00, ...; days at 00:00 as on Binance), and exist only where every hour of the period
is present: open = first hour's open, high = max, low = min, close = last hour's close,
volume = sum. A period missing any hour is a gap (NaN), counted in `Panel.gaps`.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from daemon import log as logging
from daemon.domain import TIMEFRAME_MS, timeframe_ms
from daemon.research.replay import discover
from models.data import derive_bars
from models.panel import FIELDS, DatasetError, Panel, resample_panel

__all__ = ["DatasetError", "Panel", "aggregate", "default_cache_dir", "load_panel", "read_tape", "resample_panel"]

log = logging.get("dataset")

# timeframes that are built from the 1h file when the pair has one
DERIVED_FROM_1H: tuple[str, ...] = ("4h", "1d")
CACHE_VERSION = 1  # bump when the Parquet layout changes


def default_cache_dir() -> Path:
    """`$SIGD_CACHE_DIR/tapes`, else `~/.cache/sigd/tapes`."""
    root = os.environ.get("SIGD_CACHE_DIR")
    return (Path(root) if root else Path.home() / ".cache" / "sigd") / "tapes"


def _cache_path(source: Path, cache_dir: Path) -> Path:
    st = source.stat()
    key = hashlib.sha1(f"{source.resolve()}|{st.st_size}|{st.st_mtime_ns}|{CACHE_VERSION}".encode()).hexdigest()
    return cache_dir / f"{source.name.split('.')[0]}-{key[:20]}.parquet"


def _parse_csv(source: Path) -> pa.Table:
    types = {"timestamp": pa.int64(), **{f: pa.float64() for f in FIELDS}}
    table = pacsv.read_csv(
        source, convert_options=pacsv.ConvertOptions(column_types=types, include_columns=["timestamp", *FIELDS])
    )
    return table


def read_tape(source: Path, cache_dir: Path | None) -> dict[str, np.ndarray]:
    """One tape file as columns {timestamp, open, ...}, through the Parquet cache when it can be written."""
    cached = _cache_path(source, cache_dir) if cache_dir is not None else None
    if cached is not None and cached.exists():
        table = pq.read_table(cached)
    else:
        table = _parse_csv(source)
        if cached is not None:
            try:
                cached.parent.mkdir(parents=True, exist_ok=True)
                tmp = cached.with_suffix(f".tmp{os.getpid()}")
                pq.write_table(table, tmp, compression="zstd")
                tmp.replace(cached)  # atomic: a reader never sees half a file
            except OSError as e:  # a read-only cache only costs speed
                log.warning("dataset.cache_unwritable", cache_dir=str(cache_dir), error=str(e))
    cols = {name: table.column(name).to_numpy() for name in ("timestamp", *FIELDS)}
    cols["timestamp"] = cols["timestamp"].astype(np.int64)
    return cols


def _source_of(streams: set[tuple[str, str]], symbol: str, timeframe: str) -> str | None:
    """The file timeframe a pair's bars at `timeframe` come from (1h for 4h/1d when present)."""
    if timeframe in DERIVED_FROM_1H and (symbol, "1h") in streams:
        return "1h"
    if (symbol, timeframe) in streams:
        return timeframe
    return None


def aggregate(
    ts: np.ndarray, cols: dict[str, np.ndarray], source_tf: str, timeframe: str
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Bars at `source_tf` (sorted, gaps allowed) -> complete bars at `timeframe`, UTC-aligned
    (`models.data.derive_bars`, the rule training windows use too).

    A period exists only when every source bar in it is present; others are left out.
    """
    if timeframe_ms(timeframe) % timeframe_ms(source_tf):
        raise DatasetError(f"--timeframe {timeframe}: not a multiple of the source timeframe {source_tf}")
    if timeframe_ms(timeframe) == timeframe_ms(source_tf) or len(ts) == 0:
        return ts, cols
    out = derive_bars(np.column_stack([ts, *(cols[f] for f in FIELDS)]).astype(np.float64), source_tf, timeframe)
    return out[:, 0].astype(np.int64), {f: out[:, i + 1] for i, f in enumerate(FIELDS)}


def load_panel(
    data_dir: Path,
    timeframe: str = "1h",
    symbols: Sequence[str] | None = None,
    start_ms: int | None = None,
    end_ms: int | None = None,
    cache_dir: Path | None = None,
) -> Panel:
    """Every pair (or `symbols`) of `data_dir` at `timeframe` as one Panel on [start_ms, end_ms).

    Raises DatasetError (one line naming the flag) for a missing folder, an unknown symbol, a
    timeframe the files cannot give, or a span no pair covers.
    """
    data_dir = Path(data_dir)
    if timeframe not in TIMEFRAME_MS:
        raise DatasetError(f"--timeframe: unknown timeframe {timeframe!r}; known: {', '.join(TIMEFRAME_MS)}")
    if not data_dir.is_dir():
        raise DatasetError(f"--data: {data_dir} is not a folder")
    streams = set(discover(data_dir))
    if not streams:
        raise DatasetError(f"--data: {data_dir} holds no tape file (<BASE>_<QUOTE>-<tf>.csv.gz)")
    known = sorted({s for s, _ in streams})
    wanted = list(symbols) if symbols else known
    if missing := [s for s in wanted if s not in known]:
        raise DatasetError(f"--symbols: {', '.join(missing)} not in {data_dir} (it has {', '.join(known)})")
    sources = {s: _source_of(streams, s, timeframe) for s in wanted}
    if symbols:
        if cannot := [s for s, src in sources.items() if src is None]:
            have = sorted(tf for s2, tf in streams if s2 == cannot[0])
            raise DatasetError(
                f"--timeframe {timeframe}: {cannot[0]} has only {', '.join(have)} files in {data_dir}; "
                f"{timeframe} needs a {timeframe} file" + (" or a 1h file" if timeframe in DERIVED_FROM_1H else "")
            )
    else:
        wanted = [s for s in wanted if sources[s] is not None]
        if not wanted:
            have = sorted({tf for _, tf in streams})
            raise DatasetError(
                f"--timeframe {timeframe}: {data_dir} has only {', '.join(have)} files; "
                f"{timeframe} bars need {timeframe}" + (" or 1h" if timeframe in DERIVED_FROM_1H else "") + " files"
            )
    cache = cache_dir if cache_dir is not None else default_cache_dir()
    per_symbol: dict[str, tuple[np.ndarray, dict[str, np.ndarray]]] = {}
    for s in wanted:
        src = sources[s]
        assert src is not None
        cols = read_tape(data_dir / f"{s.replace('/', '_')}-{src}.csv.gz", cache)
        ts, bars = aggregate(cols["timestamp"], cols, src, timeframe)
        lo = np.searchsorted(ts, start_ms) if start_ms is not None else 0
        hi = np.searchsorted(ts, end_ms) if end_ms is not None else len(ts)
        per_symbol[s] = ts[lo:hi], {f: bars[f][lo:hi] for f in FIELDS}
    covering = [s for s in wanted if len(per_symbol[s][0])]
    if not covering:
        raise DatasetError(f"--from/--to: no pair in {data_dir} has a {timeframe} bar in the span [{start_ms}, {end_ms})")
    if symbols and (empty := [s for s in wanted if not len(per_symbol[s][0])]):
        raise DatasetError(f"--symbols: {', '.join(empty)} has no {timeframe} bar in the span [{start_ms}, {end_ms})")
    step = timeframe_ms(timeframe)
    first = min(int(per_symbol[s][0][0]) for s in covering)
    last = max(int(per_symbol[s][0][-1]) for s in covering)
    grid = np.arange(first, last + step, step, dtype=np.int64)
    arrays = {f: np.full((len(grid), len(covering)), np.nan) for f in FIELDS}
    gaps: dict[str, int] = {}
    for j, s in enumerate(covering):
        ts, bars = per_symbol[s]
        if np.any((ts - first) % step):
            raise DatasetError(f"--data: {s} {timeframe} bars are not aligned to the {timeframe} grid")
        rows = (ts - first) // step
        for f in FIELDS:
            arrays[f][rows, j] = bars[f]
        gaps[s] = int(rows[-1] - rows[0] + 1 - len(rows))
    log.info(
        "dataset.loaded",
        data_dir=str(data_dir),
        timeframe=timeframe,
        symbols=len(covering),
        bars=len(grid),
        gaps=sum(gaps.values()),
    )
    return Panel(
        timeframe, tuple(covering), grid, arrays["open"], arrays["high"], arrays["low"], arrays["close"], arrays["volume"], gaps
    )

"""Tape reading: a directory of `<BASE>_<QUOTE>-<tf>.csv[.gz]` files of recorded bars.

Each file has the header `timestamp,open,high,low,close,volume` (timestamp = open time, integer
ms UTC), rows strictly increasing and aligned to the timeframe. Values are kept as float64
arrays [n, 6] of (ts, open, high, low, close, volume); a malformed file raises `TapeError`
naming the file and the line.
"""

from __future__ import annotations

import csv
import functools
import gzip
import io
import math
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

HEADER = ["timestamp", "open", "high", "low", "close", "volume"]
TIMEFRAME_MS = {"1s": 1_000, "1m": 60_000, "1h": 3_600_000, "1d": 86_400_000}
_NAME = re.compile(r"^(?P<base>[A-Z0-9]+)_(?P<quote>[A-Z0-9]+)-(?P<tf>\w+)\.csv(\.gz)?$")


class TapeError(ValueError):
    """A tape file or directory is unusable; the message names the file and line."""


BUNDLED = {"2025-08": "tape", "2021-05": "tape_2021"}  # bundled tape sets, see each one's README


def bundled_tape_dir(period: str = "2025-08") -> Path:
    """A small real slice shipped inside the package: "2025-08" (BTC/USDT, ETH/USDT) or
    "2021-05" (BTC, ETH, XRP, ADA, DOGE, LTC against USDT)."""
    return Path(__file__).resolve().parent / BUNDLED[period]


@dataclass
class SymbolTape:
    """Recorded bars of one symbol: arrays [n, 6] keyed by timeframe."""

    base: str
    quote: str
    bars: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def symbol(self) -> str:
        """Binance market id, e.g. BTCUSDT."""
        return self.base + self.quote


def _open_text(path: Path) -> io.TextIOBase:
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


def _parse_row(path: Path, lineno: int, row: list[str], step: int, prev_ts: int | None) -> list[float]:
    where = f"{path}:{lineno}"
    if len(row) != 6:
        raise TapeError(f"{where}: expected 6 columns, got {len(row)}")
    try:
        ts = int(row[0])
        o, h, l, c, v = (float(x) for x in row[1:])
    except ValueError as e:
        raise TapeError(f"{where}: not a number ({e})") from None
    if not all(math.isfinite(x) for x in (o, h, l, c, v)):
        raise TapeError(f"{where}: non-finite value")
    if ts % step:
        raise TapeError(f"{where}: timestamp {ts} not aligned to {step} ms")
    if prev_ts is not None and ts <= prev_ts:
        raise TapeError(f"{where}: timestamp {ts} not after the previous row ({prev_ts})")
    if not (l <= min(o, c) and max(o, c) <= h and v >= 0 and l > 0):
        raise TapeError(f"{where}: OHLCV invariant broken (low<=open,close<=high, volume>=0, prices>0)")
    return [float(ts), o, h, l, c, v]


def read_tape_file(path: Path, timeframe: str) -> np.ndarray:
    """Read one tape file into a float64 array [n, 6]; raise `TapeError` on any bad row.

    A fast vectorized read; if it fails or any row breaks a rule, the file is read again row
    by row so that the error names the exact line.
    """
    # numpy, not pandas: the daemon's run path then never loads pandas (~100 MB of RSS).
    try:
        with _open_text(path) as f:
            if [h.strip() for h in f.readline().strip().split(",")] == HEADER:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", UserWarning)  # "no data": the row-by-row read says it
                    arr = np.loadtxt(f, delimiter=",", dtype=np.float64, ndmin=2)
                if _valid(arr, TIMEFRAME_MS[timeframe]):
                    return arr.reshape(-1, 6)
    except (ValueError, OSError, EOFError, UnicodeDecodeError):
        pass
    return _read_rows(path, timeframe)


def _valid(arr: np.ndarray, step: int) -> bool:
    if arr.ndim != 2 or arr.shape[1] != 6 or not np.isfinite(arr).all():
        return False
    ts, o, h, l, c, v = arr.T
    return bool(
        np.all(ts == np.rint(ts))
        and np.all(ts % step == 0)
        and np.all(np.diff(ts) > 0)
        and np.all(l <= np.minimum(o, c))
        and np.all(np.maximum(o, c) <= h)
        and np.all(v >= 0)
        and np.all(l > 0)
    )


def _read_rows(path: Path, timeframe: str) -> np.ndarray:
    step = TIMEFRAME_MS[timeframe]
    out: list[list[float]] = []
    prev: int | None = None
    try:
        with _open_text(path) as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if header is None or [h.strip() for h in header] != HEADER:
                raise TapeError(f"{path}:1: header must be {','.join(HEADER)}, got {header}")
            for lineno, row in enumerate(reader, start=2):
                if not row:
                    continue
                out.append(_parse_row(path, lineno, row, step, prev))
                prev = int(out[-1][0])
    except (OSError, EOFError, UnicodeDecodeError, csv.Error) as e:
        raise TapeError(f"{path}: unreadable ({e})") from None
    return np.asarray(out, dtype=np.float64).reshape(-1, 6)


def load_tape(directory: Path) -> dict[str, SymbolTape]:
    """Load every tape file of a directory, keyed by market id (BTCUSDT); each needs a 1m file.

    Loads are cached per directory content (name, size, mtime); the arrays are read-only.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise TapeError(f"{directory}: tape directory does not exist")
    files = tuple(
        (p.name, p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(directory.iterdir())
        if _NAME.match(p.name) and _NAME.match(p.name)["tf"] in TIMEFRAME_MS
    )  # type: ignore[index]
    return _load(directory.resolve(), files)


@functools.lru_cache(maxsize=8)
def _load(directory: Path, files: tuple[tuple[str, int, int], ...]) -> dict[str, SymbolTape]:
    tapes: dict[str, SymbolTape] = {}
    for name, _, _ in files:
        path = directory / name
        m = _NAME.match(name)
        assert m is not None  # filtered by load_tape
        if path.suffix != ".gz" and path.with_name(path.name + ".gz").exists():
            raise TapeError(f"{path}: both {path.name} and {path.name}.gz exist; keep one")
        tape = tapes.setdefault(m["base"] + m["quote"], SymbolTape(m["base"], m["quote"]))
        tape.bars[m["tf"]] = read_tape_file(path, m["tf"])
        tape.bars[m["tf"]].flags.writeable = False  # shared between servers through the cache
    if not tapes:
        raise TapeError(f"{directory}: no <BASE>_<QUOTE>-<tf>.csv[.gz] files (tf one of {', '.join(TIMEFRAME_MS)})")
    for tape in tapes.values():
        if len(tape.bars.get("1m", ())) == 0:
            raise TapeError(f"{directory}: {tape.base}_{tape.quote}-1m.csv[.gz] missing or empty (the replay needs 1m bars)")
    return tapes


SYNTHETIC_BASE = "SYN"  # synthetic symbols are SYN001/<quote>, SYN002/<quote>, ...


def synthetic_tapes(tapes: dict[str, SymbolTape], count: int, reference: str = "BTCUSDT") -> dict[str, SymbolTape]:
    """`count` SYNTHETIC symbols for load tests only, never for training: SYN<i> is the 1m tape
    of a real symbol (cycling through those other than `reference`) shifted i minutes later,
    so no two move together at the same instant. They have no 1h/1d rows of their own: the
    replay aggregates those from the shifted 1m bars."""
    sources = [t for key, t in sorted(tapes.items()) if key != reference] or list(tapes.values())
    out: dict[str, SymbolTape] = {}
    for i in range(1, count + 1):
        src = sources[(i - 1) % len(sources)]
        m1 = src.bars["1m"].copy()
        m1[:, 0] += i * TIMEFRAME_MS["1m"]
        m1.flags.writeable = False
        tape = SymbolTape(f"{SYNTHETIC_BASE}{i:03d}", src.quote, {"1m": m1})
        out[tape.symbol] = tape
    return out

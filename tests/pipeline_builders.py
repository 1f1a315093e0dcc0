"""Small builders of real-shaped tape data for the pipeline tests (random walks, tape files)."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from daemon.domain import timeframe_ms

START_MS = 1_722_470_400_000  # 2024-08-01T00:00Z, aligned to 1m, 1h and 1d


def random_bars(
    n: int, timeframe: str = "1m", *, seed: int = 0, start_ms: int = START_MS, price: float = 3000.0, vol: float = 0.002
) -> np.ndarray:
    """n valid bars [n, 6] of a random walk (ts, open, high, low, close, volume)."""
    rng = np.random.default_rng(seed)
    step = timeframe_ms(timeframe)
    start_ms -= start_ms % step
    close = price * np.exp(np.cumsum(rng.normal(0.0, vol, n)))
    open_ = np.concatenate([[price], close[:-1]])
    high = np.maximum(open_, close) * (1 + np.abs(rng.normal(0, vol / 2, n)))
    low = np.minimum(open_, close) * (1 - np.abs(rng.normal(0, vol / 2, n)))
    volume = rng.gamma(2.0, 50.0, n)
    ts = start_ms + step * np.arange(n)
    return np.stack([ts, open_, high, low, close, volume], axis=1)


def write_tape(directory: Path, symbol: str, timeframe: str, bars: np.ndarray, gz: bool = True) -> Path:
    """Write bars as a tape file `<BASE>_<QUOTE>-<tf>.csv[.gz]`; returns its path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{symbol.replace('/', '_')}-{timeframe}.csv{'.gz' if gz else ''}"
    lines = ["timestamp,open,high,low,close,volume"]
    lines += [",".join([str(int(r[0]))] + [repr(float(v)) for v in r[1:]]) for r in bars]
    text = "\n".join(lines) + "\n"
    if gz:
        with gzip.open(path, "wt") as fh:
            fh.write(text)
    else:
        path.write_text(text)
    return path


def write_market(directory: Path, n_1m: int = 3000, seed: int = 0) -> Path:
    """ETH/USDT and BTC/USDT 1m, 1h and 1d tapes ending together; returns the directory."""
    end = START_MS + n_1m * 60_000
    for k, (symbol, price) in enumerate((("ETH/USDT", 3000.0), ("BTC/USDT", 60000.0))):
        write_tape(directory, symbol, "1m", random_bars(n_1m, "1m", seed=seed + k, price=price))
        n_h = 400
        write_tape(
            directory,
            symbol,
            "1h",
            random_bars(n_h, "1h", seed=seed + 10 + k, price=price, start_ms=end - n_h * 3_600_000, vol=0.01),
        )
        n_d = 60
        write_tape(
            directory,
            symbol,
            "1d",
            random_bars(n_d, "1d", seed=seed + 20 + k, price=price, start_ms=end - n_d * 86_400_000, vol=0.03),
        )
    return directory

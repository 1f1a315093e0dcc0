"""Small builders of tape directories for the backtest tests (deterministic random walks)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from daemon.domain import timeframe_ms
from daemon.research.replay import write_tape

T0 = 1_747_699_200_000  # 2025-05-20T00:00:00Z


def walk(timeframe: str, n: int, *, start: int = T0, seed: int = 0, price: float = 100.0) -> np.ndarray:
    """n bars [n, 6] of a seeded random walk on the timeframe grid, OHLC consistent, prices on a
    0.01 tick and volumes on 0.0001 as an exchange records them (so the wire format is exact)."""
    rng = np.random.default_rng(seed)
    step = timeframe_ms(timeframe)
    close = np.round(price * np.exp(np.cumsum(rng.normal(0, 0.002, n))), 2)
    open_ = np.concatenate([[round(price, 2)], close[:-1]])
    high = np.round(np.maximum(open_, close) * (1 + rng.uniform(0, 0.001, n)), 2)
    low = np.round(np.minimum(open_, close) * (1 - rng.uniform(0, 0.001, n)), 2)
    high, low = np.maximum(high, np.maximum(open_, close)), np.minimum(low, np.minimum(open_, close))
    ts = start - start % step + np.arange(n) * step
    return np.column_stack([ts, open_, high, low, close, np.round(rng.uniform(1, 10, n), 4)])


def aggregate(rows: np.ndarray, timeframe: str) -> np.ndarray:
    """Aggregate finer bars into `timeframe` bars (complete groups only), as an exchange does."""
    step = timeframe_ms(timeframe)
    key = rows[:, 0].astype(np.int64) // step
    per_group = step // int(rows[1, 0] - rows[0, 0])
    out = []
    for k in np.unique(key):
        g = rows[key == k]
        if len(g) < per_group:
            continue
        out.append([k * step, g[0, 1], g[:, 2].max(), g[:, 3].min(), g[-1, 4], g[:, 5].sum()])
    return np.array(out)


def tape_dir(
    root: Path, minutes: int = 3000, *, symbol: str = "ETH/USDT", seed: int = 0, hours_before: int = 48, days_before: int = 30
) -> Path:
    """A data dir: symbol 1m/1h/1d and BTC/USDT 1m, with 1h/1d history reaching before the 1m span."""
    m = walk(
        "1m",
        minutes + hours_before * 60 + days_before * 1440,
        start=T0 - (days_before * 1440 + hours_before * 60) * 60_000,
        seed=seed,
    )
    write_tape(root, symbol, "1m", m[days_before * 1440 + hours_before * 60 :])
    write_tape(root, symbol, "1h", aggregate(m, "1h"))
    write_tape(root, symbol, "1d", aggregate(m, "1d"))
    btc = walk("1m", minutes, start=T0, seed=seed + 1, price=30_000.0)
    write_tape(root, "BTC/USDT", "1m", btc)
    return root


TINY_TARGET = {"horizon": 5, "threshold": 0.002, "neutral_zone": 0.001}
TEST_CONFIG = """
[exchange]
symbol = "ETH/USDT"
timeframes = ["1m", "1h", "1d"]
warmup_bars = 200

[strategy]
combine = "either"
cooldown_bars = 0
max_drawdown = 0.0
"""


def train_tiny(data: Path, out: Path, names: tuple[str, ...] = ("mtf_transformer", "cnn_lstm_attn"), **kw) -> Path:
    """Tiny artifacts (one short epoch each, a few seconds) trained on `data` into out/<name>."""
    from models.targets import TargetSpec
    from pipeline.spec import TrainSpec
    from pipeline.train import train

    for name in names:
        train(
            TrainSpec(
                name,
                preset="tiny",
                data_dirs=(str(data),),
                symbols=("ETH/USDT",),
                epochs=1,
                max_batches=2,
                device="cpu",
                target=TargetSpec(**TINY_TARGET),
                **kw,
            ),
            out / name,
        )
    return out


def set_threshold(art_dir: Path, value: float) -> None:
    """Give an artifact another confidence threshold (a barely trained tiny model's optimized
    threshold often trades never; the tests need one that trades)."""
    import json

    meta = json.loads((art_dir / "artifact.json").read_text())
    meta["threshold"]["value"] = value
    (art_dir / "artifact.json").write_text(json.dumps(meta))


_CACHE: dict[str, Path] = {}


def tiny_world() -> Path:
    """A tape dir (root/data) and tiny artifacts (root/models), built once per test run (shared by
    the xdist workers, tests/conftest.shared_dir), or once per process outside pytest."""
    if "root" not in _CACHE:
        from tests.conftest import shared_dir

        root = shared_dir("tiny-world", _build_world)
        if root is None:
            import atexit
            import shutil
            import tempfile

            root = Path(tempfile.mkdtemp(prefix="sigd-bt-"))
            atexit.register(shutil.rmtree, root, ignore_errors=True)
            _build_world(root)
        _CACHE["root"] = root
    return _CACHE["root"]


def _build_world(root: Path) -> None:
    tape_dir(root / "data", minutes=2400, days_before=30)
    train_tiny(root / "data", root / "models")
    for art in (root / "models").iterdir():
        set_threshold(art, 0.34)

"""A retrain on day one: a fresh state directory, history backfilled from the local exchange
over real ccxt into SQLite, then trained and scored; or ONE clear line when even that is short."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
from pathlib import Path
from typing import Any

from daemon import config as config_mod
from daemon.retrain.history import missing_ranges, need_for
from daemon.retrain.nightly import Retrainer
from daemon.store import Store
from tests.exchange_kit import DAY_MS, exchange_client, feed_config, local_exchange
from tests.retrain.test_retrain import RecordingSink

DAY12 = 1_754_956_800_000  # 2025-08-12T00:00Z: two days after the tiny artifacts' training end


def _cfg(write_config: Any, tmp_path: Path, **retrain: Any) -> config_mod.Config:
    values = {"artifacts_dir": str(tmp_path / "models"), "preset": "tiny", "epochs": 1, "max_batches": 2, **retrain}
    extra = "\n".join(f"{k} = {json.dumps(v)}" for k, v in values.items())
    return config_mod.load(
        write_config(
            f"""
        [store]
        path = "{tmp_path / "state" / "state.sqlite"}"
        [exchange]
        timeframes = ["1m", "1h"]
        [retrain]
    """
            + extra
        )
    )


def test_missing_ranges_merge_small_holes_and_cover_both_ends() -> None:
    step = 60_000
    stored = [i * step for i in range(10, 1500)] + [5000 * step]
    # the one bar at 5000 leaves holes closer than a page: fetched as one range
    assert missing_ranges(stored, 0, 6000 * step, step) == [(0, 10 * step), (1500 * step, 6000 * step)]
    assert missing_ranges([], 0, 3 * step, step) == [(0, 3 * step)]
    assert missing_ranges([0, step, 2 * step], 0, 3 * step, step) == []
    need = need_for(("ETH/USDT", "XRP/USDT"), ("1s", "1m", "1h"), ("BTC/USDT", "1m"), 2.0, 24.0)
    assert need.streams == (("ETH/USDT", "1m"), ("ETH/USDT", "1h"), ("XRP/USDT", "1m"), ("XRP/USDT", "1h"), ("BTC/USDT", "1m"))
    assert need.span_ms("1m") == 3 * DAY_MS and need.span_ms("1h") == 3 * DAY_MS + 64 * 3_600_000


async def test_day_one_retrain_backfills_history_then_trains(
    write_config: Any, tmp_path: Path, tiny_artifacts: dict[str, Path]
) -> None:
    cfg = _cfg(write_config, tmp_path, train_days=1.0, holdout_hours=6.0, timeout_s=240.0)
    cfg.path(cfg.store.path).parent.mkdir(parents=True)
    store = Store(cfg.path(cfg.store.path))
    serving = Path(shutil.copytree(tiny_artifacts["cnn_lstm_attn"], tmp_path / "serving"))
    sink, swaps = RecordingSink(), []

    async def swap(name: str, path: Path) -> None:
        swaps.append(name)

    async with local_exchange(DAY12, speed=1.0) as lx, exchange_client(lx, feed_config()) as client:
        await client.start()
        r = Retrainer(cfg, store, sink, swap, lambda: {"cnn_lstm_attn": serving}, source=client)
        [o] = await asyncio.wait_for(r.run_once(), 280)
    assert o.status in ("promoted", "rejected"), o  # trained and scored: the history was there
    # SQLite now holds the 1m history the retrain declared (1 day + 6 h), both symbols, and 1h context.
    assert store.count("bars", "symbol='ETH/USDT' AND timeframe='1m'") >= 30 * 60
    assert store.count("bars", "symbol='BTC/USDT' AND timeframe='1m'") >= 30 * 60
    assert store.count("bars", "symbol='ETH/USDT' AND timeframe='1h'") >= 30 + 64
    oldest = next(store.iter_bars("ETH/USDT", "1m"))
    assert oldest.ts <= DAY12 - 30 * 3_600_000
    assert store.model_rows("cnn_lstm_attn")[0]["status"] == ("current" if o.status == "promoted" else "rejected")


async def test_too_little_history_fails_with_one_clear_line(write_config: Any, tmp_path: Path) -> None:
    cfg = _cfg(write_config, tmp_path, train_days=30.0, holdout_hours=24.0)
    cfg.path(cfg.store.path).parent.mkdir(parents=True)
    store = Store(cfg.path(cfg.store.path))
    serving = tmp_path / "serving"
    serving.mkdir()
    sink = RecordingSink()

    async def swap(name: str, path: Path) -> None:
        raise AssertionError("nothing to swap")

    async with local_exchange(DAY12, speed=1.0) as lx, exchange_client(lx, feed_config()) as client:
        await client.start()
        r = Retrainer(cfg, store, sink, swap, lambda: {"m": serving}, source=client)
        [o] = await asyncio.wait_for(r.run_once(), 120)
    # The bundled tape starts on 2025-08-04: 7 days before the cut, every one of them backfilled.
    assert o.status == "failed"
    assert re.fullmatch(r"need 30 days of ETH/USDT 1m before the 24 h holdout, have (6\.9|7\.0)", o.reason), o.reason
    assert "\n" not in o.reason and "Error" not in o.reason and "Traceback" not in o.reason
    assert sink.events[-1][0] == "error" and o.reason in sink.events[-1][1]["message"]
    assert store.model_rows("m") == [] and serving.exists()


async def test_without_an_exchange_sqlite_is_all_there_is(write_config: Any, tmp_path: Path) -> None:
    cfg = _cfg(write_config, tmp_path, train_days=1.0)
    cfg.path(cfg.store.path).parent.mkdir(parents=True)
    store = Store(cfg.path(cfg.store.path))
    serving = tmp_path / "serving"
    serving.mkdir()

    async def swap(name: str, path: Path) -> None:
        raise AssertionError("nothing to swap")

    [o] = await Retrainer(cfg, store, RecordingSink(), swap, lambda: {"m": serving}).run_once()
    assert o.status == "failed" and o.reason == "no stored ETH/USDT 1m bars to retrain on and no exchange to ask"

"""The nightly retrain over every traded symbol, on a fresh state directory against the local
exchange's May 2021 tape: each symbol's history (and the reference's) backfilled into SQLite,
one model per family trained on all symbols' bars, the holdout scored on every symbol; a symbol
short of history fails the run with one line naming it, and the serving model stays."""

from __future__ import annotations

import asyncio
import gzip
import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from daemon import config as config_mod
from daemon.retrain.nightly import Retrainer
from daemon.store import Store
from tests.exchange_kit import TAPE_2021, exchange_client, feed_config, local_exchange
from tests.retrain.test_retrain import RecordingSink

START = 1_621_425_600_000  # 2021-05-19T12:00Z: 2.5 days of 1m bars on the tape before it
PAIR = ("ETH/USDT", "XRP/USDT")


def _cfg(write_config: Any, tmp_path: Path, symbols: tuple[str, ...], runner: str = "local", **retrain: Any) -> config_mod.Config:
    values = {
        "artifacts_dir": str(tmp_path / "models"),
        "preset": "tiny",
        "epochs": 1,
        "max_batches": 2,
        "train_days": 1.0,
        "holdout_hours": 6.0,
        "timeout_s": 240.0,
        **retrain,
    }
    extra = "\n".join(f"{k} = {json.dumps(v)}" for k, v in values.items())
    cfg = config_mod.load(
        write_config(
            f"""
        [store]
        path = "{tmp_path / "state" / "state.sqlite"}"
        [exchange]
        symbols = {json.dumps(list(symbols))}
        timeframes = ["1m", "1h"]
        [research]
        runner = "{runner}"
        [retrain]
    """
            + extra
        )
    )
    cfg.path(cfg.store.path).parent.mkdir(parents=True)
    return cfg


def _serving(tiny: Path, dest: Path) -> Path:
    """The shipped tiny model, marked as trained before the 2021 tape (its holdout is unseen)."""
    shutil.copytree(tiny, dest)
    meta = json.loads((dest / "artifact.json").read_text())
    meta["data"]["last_close_ts"] = 1_600_000_000_000
    (dest / "artifact.json").write_text(json.dumps(meta))
    return dest


@pytest.mark.parametrize("runner", ["local", "ray"])
async def test_every_traded_symbol_is_backfilled_trained_on_and_scored(
    runner: str, write_config: Any, tmp_path: Path, tiny_artifacts: dict[str, Path], request: pytest.FixtureRequest
) -> None:
    if runner == "ray":
        request.getfixturevalue("ray_local")  # the session's local Ray: all jobs of a step at once
    cfg = _cfg(write_config, tmp_path, PAIR, runner, min_improvement=-1e9)  # promote whatever scores: inspect it
    store = Store(cfg.path(cfg.store.path))
    serving = _serving(tiny_artifacts["cnn_lstm_attn"], tmp_path / "serving")
    sink, swaps = RecordingSink(), []

    async def swap(name: str, path: Path) -> None:
        swaps.append((name, path))

    async with local_exchange(START, speed=1.0, tape=TAPE_2021) as lx, exchange_client(lx, feed_config()) as client:
        await client.start()
        r = Retrainer(cfg, store, sink, swap, lambda: {"cnn_lstm_attn": serving}, source=client)
        [o] = await asyncio.wait_for(r.run_once(), 280)
    assert o.status == "promoted", o
    assert r.runner.name == ("ray" if runner == "ray" else "local")
    # SQLite holds what the retrain declared (1 day + 6 h of 1m, 1h context) for BOTH traded symbols.
    for symbol in (*PAIR, "BTC/USDT"):
        assert store.count("bars", f"symbol='{symbol}' AND timeframe='1m'") >= 30 * 60, symbol
        assert next(store.iter_bars(symbol, "1m")).ts <= START - 30 * 3_600_000, symbol
    for symbol in PAIR:
        assert store.count("bars", f"symbol='{symbol}' AND timeframe='1h'") >= 30 + 64, symbol
    # One model for the family, trained on both symbols' samples (the primary first).
    meta = json.loads((Path(o.path) / "artifact.json").read_text())
    assert meta["samples"]["symbols"] == list(PAIR) and meta["train_spec"]["symbols"] == list(PAIR)
    assert meta["data"]["last_close_ts"] <= START - 6 * 3_600_000 + 60_000  # nothing of the holdout
    # The holdout was scored on every symbol; the model's score is their mean.
    metrics = json.loads(store.current_model("cnn_lstm_attn")["metrics"])
    for side in ("new", "current"):
        per = metrics[side]["symbols"]
        assert set(per) == set(PAIR)
        assert abs(metrics[side]["score"] - sum(per.values()) / 2) < 1e-9
    assert metrics["bars"] >= 2 * 5 * 60  # both symbols' 6 h holdouts (bars without a next one dropped)
    assert swaps == [("cnn_lstm_attn", Path(o.path))]


def _short_tape(dest: Path, symbol: str, keep_from_ms: int) -> Path:
    """The 2021 tape with `symbol`'s 1m bars only from `keep_from_ms` on (a newly listed coin)."""
    shutil.copytree(TAPE_2021, dest)
    path = dest / f"{symbol.replace('/', '_')}-1m.csv.gz"
    with gzip.open(path, "rt") as fh:
        header, *rows = fh.read().splitlines()
    kept = [r for r in rows if int(r.split(",", 1)[0]) >= keep_from_ms]
    with gzip.open(path, "wt") as fh:
        fh.write("\n".join([header, *kept]) + "\n")
    return dest


async def test_a_symbol_short_of_history_fails_the_run_naming_it(write_config: Any, tmp_path: Path) -> None:
    cfg = _cfg(write_config, tmp_path, ("ETH/USDT", "DOGE/USDT"))
    store = Store(cfg.path(cfg.store.path))
    serving = tmp_path / "serving"
    serving.mkdir()
    (serving / "artifact.json").write_text("{}")
    sink = RecordingSink()
    tape = _short_tape(tmp_path / "tape", "DOGE/USDT", START - 18 * 3_600_000)  # 12 h before the 6 h holdout

    async def swap(name: str, path: Path) -> None:
        raise AssertionError("nothing to swap")

    async with local_exchange(START, speed=1.0, tape=tape) as lx, exchange_client(lx, feed_config()) as client:
        await client.start()
        r = Retrainer(cfg, store, sink, swap, lambda: {"m": serving}, source=client)
        [o] = await asyncio.wait_for(r.run_once(), 120)
    assert o.status == "failed"
    assert re.fullmatch(r"need 1 days of DOGE/USDT 1m before the 6 h holdout, have 0\.5", o.reason), o.reason
    assert sink.events[-1][0] == "error" and o.reason in sink.events[-1][1]["message"]
    assert store.model_rows("m") == [] and (serving / "artifact.json").read_text() == "{}"
    # ETH's history was there: only DOGE was short.
    assert store.count("bars", "symbol='ETH/USDT' AND timeframe='1m'") >= 30 * 60

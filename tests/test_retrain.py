"""Overnight retraining with real parts: SQLite history, tape export, real subprocesses, the
registry, atomic installs; champion/challenger with tiny artifacts trained by the real code."""

from __future__ import annotations

import asyncio
import csv
import json
from pathlib import Path
from typing import Any, Mapping

import pytest

from daemon import config as config_mod
from daemon.domain import Bar
from daemon.retrain import Retrainer, export_tapes, install_artifact, prune_artifacts
from daemon.store import Store


class RecordingSink:
    """An EventSink that keeps what it was given (the outbox's contract, in memory)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def publish(self, type: str, payload: Mapping[str, Any], event_id: str | None = None) -> str:
        self.events.append((type, dict(payload)))
        return event_id or f"e{len(self.events)}"


def _bars(symbol: str, tf: str, start: int, n: int, step: int, price: float = 100.0) -> list[Bar]:
    out = []
    for i in range(n):
        p = price + (i % 7) - 3
        out.append(Bar(symbol, tf, start + i * step, p, p + 1, p - 1, p + 0.5, 10.0 + i % 3))
    return out


@pytest.fixture
def cfg(write_config, tmp_path):
    def make(**retrain: Any) -> config_mod.Config:
        extra = "\n".join(f"{k} = {json.dumps(v)}" for k, v in retrain.items())
        return config_mod.load(write_config(f"""
            [store]
            path = "{tmp_path / 'state.sqlite'}"
            [exchange]
            timeframes = ["1m", "1h"]
            [retrain]
            artifacts_dir = "{tmp_path / 'models'}"
            holdout_hours = 2.0
            {extra}
        """))

    return make


def test_export_writes_only_bars_closed_by_the_cut(cfg, tmp_path: Path) -> None:
    c = cfg()
    store = Store(c.path(c.store.path))
    t0 = 1_754_265_600_000  # 2025-08-04 00:00 UTC
    store.add_bars(_bars("ETH/USDT", "1m", t0, 300, 60_000))
    store.add_bars(_bars("ETH/USDT", "1h", t0, 5, 3_600_000))
    store.add_bars(_bars("BTC/USDT", "1m", t0, 300, 60_000, price=60_000.0))
    cut = t0 + 2 * 3_600_000 + 30_000  # mid-minute: the forming 1m bar and the 2nd hour bar are out
    export_tapes(store, c, tmp_path / "tape", end_ms=cut)
    rows = {p.name: list(csv.reader(p.open())) for p in (tmp_path / "tape").iterdir()}
    assert set(rows) == {"ETH_USDT-1m.csv", "ETH_USDT-1h.csv", "BTC_USDT-1m.csv"}
    assert rows["ETH_USDT-1m.csv"][0] == ["timestamp", "open", "high", "low", "close", "volume"]
    assert int(rows["ETH_USDT-1m.csv"][-1][0]) == t0 + 119 * 60_000  # closes exactly at 2h
    assert len(rows["ETH_USDT-1m.csv"]) == 1 + 120 and len(rows["BTC_USDT-1m.csv"]) == 1 + 120
    assert [int(r[0]) for r in rows["ETH_USDT-1h.csv"][1:]] == [t0, t0 + 3_600_000]
    assert float(rows["ETH_USDT-1m.csv"][1][4]) == store.latest_bars("ETH/USDT", "1m", 300)[0].close


def test_install_is_a_rename_and_prune_keeps_current_and_previous(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.sqlite")
    parent = tmp_path / "models" / "m"
    paths = []
    for v in ("v1", "v2", "v3"):
        src = tmp_path / f"src-{v}"
        src.mkdir()
        (src / "artifact.json").write_text(json.dumps({"version": v}))
        dest = install_artifact(src, parent, v)
        assert dest == parent / v and json.loads((dest / "artifact.json").read_text())["version"] == v
        store.record_model("m", v, str(dest), "current", "{}", 0)
        paths.append(dest)
    assert not list(parent.glob(".*.tmp"))
    prune_artifacts(store, parent, "m")
    assert [p.exists() for p in paths] == [False, True, True]  # retired one gone; previous kept for rollback
    assert [r["status"] for r in store.model_rows("m")] == ["current", "previous", "retired"]
    # Installing a version that exists never overwrites the serving directory.
    again = install_artifact(tmp_path / "src-v3", parent, "v3")
    assert again != paths[2] and paths[2].exists()


async def test_a_hung_retrain_is_killed_and_the_current_model_keeps_serving(cfg, tmp_path: Path) -> None:
    c = cfg(timeout_s=0.5)
    store = Store(c.path(c.store.path))
    t0 = 1_754_265_600_000
    store.add_bars(_bars("ETH/USDT", "1m", t0, 600, 60_000))
    current = tmp_path / "shipped" / "m"
    current.mkdir(parents=True)
    (current / "artifact.json").write_text("{}")
    sink, swaps = RecordingSink(), []

    async def swap(name: str, path: Path) -> None:
        swaps.append((name, path))

    # A "python" that never finishes stands in for a training run that hangs.
    hang = tmp_path / "hang.sh"
    hang.write_text("#!/bin/sh\nexec sleep 30\n")
    hang.chmod(0o755)
    r = Retrainer(c, store, sink, swap, lambda: {"m": current}, python=str(hang))
    [outcome] = await asyncio.wait_for(r.run_once(), 10)
    assert outcome.status == "failed" and "timed out" in outcome.reason
    assert swaps == [] and store.current_model("m") is None
    assert [t for t, _ in sink.events] == ["error"] and "retrain of m failed" in sink.events[0][1]["message"]
    assert not list((tmp_path / "models" / ".staging").iterdir())  # staging cleaned up


async def test_a_crashing_retrain_alerts_and_changes_nothing(cfg, tmp_path: Path) -> None:
    c = cfg()
    store = Store(c.path(c.store.path))
    store.add_bars(_bars("ETH/USDT", "1m", 1_754_265_600_000, 600, 60_000))
    current = tmp_path / "shipped" / "m"
    current.mkdir(parents=True)
    crash = tmp_path / "crash.sh"
    crash.write_text("#!/bin/sh\necho 'Traceback: boom' >&2\nkill -SEGV $$\n")
    crash.chmod(0o755)
    sink = RecordingSink()

    async def swap(name: str, path: Path) -> None:
        raise AssertionError("a crashed retrain must not swap")

    r = Retrainer(c, store, sink, swap, lambda: {"m": current}, python=str(crash))
    [outcome] = await r.run_once()
    assert outcome.status == "failed" and "exited with -11" in outcome.reason and "boom" in outcome.reason
    assert sink.events[0][0] == "error" and store.model_rows("m") == []


async def test_nothing_unseen_means_no_retrain(cfg, tmp_path: Path) -> None:
    c = cfg()
    store = Store(c.path(c.store.path))
    t0 = 1_754_265_600_000
    store.add_bars(_bars("ETH/USDT", "1m", t0, 600, 60_000))
    current = tmp_path / "shipped" / "m"
    current.mkdir(parents=True)
    # The current model trained up to the newest stored bar: no data neither has seen.
    (current / "artifact.json").write_text(json.dumps({"data": {"train_end_ms": t0 + 599 * 60_000}}))
    sink = RecordingSink()

    async def swap(name: str, path: Path) -> None:
        raise AssertionError("no swap expected")

    [outcome] = await Retrainer(c, store, sink, swap, lambda: {"m": current}).run_once()
    assert outcome.status == "failed" and "nothing unseen" in outcome.reason

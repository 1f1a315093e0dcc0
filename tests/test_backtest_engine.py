"""The backtest drives the real engine with real (tiny) models: batched = bar by bar, no look-ahead,
degraded data runs that say so, and the command's report."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from daemon import backtest, config, replay
from daemon.cli import main
from daemon.report import curves, iso
from tests.backtest_builders import T0, TEST_CONFIG, tiny_world

MIN = 60_000
FROM, TO = T0 + 300 * MIN, T0 + 600 * MIN  # 300 trigger bars


@pytest.fixture(scope="module")
def world() -> Path:
    return tiny_world()


@pytest.fixture
def cfg(write_config) -> config.Config:
    return config.load(write_config(TEST_CONFIG))


def _plan(cfg: config.Config, data: Path, start: int = FROM, end: int = TO) -> backtest.Plan:
    tape = replay.load_streams(data, backtest.live_order(cfg), ("ETH/USDT", "1m"))
    return backtest.make_plan(cfg, tape, iso(start), iso(end))


def _predictors(world: Path) -> dict:
    return backtest.load_predictors(backtest.artifact_dirs(config.Config(), str(world / "models")))


def test_batched_inference_gives_the_bar_by_bar_run(world: Path, cfg: config.Config) -> None:
    plan = _plan(cfg, world / "data")
    fast = backtest.run_backtest(plan, _predictors(world), batch=True)
    slow = backtest.run_backtest(plan, _predictors(world), batch=False)
    assert len(fast.signals) > 3 and len(fast.fills) > 3  # the comparison has something to compare
    assert _decisions(fast.signals) == _decisions(slow.signals)
    assert [s["confidence"] for s in fast.signals] == pytest.approx([s["confidence"] for s in slow.signals], abs=1e-6)
    assert fast.fills == slow.fills
    for a, b in zip(fast.models, slow.models, strict=True):
        assert a.name == b.name and len(a.bar_ts) == 300
        assert np.array_equal(a.bar_ts, b.bar_ts) and np.array_equal(a.side, b.side)
        assert np.allclose(a.probs, b.probs, rtol=0, atol=1e-6)  # float32 rounding of a batched pass


def test_bars_after_t_change_nothing_up_to_t(world: Path, cfg: config.Config, tmp_path: Path) -> None:
    t = FROM + 150 * MIN
    changed = tmp_path / "data"
    shutil.copytree(world / "data", changed)
    rng = np.random.default_rng(5)
    for path in changed.iterdir():
        tf = path.name.split("-")[1].split(".")[0]
        rows = replay.load_tape(path, tf)
        after = rows[:, 0] >= t  # every bar that opens at or after t, in every stream
        rows[after, 1:5] *= rng.uniform(0.9, 1.1, (int(after.sum()), 1))  # OHLC kept consistent
        replay.write_tape(changed, *_stream_of(path), rows)
    a = backtest.run_backtest(_plan(cfg, world / "data"), _predictors(world))
    b = backtest.run_backtest(_plan(cfg, changed), _predictors(world))
    assert [s for s in a.signals if s["bar_ts"] < t] == [s for s in b.signals if s["bar_ts"] < t]
    assert [f for f in a.fills if f.ts < t] == [f for f in b.fills if f.ts < t]
    for ma, mb in zip(a.models, b.models):
        keep = ma.bar_ts < t
        assert np.array_equal(ma.probs[keep], mb.probs[mb.bar_ts < t])
    before = a.bars[:, 0] < t  # marked at closes up to t, which no changed bar reaches
    eq_a, eq_b = curves(a)["strategy"][0], curves(b)["strategy"][0]
    assert np.array_equal(eq_a[before], eq_b[before])
    assert not np.array_equal(a.bars, b.bars)  # the bars after t did change
    assert a.signals != b.signals or not np.array_equal(eq_a, eq_b)  # and the run noticed


def _decisions(signals: list[dict]) -> list[tuple]:
    """Signals without their confidence (a float32 batched pass moves it by ~1e-7)."""
    return [(s["bar_ts"], s["strategy"], s["side"], s["price"], s["reasons"]) for s in signals]


def _stream_of(path: Path) -> tuple[str, str]:
    pair, tf = path.name.split(".")[0].rsplit("-", 1)
    return pair.replace("_", "/"), tf

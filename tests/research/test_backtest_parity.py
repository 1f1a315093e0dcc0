"""Parity: on the same bars, `sigd backtest` gives the signals `sigd run` stores when it trades
live against the local exchange replaying those bars (real daemon process, real ccxt, tiny
models, a short accelerated replay)."""

from __future__ import annotations

import asyncio
import json
import signal
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from daemon.research import backtest
from daemon import config
from daemon.research import replay
from daemon.research.report import iso
from daemon.store import Store
from tests.backtest_builders import T0, TEST_CONFIG, tiny_world
from tests.daemon_harness import DaemonProcess, free_port

MIN = 60_000
LIVE_BARS = 25  # trigger bars the daemon decides live before it is stopped


def _control(port: int, action: str, body: dict | None = None) -> dict:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/_control/{action}", method="POST" if body is not None else "GET",
                                 data=json.dumps(body).encode() if body is not None else None)
    with urllib.request.urlopen(req, timeout=5) as resp:
        return json.loads(resp.read())


def _live_config(world: Path, tmp: Path, lx_port: int) -> str:
    models = world / "models"
    # The replay clock starts almost frozen, so no bar closes while the daemon starts up and warms
    # up; the test speeds it up once every stream is subscribed.
    return TEST_CONFIG + f"""
[local_exchange]
port = {lx_port}
tape = "{world / 'data'}"
start = "{iso(T0 + 400 * MIN + 30_000)}"
speed = 0.001

[store]
path = "{tmp / 'live.sqlite'}"

[log]
format = "json"

[models]
device = "cpu"
paths = {{ mtf_transformer = "{models / 'mtf_transformer'}", cnn_lstm_attn = "{models / 'cnn_lstm_attn'}" }}

[api]
enabled = false

[retrain]
enabled = false

[alerts]
daily_summary_utc = ""

[alerts.signal_ws]
enabled = false
"""


async def _run_live(cfg_path: Path, tmp: Path, lx_port: int) -> None:
    daemon = DaemonProcess(cfg_path, tmp, {}).start()
    try:
        await daemon.wait_ready(timeout=120)
        await daemon.wait_for(lambda: len(_control(lx_port, "status", None)["streams"]) == 4, 30, "4 subscriptions")
        _control(lx_port, "set_speed", {"speed": 120.0})  # one 1m bar every half second
        store = Store(tmp / "live.sqlite")
        try:
            await daemon.wait_for(lambda: len({r[0] for r in store.prediction_rows("ETH/USDT")}) >= LIVE_BARS,
                                  120, f"{LIVE_BARS} live decisions")
        finally:
            store.close()
        daemon.signal(signal.SIGTERM)
        assert await daemon.wait_exit(30) == 0
    finally:
        daemon.close()


@pytest.mark.slow
async def test_backtest_signals_equal_the_live_daemons(tmp_path: Path, write_config) -> None:
    world = tiny_world()
    lx_port = free_port()
    cfg_path = write_config(_live_config(world, tmp_path, lx_port), name="live.toml")
    await _run_live(cfg_path, tmp_path, lx_port)

    live = Store(tmp_path / "live.sqlite")
    predictions = live.prediction_rows("ETH/USDT")
    live_signals = [s for _, s in reversed(live.signals(limit=10_000))]
    live.close()
    decided = sorted({r[0] for r in predictions})
    assert decided == list(range(decided[0], decided[-1] + MIN, MIN)), "the live engine skipped a decision"

    cfg = config.load(cfg_path)  # the live daemon's own config: same models, same order
    tape = replay.load_streams(world / "data", backtest.live_order(cfg), ("ETH/USDT", "1m"))
    plan = backtest.make_plan(cfg, tape, iso(decided[0]), iso(decided[-1] + MIN))
    predictors = backtest.load_predictors(backtest.artifact_dirs(cfg, None))
    result = await asyncio.to_thread(backtest.run_backtest, plan, predictors)  # it runs its own event loop

    assert len(live_signals) >= 2  # something to compare
    assert [(s.bar_ts, s.strategy, int(s.side), s.price, "; ".join(s.reasons)) for s in live_signals] == \
        [(s["bar_ts"], s["strategy"], s["side"], s["price"], s["reasons"]) for s in result.signals]
    assert [s.confidence for s in live_signals] == pytest.approx([s["confidence"] for s in result.signals], abs=1e-6)
    back = {(int(t), m.name): p for m in result.models for t, p in zip(m.bar_ts, m.probs)}
    assert len(back) == len(predictions)
    for bar_ts, model, _v, *probs in (r[:6] for r in predictions):
        assert np.allclose(back[(bar_ts, model)], probs, atol=1e-6), (bar_ts, model)

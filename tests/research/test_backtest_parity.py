"""Parity: on the same bars, `sigd backtest` gives the signals `sigd run` stores when it trades
live against the local exchange replaying those bars (real daemon process, real ccxt, tiny
models, a short accelerated replay), for three symbols decided in one engine. SOL/USDT and
XRP/USDT here are synthetic random walks named like real pairs, for this test only."""

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
from tests.backtest_builders import T0, TEST_CONFIG, tape_dir, tiny_world
from tests.daemon_harness import DaemonProcess, free_port

MIN = 60_000
LIVE_BARS = 25  # trigger bars the daemon decides live before it is stopped
SYMBOLS = ("ETH/USDT", "SOL/USDT", "XRP/USDT")


def three_symbol_data(world: Path, tmp: Path) -> Path:
    """The tiny world's tape plus two more symbols (their own seeded walks over the same span)."""
    import shutil

    data = Path(shutil.copytree(world / "data", tmp / "data"))
    for seed, symbol in enumerate(SYMBOLS[1:], start=7):
        scratch = tape_dir(tmp / f"scratch-{seed}", 2400, symbol=symbol, seed=seed, days_before=30)
        for f in scratch.glob(symbol.replace("/", "_") + "-*"):
            shutil.copy(f, data / f.name)
    return data


def _control(port: int, action: str, body: dict | None = None) -> dict:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/_control/{action}", method="POST" if body is not None else "GET",
                                 data=json.dumps(body).encode() if body is not None else None)
    with urllib.request.urlopen(req, timeout=5) as resp:
        return json.loads(resp.read())


def _live_config(world: Path, data: Path, tmp: Path, lx_port: int) -> str:
    models = world / "models"
    # The replay clock starts almost frozen, so no bar closes while the daemon starts up and warms
    # up; the test speeds it up once every stream is subscribed.
    symbols = ", ".join(f'"{s}"' for s in SYMBOLS)
    return TEST_CONFIG.replace('symbol = "ETH/USDT"', f"symbols = [{symbols}]") + f"""
[local_exchange]
port = {lx_port}
tape = "{data}"
start = "{iso(T0 + 400 * MIN + 30_000)}"
speed = 0.001

[store]
path = "{tmp / 'live.sqlite'}"

[log]
format = "json"

[models]
device = "cpu"
trade_only_validated = false  # the tiny test models carry no validation verdict
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
        streams = 3 * len(SYMBOLS) + 1
        await daemon.wait_for(lambda: len(_control(lx_port, "status", None)["streams"]) == streams, 30,
                              f"{streams} subscriptions")
        _control(lx_port, "set_speed", {"speed": 120.0})  # one 1m bar every half second
        store = Store(tmp / "live.sqlite")
        try:
            await daemon.wait_for(lambda: min(len({r[0] for r in store.prediction_rows(s)}) for s in SYMBOLS)
                                  >= LIVE_BARS, 120, f"{LIVE_BARS} live decisions of every symbol")
        finally:
            store.close()
        daemon.signal(signal.SIGTERM)
        assert await daemon.wait_exit(30) == 0
    finally:
        daemon.close()


@pytest.mark.slow
async def test_backtest_signals_equal_the_live_daemons(tmp_path: Path, write_config) -> None:
    world = tiny_world()
    data = three_symbol_data(world, tmp_path)
    lx_port = free_port()
    cfg_path = write_config(_live_config(world, data, tmp_path, lx_port), name="live.toml")
    await _run_live(cfg_path, tmp_path, lx_port)

    live = Store(tmp_path / "live.sqlite")
    predictions = {s: live.prediction_rows(s) for s in SYMBOLS}
    live_signals = {s: [sig for _, sig in reversed(live.signals(symbol=s, limit=10_000))] for s in SYMBOLS}
    live_fills = {f.client_order_id: f for f in live.fills()}
    live.close()
    # The period every symbol decided live, without a gap (the daemon stops mid-cycle).
    first = max(min(r[0] for r in rows) for rows in predictions.values())
    last = min(max(r[0] for r in rows) for rows in predictions.values())
    for rows in predictions.values():
        decided = sorted({r[0] for r in rows if first <= r[0] <= last})
        assert decided == list(range(first, last + MIN, MIN)), "the live engine skipped a decision"

    cfg = config.load(cfg_path)  # the live daemon's own config: same models, same order, three symbols
    tape = replay.load_streams(data, backtest.live_order(cfg), ("ETH/USDT", "1m"))
    plan = backtest.make_plan(cfg, tape, iso(first), iso(last + MIN))
    predictors = backtest.load_predictors(backtest.artifact_dirs(cfg, None))
    results = await asyncio.to_thread(backtest.run_portfolio, plan, predictors)  # it runs its own event loop

    assert [r.symbol for r in results] == list(SYMBOLS)
    assert sum(len(v) for v in live_signals.values()) >= 3  # something to compare
    for symbol, result in zip(SYMBOLS, results):
        mine = [s for s in live_signals[symbol] if first <= s.bar_ts <= last]
        assert [(s.bar_ts, s.strategy, int(s.side), s.price, "; ".join(s.reasons)) for s in mine] == \
            [(s["bar_ts"], s["strategy"], s["side"], s["price"], s["reasons"]) for s in result.signals], symbol
        assert [s.confidence for s in mine] == pytest.approx([s["confidence"] for s in result.signals], abs=1e-6)
        # Live paper orders fill at the quote (bid/ask around the replay price), the backtest at
        # the next bar's open: the same orders, prices apart by at most the spread (+ a tape tick).
        spread, tick = cfg.local_exchange.spread_bps / 1e4, 0.01
        paired = [(f, live_fills[f.client_order_id]) for f in result.fills if f.client_order_id in live_fills]
        assert paired, symbol
        for back_fill, live_fill in paired:
            # sizes follow equity, and equity the earlier fill prices: equal to a fraction of the spread
            assert back_fill.side == live_fill.side and back_fill.amount == pytest.approx(live_fill.amount, rel=1e-3)
            assert abs(live_fill.price - back_fill.price) <= spread * back_fill.price + tick, (symbol, back_fill, live_fill)
        back = {(int(t), m.name): p for m in result.models for t, p in zip(m.bar_ts, m.probs)}
        rows = [r for r in predictions[symbol] if first <= r[0] <= last]
        assert len(back) == len(rows)
        for bar_ts, model, _v, *probs in (r[:6] for r in rows):
            assert np.allclose(back[(bar_ts, model)], probs, atol=1e-6), (symbol, bar_ts, model)


def test_a_portfolio_backtest_precomputed_per_symbol_equals_the_engine_asking_cycle_by_cycle(
        tmp_path: Path, write_config) -> None:
    world = tiny_world()
    data = three_symbol_data(world, tmp_path)
    models = world / "models"
    symbols = ", ".join(f'"{s}"' for s in SYMBOLS)
    cfg = config.load(write_config(TEST_CONFIG.replace('symbol = "ETH/USDT"', f"symbols = [{symbols}]") + f"""
[models]
device = "cpu"
trade_only_validated = false  # the tiny test models carry no validation verdict
paths = {{ mtf_transformer = "{models / 'mtf_transformer'}", cnn_lstm_attn = "{models / 'cnn_lstm_attn'}" }}
"""))
    tape = replay.load_streams(data, backtest.live_order(cfg), ("ETH/USDT", "1m"))
    plan = backtest.make_plan(cfg, tape, iso(T0 + 400 * MIN), iso(T0 + 460 * MIN))
    predictors = backtest.load_predictors(backtest.artifact_dirs(cfg, None))
    tables = backtest.run_portfolio(plan, predictors, batch=True, workers=1)
    cycles = backtest.run_portfolio(plan, predictors, batch=False)
    assert [r.symbol for r in tables] == [r.symbol for r in cycles] == list(SYMBOLS)
    assert sum(len(r.signals) for r in cycles) >= 3
    for a, b in zip(tables, cycles):
        assert [(s["bar_ts"], s["strategy"], s["side"], s["price"]) for s in a.signals] == \
            [(s["bar_ts"], s["strategy"], s["side"], s["price"]) for s in b.signals], a.symbol
        assert [s["confidence"] for s in a.signals] == pytest.approx([s["confidence"] for s in b.signals], abs=1e-5)

"""Parity: on the same bars, `sigd backtest` gives the signals `sigd run` stores when it trades
live against the local exchange replaying those bars (real daemon process, real ccxt, tiny
models, a short accelerated replay), for three symbols decided in one engine. SOL/USDT and
XRP/USDT here are synthetic random walks named like real pairs, for this test only."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from daemon import config
from daemon.research import backtest, replay
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
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/_control/{action}",
        method="POST" if body is not None else "GET",
        data=json.dumps(body).encode() if body is not None else None,
    )
    with urllib.request.urlopen(req, timeout=5) as resp:
        return json.loads(resp.read())


def _live_config(world: Path, data: Path, tmp: Path, lx_port: int) -> str:
    # The replay clock starts almost frozen, so no bar closes while the daemon starts up and warms
    # up; the test speeds it up once every stream is subscribed.
    return live_sections(world, data, tmp, lx_port, SYMBOLS, T0 + 400 * MIN + 30_000, "live.sqlite")


def live_sections(
    world: Path, data: Path, tmp: Path, lx_port: int, symbols: tuple[str, ...], start_ms: int, store: str, extra: str = ""
) -> str:
    """The test config with the live daemon's sections: local exchange (clock almost frozen
    from `start_ms`), state file, tiny models that may trade, no API, no retrain."""
    models = world / "models"
    listed = ", ".join(f'"{s}"' for s in symbols)
    return (
        TEST_CONFIG.replace('symbol = "ETH/USDT"', f"symbols = [{listed}]")
        + extra
        + f"""
[local_exchange]
port = {lx_port}
tape = "{data}"
start = "{iso(start_ms)}"
speed = 0.001

[store]
path = "{tmp / store}"

[log]
format = "json"

[models]
device = "cpu"
trade_only_validated = false  # the tiny test models carry no validation verdict
paths = {{ mtf_transformer = "{models / "mtf_transformer"}", cnn_lstm_attn = "{models / "cnn_lstm_attn"}" }}

[api]
enabled = false

[retrain]
enabled = false

[alerts]
daily_summary_utc = ""

[alerts.signal_ws]
enabled = false
"""
    )


def replayed_markets(data: Path, start_ms: int, cfg: config.Config) -> dict:
    """The replayed prices the live daemon traded against (the same tape and seed)."""
    from daemon.localexchange import LocalExchange

    return LocalExchange(data, start_ms=start_ms, speed=0, seed=cfg.local_exchange.seed).markets


def assert_within_spread(cfg: config.Config, replayed: dict, back_fill, live_fill) -> None:
    """Live paper fills at the quote (bid/ask around the replay price) when its order is
    executed, the backtest at the next bar's open: apart by at most the spread (+ a tape tick),
    plus the market's own move between the two instants (at 120x or 600x a live fill lands
    replay seconds after the close; the move is measured on the replayed 1s path, not assumed)."""
    spread, tick = cfg.local_exchange.spread_bps / 1e4, 0.01
    market = replayed[back_fill.symbol.replace("/", "")]
    moved = abs(market.price(live_fill.ts) - market.price(back_fill.ts))
    assert abs(live_fill.price - back_fill.price) <= spread * back_fill.price + tick + 1.001 * moved, (
        back_fill,
        live_fill,
        moved,
    )


async def _run_live(cfg_path: Path, tmp: Path, lx_port: int) -> None:
    daemon = DaemonProcess(cfg_path, tmp, {}).start()
    try:
        await daemon.wait_ready(timeout=120)
        streams = 3 * len(SYMBOLS) + 1
        await daemon.wait_for(
            lambda: len(_control(lx_port, "status", None)["streams"]) >= streams, 30, f"{streams} subscriptions"
        )
        _control(lx_port, "set_speed", {"speed": 120.0})  # one 1m bar every half second
        store = Store(tmp / "live.sqlite")
        try:
            await daemon.wait_for(
                lambda: min(len({r[0] for r in store.prediction_rows(s)}) for s in SYMBOLS) >= LIVE_BARS,
                120,
                f"{LIVE_BARS} live decisions of every symbol",
            )
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
    replayed = replayed_markets(data, first, cfg)
    for symbol, result in zip(SYMBOLS, results):
        mine = [s for s in live_signals[symbol] if first <= s.bar_ts <= last]
        assert [(s.bar_ts, s.strategy, int(s.side), s.price, "; ".join(s.reasons)) for s in mine] == [
            (s["bar_ts"], s["strategy"], s["side"], s["price"], s["reasons"]) for s in result.signals
        ], symbol
        assert [s.confidence for s in mine] == pytest.approx([s["confidence"] for s in result.signals], abs=1e-6)
        # Live paper orders fill at the quote (bid/ask around the replay price), the backtest at
        # the next bar's open: the same orders, prices apart by at most the spread (+ a tape tick).
        paired = [(f, live_fills[f.client_order_id]) for f in result.fills if f.client_order_id in live_fills]
        assert paired, symbol
        for back_fill, live_fill in paired:
            # sizes follow equity, and equity the earlier fill prices: equal to a fraction of the spread
            assert back_fill.side == live_fill.side and back_fill.amount == pytest.approx(live_fill.amount, rel=1e-3)
            assert_within_spread(cfg, replayed, back_fill, live_fill)
        back = {(int(t), m.name): p for m in result.models for t, p in zip(m.bar_ts, m.probs)}
        rows = [r for r in predictions[symbol] if first <= r[0] <= last]
        assert len(back) == len(rows)
        for bar_ts, model, _v, *probs in (r[:6] for r in rows):
            assert np.allclose(back[(bar_ts, model)], probs, atol=1e-6), (symbol, bar_ts, model)


def test_a_portfolio_backtest_precomputed_per_symbol_equals_the_engine_asking_cycle_by_cycle(
    tmp_path: Path, write_config
) -> None:
    world = tiny_world()
    data = three_symbol_data(world, tmp_path)
    models = world / "models"
    symbols = ", ".join(f'"{s}"' for s in SYMBOLS)
    cfg = config.load(
        write_config(
            TEST_CONFIG.replace('symbol = "ETH/USDT"', f"symbols = [{symbols}]")
            + f"""
[models]
device = "cpu"
trade_only_validated = false  # the tiny test models carry no validation verdict
paths = {{ mtf_transformer = "{models / "mtf_transformer"}", cnn_lstm_attn = "{models / "cnn_lstm_attn"}" }}
"""
        )
    )
    tape = replay.load_streams(data, backtest.live_order(cfg), ("ETH/USDT", "1m"))
    plan = backtest.make_plan(cfg, tape, iso(T0 + 400 * MIN), iso(T0 + 460 * MIN))
    predictors = backtest.load_predictors(backtest.artifact_dirs(cfg, None))
    tables = backtest.run_portfolio(plan, predictors, batch=True, workers=1)
    cycles = backtest.run_portfolio(plan, predictors, batch=False)
    assert [r.symbol for r in tables] == [r.symbol for r in cycles] == list(SYMBOLS)
    assert sum(len(r.signals) for r in cycles) >= 3
    for a, b in zip(tables, cycles):
        assert [(s["bar_ts"], s["strategy"], s["side"], s["price"]) for s in a.signals] == [
            (s["bar_ts"], s["strategy"], s["side"], s["price"]) for s in b.signals
        ], a.symbol
        assert [s["confidence"] for s in a.signals] == pytest.approx([s["confidence"] for s in b.signals], abs=1e-5)


# -- portfolio decisions at 1h: five symbols, one cycle per hour ----------------------------------
PORTFOLIO_SYMBOLS = ("ETH/USDT", "SOL/USDT", "XRP/USDT", "ADA/USDT", "DOGE/USDT")
HOUR = 60 * MIN
LIVE_HOURS = 6  # hourly cycles the daemon decides live before it is stopped
TARGET = re.compile(r"target weight ([+-]\d+\.\d+)")


def five_symbol_data(world: Path, tmp: Path) -> Path:
    """The tiny world's tape plus four more symbols (their own seeded walks over the same span)."""
    import shutil

    data = Path(shutil.copytree(world / "data", tmp / "data5"))
    for seed, symbol in enumerate(PORTFOLIO_SYMBOLS[1:], start=11):
        scratch = tape_dir(tmp / f"scratch5-{seed}", 2400, symbol=symbol, seed=seed, days_before=30)
        for f in scratch.glob(symbol.replace("/", "_") + "-*"):
            shutil.copy(f, data / f.name)
    return data


def _portfolio_config(world: Path, data: Path, tmp: Path, lx_port: int) -> str:
    # no_trade_band: a drift smaller than 2 % of equity is not traded, on both sides alike (live
    # equity follows fills at the quote, the backtest's the next bar's open: a hair apart).
    return live_sections(
        world,
        data,
        tmp,
        lx_port,
        PORTFOLIO_SYMBOLS,
        T0 + 6 * HOUR - 20_000,
        "live1h.sqlite",
        """
[engine]
strategies = ["portfolio"]

[portfolio]
decision_timeframe = "1h"
long_short = true
top_k = 2
max_weight = 0.3
gross_cap = 1.0
net_cap = 0.4
no_trade_band = 0.02
""",
    )


async def _run_live_hours(cfg_path: Path, tmp: Path, lx_port: int) -> None:
    daemon = DaemonProcess(cfg_path, tmp, {}).start()
    try:
        await daemon.wait_ready(timeout=120)
        streams = 3 * len(PORTFOLIO_SYMBOLS) + 1
        await daemon.wait_for(
            lambda: len(_control(lx_port, "status", None)["streams"]) >= streams, 30, f"{streams} subscriptions"
        )
        _control(lx_port, "set_speed", {"speed": 600.0})  # one hour every 6 s
        store = Store(tmp / "live1h.sqlite")
        try:
            await daemon.wait_for(
                lambda: min(len({r[0] for r in store.prediction_rows(s)}) for s in PORTFOLIO_SYMBOLS) >= LIVE_HOURS,
                150,
                f"{LIVE_HOURS} hourly decisions of every symbol",
            )
        finally:
            store.close()
        daemon.signal(signal.SIGTERM)
        assert await daemon.wait_exit(30) == 0
        cycles = [e for e in daemon.log_events() if e.get("event") == "decision_cycle"]
        assert cycles and all(c["symbols"] == len(PORTFOLIO_SYMBOLS) for c in cycles)  # one batched cycle per hour
    finally:
        daemon.close()


@pytest.mark.slow
async def test_portfolio_at_1h_backtest_and_live_give_the_same_weights_and_orders(tmp_path: Path, write_config) -> None:
    world = tiny_world()
    data = five_symbol_data(world, tmp_path)
    lx_port = free_port()
    cfg_path = write_config(_portfolio_config(world, data, tmp_path, lx_port), name="live1h.toml")
    await _run_live_hours(cfg_path, tmp_path, lx_port)

    live = Store(tmp_path / "live1h.sqlite")
    decided = {s: sorted({r[0] for r in live.prediction_rows(s)}) for s in PORTFOLIO_SYMBOLS}
    live_signals = {s: [sig for _, sig in reversed(live.signals(symbol=s, limit=10_000))] for s in PORTFOLIO_SYMBOLS}
    live_fills = {f.client_order_id: f for f in live.fills()}
    rejected = live.db.execute("SELECT COUNT(*) FROM orders WHERE status = 'rejected'").fetchone()[0]
    live.close()
    first = max(rows[0] for rows in decided.values())
    last = min(rows[-1] for rows in decided.values())
    assert last - first >= (LIVE_HOURS - 2) * HOUR and rejected == 0
    for rows in decided.values():
        assert [t for t in rows if first <= t <= last] == list(range(first, last + HOUR, HOUR))

    cfg = config.load(cfg_path)  # the live daemon's own config
    tape = replay.load_streams(data, backtest.live_order(cfg), ("ETH/USDT", "1h"))
    plan = backtest.make_plan(cfg, tape, iso(first), iso(last + HOUR))
    predictors = backtest.load_predictors(backtest.artifact_dirs(cfg, None))
    results = await asyncio.to_thread(backtest.run_portfolio, plan, predictors)

    assert [r.symbol for r in results] == list(PORTFOLIO_SYMBOLS)
    replayed = replayed_markets(data, first, cfg)
    compared = 0
    for symbol, result in zip(PORTFOLIO_SYMBOLS, results):
        mine = [s for s in live_signals[symbol] if first <= s.bar_ts <= last]
        # the same target weights, at the same hours, on the same side (a weight the band kept is
        # the one held, which drifted with fill prices a hair apart: equal to 1e-3)
        assert [(s.bar_ts, s.strategy, int(s.side)) for s in mine] == [
            (s["bar_ts"], s["strategy"], s["side"]) for s in result.signals
        ], symbol
        assert [float(TARGET.search(s.reasons[0]).group(1)) for s in mine] == pytest.approx(
            [float(TARGET.search(s["reasons"]).group(1)) for s in result.signals], abs=1e-3
        ), symbol
        # the same orders (same ids, sides, and the positions they lead to: an order is the target
        # minus what is held, and what is held follows earlier fill prices, a hair apart); live
        # fills at the quote, the backtest at the next open: within the spread
        held_live = held_back = 0.0
        for back_fill in result.fills:
            live_fill = live_fills.get(back_fill.client_order_id)
            assert live_fill is not None, (symbol, back_fill)
            compared += 1
            held_back += back_fill.amount * (1 if back_fill.side == "buy" else -1)
            held_live += live_fill.amount * (1 if live_fill.side == "buy" else -1)
            assert back_fill.side == live_fill.side
            assert held_live == pytest.approx(held_back, rel=5e-3, abs=1e-6), (symbol, back_fill, live_fill)
            assert_within_spread(cfg, replayed, back_fill, live_fill)
    assert compared >= 3

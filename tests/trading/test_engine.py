"""Engine: decisions only on trigger bars, skip-and-count when busy, strategy isolation, storage
of predictions and signals, publish in the same step, swap, pause/resume, backtest parity."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from daemon.domain import Bar, Position, Side, Signal
from daemon.market.bars import Buffers
from daemon.metrics import REGISTRY
from daemon.store import Store
from daemon.trading.engine import Engine
from daemon.trading.paper import PaperBroker
from strategies.confidence import ConfidenceStrategy
from strategies.risk import RiskParams
from tests.engine_parts import T0, FailingPredictor, FixedPredictor, ListSink, MomentumPredictor, bar, buffers, series

# Up, up, up, then down: LONG once momentum is clear, FLAT/SHORT when it turns.
CLOSES = [100.0, 100.0, 100.0, 100.0, 101.0, 102.0, 103.0, 104.0, 104.0, 103.0, 101.0, 99.0, 97.0, 97.0]


def make_engine(
    tmp_path: Path,
    *,
    predictors: dict | None = None,
    strategies: list | None = None,
    wait: bool = True,
    sink: ListSink | None = None,
    broker: Any = None,
    store: Store | None = None,
    risk_params: RiskParams | None = None,
) -> tuple[Engine, Buffers, ListSink]:
    store = store or Store(tmp_path / "sigd.sqlite")
    ring_buffers, sink = buffers(), sink or ListSink()
    predictors = predictors or {"mtf": MomentumPredictor("mtf", "m1"), "cnn": MomentumPredictor("cnn", "c1")}
    engine = Engine(
        store=store,
        buffers=ring_buffers,
        predictors=predictors,
        sink=sink,
        strategies=strategies or [ConfidenceStrategy(combine="both")],
        broker=broker,
        wait_for_decision=wait,
        risk_params=risk_params,
    )
    return engine, ring_buffers, sink


async def feed(engine: Engine, buffers: Buffers, bars: list[Bar]) -> None:
    """What the feed does: buffer first, then on_bar."""
    for b in bars:
        buffers.append(b)
        await engine.on_bar(b)


async def test_decisions_only_on_closed_trigger_bars_of_the_primary_symbol(tmp_path: Path) -> None:
    engine, buffers, _ = make_engine(tmp_path)
    await engine.start()
    mtf = engine.predictors["mtf"]
    others = [bar(T0, 100.0, timeframe="1s"), bar(T0, 30_000.0, symbol="BTC/USDT"), bar(T0, 100.0, timeframe="1h")]
    await feed(engine, buffers, others)
    assert mtf.calls == [] and engine.store.count("predictions") == 0
    bars = series(CLOSES[:5])
    await feed(engine, buffers, bars)
    assert mtf.calls == [b.ts for b in bars]
    assert engine.store.count("predictions") == 2 * len(bars)  # both models on every trigger bar
    await engine.close()


async def test_trigger_bars_during_a_decision_coalesce_to_the_newest(tmp_path: Path) -> None:
    gate = threading.Event()
    slow = MomentumPredictor("mtf", "m1", gate=gate)
    engine, buffers, _ = make_engine(tmp_path, predictors={"mtf": slow}, wait=False)
    await engine.start()
    before = REGISTRY.counter("sigd_decisions_skipped_total", "").get(reason="superseded")
    b1, b2, b3, b4 = series([100.0, 101.0, 102.0, 103.0])
    await feed(engine, buffers, [b1])
    await feed(engine, buffers, [b2])  # returns at once: b1's decision is running, b2 waits
    await feed(engine, buffers, [b3])  # b3 replaces b2: a stale bar is never decided late
    assert engine.skipped == 1
    assert REGISTRY.counter("sigd_decisions_skipped_total", "").get(reason="superseded") == before + 1
    gate.set()
    await engine.cycles.drain()  # b1, then b3, one after the other
    assert slow.calls == [b1.ts, b3.ts] and engine.decisions == 2
    await feed(engine, buffers, [b4])
    await engine.close()
    assert slow.calls == [b1.ts, b3.ts, b4.ts] and engine.decisions == 3


class Exploding:
    """A strategy with a bug."""

    name = "exploding"

    def decide(self, predictions: Any, position: Position, bar: Bar, state: Any) -> Signal | None:
        raise ZeroDivisionError("bug")


async def test_a_strategy_that_raises_is_isolated(tmp_path: Path) -> None:
    engine, buffers, sink = make_engine(tmp_path, strategies=[Exploding(), ConfidenceStrategy(combine="either")])
    await engine.start()
    errors = REGISTRY.counter("sigd_strategy_errors_total", "")
    before = errors.get(strategy="exploding")
    await feed(engine, buffers, series(CLOSES))
    assert errors.get(strategy="exploding") == before + len(CLOSES)
    assert [s["side"] for s in sink.of("signal")][:1] == ["LONG"]
    await engine.close()


async def test_a_predictor_that_raises_leaves_the_other_model_running(tmp_path: Path) -> None:
    predictors = {"mtf": FailingPredictor("mtf"), "cnn": MomentumPredictor("cnn", "c1")}
    engine, buffers, sink = make_engine(tmp_path, predictors=predictors, strategies=[ConfidenceStrategy(combine="either")])
    await engine.start()
    await feed(engine, buffers, series(CLOSES[:8]))
    rows = engine.store.db.execute("SELECT DISTINCT model FROM predictions").fetchall()
    assert rows == [("cnn",)]
    assert sink.of("signal") and sink.of("signal")[0]["model_versions"] == {"cnn": "c1"}
    await engine.close()


async def test_predictions_and_signals_are_stored_and_each_signal_published(tmp_path: Path) -> None:
    engine, buffers, sink = make_engine(tmp_path)
    await engine.start()
    bars = series(CLOSES)
    await feed(engine, buffers, bars)
    db = engine.store.db
    preds = db.execute("SELECT bar_ts, model, version, side, threshold FROM predictions ORDER BY id").fetchall()
    assert preds[0] == (bars[0].ts, "mtf", "m1", int(Side.FLAT), 0.5)
    rows = db.execute("SELECT id, bar_ts, side, price, model_versions, latency_ms, event_id FROM signals ORDER BY id").fetchall()
    events = sink.of("signal")
    assert len(rows) == len(events) >= 2
    for (sid, bar_ts, side, price, versions, latency, event_id), ev in zip(rows, events):
        assert event_id == ev["id"] == f"signal-{sid}"
        assert (ev["bar_ts"], ev["side"], ev["price"]) == (bar_ts, Side(side).name, price)
        assert json.loads(versions) == ev["model_versions"] == {"mtf": "m1", "cnn": "c1"}
        assert latency >= 0 and ev["symbol"] == "ETH/USDT" and 0 <= ev["confidence"] <= 1
        assert bar_ts in {b.ts for b in bars}
    await engine.close()


async def test_backtest_mode_and_live_mode_give_identical_signals(tmp_path: Path) -> None:
    bars = series(CLOSES)
    backtest, buf_a, sink_a = make_engine(tmp_path / "a", wait=True)
    await backtest.start()
    await feed(backtest, buf_a, bars)
    live, buf_b, sink_b = make_engine(tmp_path / "b", wait=False)
    await live.start()
    for b in bars:
        await feed(live, buf_b, [b])
        await live.cycles.drain()  # a live feed's bars come a bar apart: each decision finishes
    strip = lambda evs: [(e["bar_ts"], e["side"], round(e["confidence"], 12)) for e in evs]  # noqa: E731
    assert strip(sink_a.of("signal")) == strip(sink_b.of("signal")) and sink_a.of("signal")
    await backtest.close()
    await live.close()


async def test_swap_predictor_applies_from_the_next_decision(tmp_path: Path) -> None:
    engine, buffers, _ = make_engine(tmp_path)
    await engine.start()
    bars = series(CLOSES[:4])
    await feed(engine, buffers, bars[:2])
    engine.swap_predictor("mtf", MomentumPredictor("mtf", "m2", threshold=0.9))
    await feed(engine, buffers, bars[2:])
    versions = engine.store.db.execute(
        "SELECT bar_ts, version, threshold FROM predictions WHERE model='mtf' ORDER BY bar_ts"
    ).fetchall()
    assert [v[1] for v in versions] == ["m1", "m1", "m2", "m2"] and versions[-1][2] == 0.9
    assert engine.status()["models"]["mtf"] == {"version": "m2", "threshold": 0.9}
    await engine.close()


async def test_pause_is_persisted_and_resume_emits_again(tmp_path: Path) -> None:
    engine, buffers, sink = make_engine(tmp_path)
    await engine.start()
    engine.pause()
    await feed(engine, buffers, series(CLOSES))
    assert sink.of("signal") == [] and engine.store.count("predictions") > 0
    again, buf2, sink2 = make_engine(tmp_path, store=engine.store)
    await again.start()
    assert again.status()["paused"] is True
    again.resume()
    await feed(again, buf2, series(CLOSES, start=T0 + 100 * 60_000))
    assert sink2.of("signal")
    await engine.close()
    await again.close()


async def test_a_broken_sink_rolls_the_decision_back_and_the_bar_path_goes_on(tmp_path: Path) -> None:
    sink = ListSink()
    engine, buffers, _ = make_engine(tmp_path, sink=sink)
    await engine.start()
    failed = REGISTRY.counter("sigd_decisions_failed_total", "")
    before = failed.get(symbol="ETH/USDT")
    bars = series(CLOSES)
    sink.fail = True
    await feed(engine, buffers, bars[:8])  # the outbox is broken: no signal may exist without its alert
    assert engine.store.count("signals") == 0 and failed.get(symbol="ETH/USDT") > before
    sink.fail = False
    await feed(engine, buffers, bars[8:])  # the bar path survived and decides again
    stored = engine.store.count("signals")
    assert stored >= 1 and len(sink.of("signal")) == stored
    assert engine.store.count("signals", "event_id IS NULL") == 0
    await engine.close()


async def test_paper_trading_through_the_engine_with_a_stop_loss(tmp_path: Path) -> None:
    store = Store(tmp_path / "sigd.sqlite")
    sink = ListSink()
    engine, buffers, _ = make_engine(
        tmp_path,
        store=store,
        sink=sink,
        broker=PaperBroker(store, sink, fee=0.001, slippage=0.0),
        risk_params=RiskParams(stop_loss=0.02, cooldown_bars=5),
        strategies=[ConfidenceStrategy(combine="both", exit_on_flat=False)],
    )
    await engine.start()
    # Up (LONG entry), then a sharp drop: the low breaks 2 % under entry → "risk" exit.
    bars = series([100.0, 100.0, 100.0, 100.0, 101.0, 102.0, 103.0, 103.0, 103.0])
    crash = bar(bars[-1].ts + 60_000, 99.0, open=103.0, low=98.0)
    after = bar(crash.ts + 60_000, 99.0, open=99.5)
    await feed(engine, buffers, bars + [crash, after])
    signals = sink.of("signal")
    assert [(s["side"], s["strategy"]) for s in signals] == [("LONG", "confidence"), ("FLAT", "risk")]
    assert signals[1]["bar_ts"] == crash.ts and "stop_loss" in signals[1]["reasons"][0]
    fills = sink.of("fill")
    assert [f["side"] for f in fills] == ["buy", "sell"]
    assert fills[1]["price"] == 99.5 and fills[1]["ts"] == after.ts  # the next price after the exit
    assert engine.status()["position"]["amount"] == 0.0
    await engine.close()


async def test_flatten_closes_the_position_once(tmp_path: Path) -> None:
    store, sink = Store(tmp_path / "sigd.sqlite"), ListSink()
    engine, buffers, _ = make_engine(
        tmp_path,
        store=store,
        sink=sink,
        broker=PaperBroker(store, sink, fee=0.0, slippage=0.0),
        strategies=[ConfidenceStrategy(combine="both", exit_on_flat=False)],
    )
    await engine.start()
    bars = series(CLOSES[:7])
    await feed(engine, buffers, bars)
    assert engine.broker.position("ETH/USDT").amount > 0
    assert await engine.flatten("test") is True
    assert await engine.flatten("again") is False  # same bar: the same order id, not sent twice
    assert [s["strategy"] for s in sink.of("signal")].count("manual") == 1
    nxt = bar(bars[-1].ts + 60_000, 104.0)
    await engine.broker.on_bar(nxt)
    assert engine.broker.position("ETH/USDT").amount == 0.0
    assert sink.of("signal")[-1]["strategy"] == "manual"
    await engine.close()


def test_unknown_trigger_timeframe_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown timeframe"):
        Engine(store=Store(tmp_path / "s.sqlite"), buffers=buffers(), predictors={}, sink=ListSink(), trigger_timeframe="7m")


async def test_signals_and_fills_reach_the_real_outbox_once(tmp_path: Path) -> None:
    from daemon.alerts.notify import LogChannel
    from daemon.alerts.outbox import Outbox

    store = Store(tmp_path / "sigd.sqlite")
    outbox = Outbox(store, [LogChannel()])
    engine, buffers, _ = make_engine(
        tmp_path, store=store, sink=outbox, broker=PaperBroker(store, outbox, fee=0.001, slippage=0.0005)
    )
    await engine.start()
    await feed(engine, buffers, series(CLOSES))
    rows = store.db.execute("SELECT event_id, type, payload FROM outbox ORDER BY created_ms, id").fetchall()
    signal_ids = [r[0] for r in rows if r[1] == "signal"]
    assert signal_ids == [f"signal-{i}" for i in range(1, store.count("signals") + 1)] and signal_ids
    first = json.loads(next(r[2] for r in rows if r[1] == "signal"))
    assert {"symbol", "side", "confidence", "price", "bar_ts", "model_versions"} <= set(first)
    assert {r[1] for r in rows} == {"signal", "order", "fill"}
    again, _, _ = make_engine(tmp_path, store=store, sink=outbox, broker=PaperBroker(store, outbox))
    await again.start()  # nothing was lost, so nothing is queued twice
    assert store.count("outbox") == len(rows)
    await engine.close()
    await again.close()


async def test_a_drawdown_halt_is_alerted_once_blocks_entries_and_resume_lifts_it(tmp_path: Path) -> None:
    store, sink = Store(tmp_path / "sigd.sqlite"), ListSink()
    bulls = {"mtf": FixedPredictor("mtf"), "cnn": FixedPredictor("cnn")}
    engine, buffers, _ = make_engine(
        tmp_path,
        store=store,
        sink=sink,
        predictors=bulls,
        broker=PaperBroker(store, sink, fee=0.0, slippage=0.0),
        risk_params=RiskParams(position_fraction=1.0, max_position=1e9, max_drawdown=0.05),
    )
    await engine.start()
    # All in at 100, then the price slides 8 %: equity 10 000 → 9 200.
    bars = series([100.0, 100.0, 98.0, 96.0, 94.0, 92.0, 92.0])
    await feed(engine, buffers, bars)
    assert [h["kind"] for h in sink.of("error")] == ["drawdown_halt"]  # once, not every bar
    assert engine.status()["halted"] is True
    assert await engine.flatten("test")
    blocked = REGISTRY.counter("sigd_signals_blocked_total", "")
    before = blocked.get(reason="drawdown_halt")
    more = series([92.0, 92.0, 93.0], start=bars[-1].ts + 60_000)
    await feed(engine, buffers, more[:2])
    assert engine.broker.position("ETH/USDT").amount == 0.0  # the bulls want in; the halt says no
    assert blocked.get(reason="drawdown_halt") == before + 2  # the exit filled at the first bar's open
    engine.resume()
    assert engine.status()["halted"] is False
    await feed(engine, buffers, more[2:])
    assert sink.of("signal")[-1]["side"] == "LONG"
    await engine.close()


async def test_a_state_file_keeps_to_one_order_book(tmp_path: Path) -> None:
    from daemon.trading.broker import TestnetBroker
    from daemon.trading.orders import BookMismatch

    store = Store(tmp_path / "sigd.sqlite")
    await PaperBroker(store, ListSink()).start()
    with pytest.raises(BookMismatch, match="holds 'paper' orders"):
        await TestnetBroker(store, ListSink(), client=None).start()  # type: ignore[arg-type]


async def test_the_risk_state_survives_a_restart(tmp_path: Path) -> None:
    store, sink = Store(tmp_path / "sigd.sqlite"), ListSink()
    bulls = {"mtf": FixedPredictor("mtf"), "cnn": FixedPredictor("cnn")}
    params = RiskParams(position_fraction=1.0, max_position=1e9, max_drawdown=0.05, cooldown_bars=3)
    engine, buffers, _ = make_engine(
        tmp_path,
        store=store,
        sink=sink,
        predictors=bulls,
        broker=PaperBroker(store, sink, fee=0.0, slippage=0.0),
        risk_params=params,
    )
    await engine.start()
    await feed(engine, buffers, series([100.0, 100.0, 98.0, 96.0, 94.0, 92.0, 92.0]))
    again, _, _ = make_engine(
        tmp_path, store=store, sink=sink, predictors=bulls, broker=PaperBroker(store, sink, fee=0.0, slippage=0.0)
    )
    await again.start()
    assert again.risk_state == engine.risk_state and again.risk_state.halted
    assert again.risk_state.last_trade_ts is not None
    await engine.close()
    await again.close()

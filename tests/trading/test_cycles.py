"""The engine keyed by symbol: cycles with one batched pass per model, a late symbol that does
not stall the others, per-symbol state that survives a restart, portfolio limits on entries,
and a decision made once."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from daemon.domain import Side
from daemon.metrics import REGISTRY
from daemon.store import Store
from daemon.trading.paper import PaperBroker
from strategies.risk import PortfolioLimits, RiskParams
from tests.engine_parts import T0, ListSink, bar
from tests.trading.symbol_parts import SYMBOLS, BatchFixed, BatchMomentum, closes_for, engine_for, feed_cycles

UP = [100.0, 100.0, 100.0, 100.0, 101.0, 102.0, 103.0, 104.0, 104.0, 103.0, 101.0, 99.0, 97.0, 97.0]
MIN = 60_000


async def test_one_batched_forward_pass_per_model_and_cycle_decides_every_symbol(tmp_path: Path) -> None:
    engine, buffers, sink = engine_for(tmp_path)
    await engine.start()
    await feed_cycles(engine, buffers, closes_for(SYMBOLS, UP, T0))
    mtf = engine.predictors["mtf"]
    assert isinstance(mtf, BatchMomentum) and mtf.batches == [3] * len(UP)  # one pass per cycle, all symbols
    rows = engine.store.db.execute("SELECT symbol, COUNT(*) FROM decisions GROUP BY symbol").fetchall()
    assert dict(rows) == {s: len(UP) for s in SYMBOLS}
    assert {e["symbol"] for e in sink.of("signal")} == set(SYMBOLS)  # each decides on its own bars
    status = engine.status()
    assert set(status["symbols"]) == set(SYMBOLS)
    for s in SYMBOLS:
        assert status["symbols"][s]["last_decision"]["bar_ts"] == T0 + (len(UP) - 1) * MIN
        assert status["symbols"][s]["last_signal"]["symbol"] == s
    await engine.close()


async def test_a_late_symbol_does_not_stall_the_cycle_and_is_decided_alone(tmp_path: Path) -> None:
    engine, buffers, _ = engine_for(tmp_path, wait=False, deadline_ms=50)
    await engine.start()
    late = REGISTRY.counter("sigd_cycle_late_total", "")
    before = late.get(symbol="XRP/USDT")
    bars = closes_for(SYMBOLS, UP[:6], T0)
    await feed_cycles(engine, buffers, {s: b[:5] for s, b in bars.items()})
    await asyncio.wait_for(engine.cycles.flush(), 5)
    for s in ("ETH/USDT", "SOL/USDT"):  # XRP's bar at the sixth instant is slow (a REST backfill, say)
        buffers.append(bars[s][5])
        await engine.on_bar(bars[s][5])
    t6 = bars["ETH/USDT"][5].ts
    for _ in range(100):  # the deadline (50 ms) closes the cycle without XRP
        await asyncio.sleep(0.02)
        if engine.store.decided("SOL/USDT", t6) and not engine.cycles.busy:
            break
    assert engine.store.decided("ETH/USDT", t6) and engine.store.decided("SOL/USDT", t6)
    assert not engine.store.decided("XRP/USDT", t6)
    buffers.append(bars["XRP/USDT"][5])
    await engine.on_bar(bars["XRP/USDT"][5])  # arrives after its cycle: counted, decided alone
    await asyncio.wait_for(engine.cycles.drain(), 5)
    assert engine.store.decided("XRP/USDT", t6)
    assert late.get(symbol="XRP/USDT") == before + 1 and engine.status()["late"] == 1
    mtf = engine.predictors["mtf"]
    assert isinstance(mtf, BatchMomentum) and mtf.batches[-1] == 2 and mtf.calls[-1] == t6  # ETH+SOL, then XRP
    await engine.close()


async def test_per_symbol_pause_and_state_survive_a_restart(tmp_path: Path) -> None:
    store = Store(tmp_path / "sigd.sqlite")
    engine, buffers, sink = engine_for(tmp_path, store=store)
    await engine.start()
    engine.pause("SOL/USDT")
    await feed_cycles(engine, buffers, closes_for(SYMBOLS, UP, T0))
    signalled = {e["symbol"] for e in sink.of("signal")}
    assert signalled == {"ETH/USDT", "XRP/USDT"}  # SOL is paused: predictions go on, no signals
    assert store.count("predictions", "symbol='SOL/USDT'") == 2 * len(UP)
    status = engine.status()
    assert status["paused"] is False and status["symbols"]["SOL/USDT"]["paused"] is True
    await engine.close()
    again, buf2, sink2 = engine_for(tmp_path, store=store)
    await again.start()
    assert again.states["SOL/USDT"].paused and not again.states["ETH/USDT"].paused
    assert again.states["ETH/USDT"].risk_state == engine.states["ETH/USDT"].risk_state
    again.resume("SOL/USDT")
    await feed_cycles(again, buf2, closes_for(SYMBOLS, UP, T0 + 100 * MIN))
    assert "SOL/USDT" in {e["symbol"] for e in sink2.of("signal")}
    again.pause()  # the global pause stops every symbol
    n = store.count("signals")
    await feed_cycles(again, buf2, closes_for(SYMBOLS, UP, T0 + 200 * MIN))
    assert store.count("signals") == n and again.status()["paused"] is True
    await again.close()


async def test_a_single_symbol_state_file_keeps_its_risk_state(tmp_path: Path) -> None:
    store = Store(tmp_path / "sigd.sqlite")
    store.set_kv("engine.risk", json.dumps({"last_trade_ts": T0, "peak_equity": 12_000.0, "halted": True}))
    engine, _, _ = engine_for(tmp_path, store=store)
    await engine.start()
    assert engine.states["ETH/USDT"].risk_state.halted and engine.states["ETH/USDT"].risk_state.peak_equity == 12_000.0
    assert not engine.states["SOL/USDT"].risk_state.halted  # the old key was the first symbol's
    await engine.close()


async def test_portfolio_limits_block_the_right_entry_and_never_an_exit(tmp_path: Path) -> None:
    bulls = {"mtf": BatchFixed("mtf"), "cnn": BatchFixed("cnn")}
    store, sink = Store(tmp_path / "sigd.sqlite"), ListSink()
    limits = PortfolioLimits(max_open_positions=2, max_gross_exposure=1.0, per_symbol_cap=0.5)
    engine, buffers, _ = engine_for(
        tmp_path,
        store=store,
        sink=sink,
        predictors=bulls,
        portfolio=limits,
        broker=PaperBroker(store, sink, fee=0.0, slippage=0.0),
        risk_params=RiskParams(position_fraction=0.3, max_position=1e9),
    )
    await engine.start()
    blocked = REGISTRY.counter("sigd_signals_blocked_total", "")
    before = blocked.get(reason="max_open_positions")
    await feed_cycles(engine, buffers, closes_for(SYMBOLS, [100.0, 100.0, 100.0], T0))
    held = {s: engine.broker.position(s).amount for s in SYMBOLS}
    # Config order decides inside a cycle: ETH and SOL enter, XRP would be a third position.
    assert held["ETH/USDT"] > 0 and held["SOL/USDT"] > 0 and held["XRP/USDT"] == 0
    assert blocked.get(reason="max_open_positions") > before
    assert [e["symbol"] for e in sink.of("signal")] == ["ETH/USDT", "SOL/USDT"]
    # Exits are never gated: with limits no entry can meet, a bear turn still closes both
    # (the flip's short entry is blocked, its exit goes through).
    engine.portfolio = PortfolioLimits(per_symbol_cap=0.01)
    for p in bulls.values():
        p.side = Side.SHORT
    await feed_cycles(engine, buffers, closes_for(SYMBOLS, [100.0, 100.0], T0 + 3 * MIN))
    assert all(engine.broker.position(s).amount == 0 for s in SYMBOLS)
    exits = [e for e in sink.of("signal") if e["side"] == "FLAT"]
    assert [e["symbol"] for e in exits] == ["ETH/USDT", "SOL/USDT"]
    assert all("entry blocked: per_symbol_cap" in e["reasons"][-1] for e in exits)
    await engine.close()


async def test_gross_exposure_and_the_per_symbol_cap_block_entries(tmp_path: Path) -> None:
    bulls = {"mtf": BatchFixed("mtf"), "cnn": BatchFixed("cnn")}
    for limits, expect in (
        (PortfolioLimits(max_gross_exposure=0.5), ["ETH/USDT"]),
        (PortfolioLimits(per_symbol_cap=0.2), []),
        (PortfolioLimits(max_gross_exposure=0.9, per_symbol_cap=0.3), list(SYMBOLS)),
    ):
        path = tmp_path / f"{limits.max_gross_exposure}-{limits.per_symbol_cap}"
        store, sink = Store(path / "s.sqlite"), ListSink()
        engine, buffers, _ = engine_for(
            path,
            store=store,
            sink=sink,
            predictors=bulls,
            portfolio=limits,
            broker=PaperBroker(store, sink, fee=0.0, slippage=0.0),
            risk_params=RiskParams(position_fraction=0.3, max_position=1e9),
        )
        await engine.start()
        await feed_cycles(engine, buffers, closes_for(SYMBOLS, [100.0, 100.0], T0))
        assert [e["symbol"] for e in sink.of("signal")] == expect, limits
        await engine.close()


async def test_a_decision_is_made_once_even_after_a_restart(tmp_path: Path) -> None:
    store = Store(tmp_path / "sigd.sqlite")
    engine, buffers, sink = engine_for(tmp_path, store=store)
    await engine.start()
    bars = closes_for(SYMBOLS, UP, T0)
    await feed_cycles(engine, buffers, bars)
    await engine.close()
    counts = {t: store.count(t) for t in ("predictions", "signals", "decisions")}
    assert counts["signals"] >= 3
    again, buf2, sink2 = engine_for(tmp_path, store=store)
    await again.start()
    skipped = REGISTRY.counter("sigd_decisions_skipped_total", "")
    before = skipped.get(reason="already_decided")
    await feed_cycles(again, buf2, bars)  # the same bars again (a restart replaying the tail)
    assert {t: store.count(t) for t in counts} == counts and sink2.of("signal") == []
    assert skipped.get(reason="already_decided") == before + 3 * len(UP)
    # The unique keys hold even for a writer that bypasses the engine's check.
    from daemon.trading.inference import predict_one_by_one

    preds = predict_one_by_one(
        "mtf", again.predictors["mtf"], [buf2.windows("ETH/USDT", ("1m",), "BTC/USDT")], [bars["ETH/USDT"][-1].ts]
    )
    store.add_predictions("ETH/USDT", [p for p in preds if p], 0)
    assert store.count("predictions") == counts["predictions"]
    await again.close()


async def test_a_late_bar_older_than_the_open_cycle_joins_it(tmp_path: Path) -> None:
    engine, buffers, _ = engine_for(tmp_path, wait=False, deadline_ms=10_000)
    await engine.start()
    old, new = bar(T0, 100.0, symbol="XRP/USDT"), bar(T0 + MIN, 101.0, symbol="ETH/USDT")
    for b in (new, old):
        buffers.append(b)
        await engine.on_bar(b)
    assert engine.cycles.late == 1
    await asyncio.wait_for(engine.cycles.flush(), 5)
    assert engine.store.decided("XRP/USDT", T0) and engine.store.decided("ETH/USDT", T0 + MIN)
    await engine.close()


async def test_prewarm_runs_one_throwaway_pass_before_the_next_close_and_stores_nothing(tmp_path: Path) -> None:
    from daemon.trading.engine import Engine
    from tests.trading.symbol_parts import buffers_for

    mtf = BatchMomentum("mtf", "m1")
    store = Store(tmp_path / "sigd.sqlite")
    buffers = buffers_for(SYMBOLS)
    # A 1m trigger at 300x: closes 200 ms apart; the pre-warm ends 60 ms before the next one is due.
    engine = Engine(
        store=store,
        buffers=buffers,
        predictors={"mtf": mtf},
        sink=ListSink(),
        symbols=SYMBOLS,
        timeframes=("1m",),
        prewarm_ms=60,
        speed=300.0,
        cycle_deadline_ms=50,
    )
    await engine.start()
    await feed_cycles(engine, buffers, closes_for(SYMBOLS, UP[:5], T0))
    await asyncio.wait_for(engine.cycles.drain(), 5)
    decided = list(mtf.batches)
    rows = {t: store.count(t) for t in ("predictions", "signals", "decisions")}
    for _ in range(50):  # ~140 ms after the cycle's first bar: one pass over every symbol's current windows
        await asyncio.sleep(0.01)
        if len(mtf.batches) > len(decided):
            break
    assert mtf.batches[len(decided) :] == [3]
    assert {t: store.count(t) for t in rows} == rows  # never stored
    await engine.close()

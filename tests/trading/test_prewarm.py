"""The engine's pre-warm: a throwaway forward pass before the next close that leaves no trace
(no prediction row, signal, outbox row or event), and never stands in a real bar's way.

Real engine, temporary SQLite, the shipped `small` artifacts, real bars from the bundled tape
(two symbols: ETH/USDT and a time-shifted copy, as bench symbols builds them)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import numpy as np

from bench.engineload import bars_at, capacity, load_models, symbol_tapes, warm
from daemon.store import Store
from daemon.trading.engine import Engine
from daemon.trading.inference import PREWARM_MS, predict_one_by_one
from daemon.trading.paper import PaperBroker
from strategies.confidence import ConfidenceStrategy
from strategies.risk import PortfolioLimits, RiskParams
from tests.engine_parts import ListSink

TABLES = ("predictions", "signals", "orders", "fills", "outbox", "decisions")


class Rig:
    """An engine over two symbols with its store, rings and event sink; `close(k)` feeds the k-th 1m close."""

    def __init__(self, tmp: Path, prewarm_ms: int, speed: float) -> None:
        self.predictors = load_models("small", "cpu", 0.34, tmp, 1)  # low thresholds: signals happen
        self.tapes, self.btc = symbol_tapes(2)
        self.start = len(self.btc) - 10
        self.buffers = warm(self.tapes, self.btc, self.start, capacity(self.predictors))
        self.store, self.sink = Store(tmp / "sigd.sqlite"), ListSink()
        self.engine = Engine(
            store=self.store,
            buffers=self.buffers,
            predictors=self.predictors,
            sink=self.sink,
            symbols=list(self.tapes),
            broker=PaperBroker(self.store, self.sink, fee=0.001, slippage=0.0005),
            strategies=[ConfidenceStrategy(combine="either")],
            risk_params=RiskParams(position_fraction=0.25, max_position=1e9),
            portfolio=PortfolioLimits(max_gross_exposure=1.0),
            timeframes=("1m", "1h", "1d"),
            prewarm_ms=prewarm_ms,
            speed=speed,
        )

    def rows(self) -> dict[str, int]:
        return {t: self.store.count(t) for t in TABLES} | {"events": len(self.sink.events)}

    async def close(self, k: int, symbols: int = 2) -> list[Any]:
        """The k-th 1m close: the reference bar, then each symbol's bar (the first `symbols` of them)
        into its ring and to the engine."""
        from daemon.domain import Bar

        row = self.start + k
        self.buffers.append(Bar("BTC/USDT", "1m", int(self.btc[row, 0]), *map(float, self.btc[row, 1:])))
        bars = bars_at(self.tapes, "1m", [t["1m"][row] for t in self.tapes.values()])[:symbols]
        for b in bars:
            self.buffers.append(b)
            await self.engine.on_bar(b)
        return bars


@asynccontextmanager
async def rig(tmp: Path, prewarm_ms: int = 0, speed: float = 1.0) -> AsyncIterator[Rig]:
    r = Rig(tmp, prewarm_ms, speed)
    await r.engine.start()
    try:
        yield r
    finally:
        await r.engine.close()
        r.store.close()


async def test_a_prewarm_runs_both_models_and_leaves_no_row_signal_or_event(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        await r.close(0)
        await r.engine.cycles.drain()
        before = r.rows()
        assert before["predictions"] == 4 and before["decisions"] == 2  # the real cycle stored its decisions
        passes = PREWARM_MS.count()
        ms = await r.engine.prewarm()
        assert ms > 0 and PREWARM_MS.count() == passes + 1
        assert r.rows() == before
        assert (r.engine.decisions, r.engine.skipped) == (2, 0)


async def test_the_timer_prewarms_before_the_next_close_and_stores_nothing(tmp_path: Path) -> None:
    # 1m at 100x: the next close is due 600 ms after this cycle's first bar; the pre-warm ends 120 ms before it.
    async with rig(tmp_path, prewarm_ms=120, speed=100.0) as r:
        await r.close(0)
        await r.engine.cycles.drain()
        before, passes = r.rows(), PREWARM_MS.count()
        for _ in range(100):
            await asyncio.sleep(0.01)
            if PREWARM_MS.count() > passes:
                break
        assert PREWARM_MS.count() == passes + 1  # one pass, from the timer
        await asyncio.sleep(0.5)  # past the due close: no second pass without a new cycle
        assert PREWARM_MS.count() == passes + 1
        assert r.rows() == before


async def test_a_bar_arriving_during_a_prewarm_is_decided_as_without_one(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        await r.close(0)
        await r.engine.cycles.drain()
        before = r.rows()
        prewarm = asyncio.ensure_future(r.engine.prewarm())
        await asyncio.sleep(0)  # the pass is on the inference threads now
        bars = await r.close(1)
        assert not prewarm.done()  # the bars came in during the pre-warm
        windows = [r.engine._snapshot(b.symbol) for b in bars]
        await r.engine.cycles.drain()
        await prewarm
        after = r.rows()
        assert after["predictions"] == before["predictions"] + 4
        assert after["decisions"] == before["decisions"] + 2
        assert r.engine.skipped == 0 and r.engine.cycles.late == 0
        stored = {
            (row[1], b.symbol): np.array(row[3:6], dtype=float)
            for b in bars
            for row in r.store.prediction_rows(b.symbol)
            if row[0] == b.ts
        }
        for name, predictor in r.predictors.items():  # the very answers one-by-one inference gives
            alone = predict_one_by_one(name, predictor, windows, [b.ts for b in bars])
            for b, one in zip(bars, alone):
                assert one is not None
                np.testing.assert_allclose(stored[(name, b.symbol)], one.probs, atol=1e-5, rtol=0)


async def test_no_prewarm_while_a_cycle_is_being_assembled(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        await r.close(0)
        await r.engine.cycles.drain()
        passes = PREWARM_MS.count()
        await r.close(1, symbols=1)  # only the first symbol's bar is in: the cycle waits for the other
        assert not r.engine.cycles.idle
        r.engine._fire_prewarm()
        await asyncio.sleep(0.4)  # the assembly deadline (250 ms) closes the cycle with one symbol
        await r.engine.cycles.drain()
        assert PREWARM_MS.count() == passes
        assert r.engine.decisions == 3  # the waiting bar was decided

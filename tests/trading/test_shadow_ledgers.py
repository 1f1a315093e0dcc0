"""Shadow ledgers: every served model's paper book (trading or in shadow mode) equals a backtest
of that model alone over the same bars, computed here from the bars and the model directly
(scores -> strategies.portfolio.weights_path -> equity with drift and costs); always-flat and
buy-and-hold sit beside them. Bars: the bundled May 2021 tape, 6 symbols at 1h."""

from __future__ import annotations

import numpy as np
import pytest

from daemon.domain import Bar, Side
from daemon.localexchange import LocalExchange
from daemon.market.bars import Buffers
from daemon.store import Store
from daemon.trading.engine import Engine
from daemon.trading.ledgers import FLAT, HOLD, ShadowLedgers, render_ledgers
from daemon.trading.paper import PaperBroker
from daemon.trading.rebalance import YEAR_MS, Rebalancer
from daemon.trading.scoring import Shadow
from strategies.portfolio import PortfolioSpec, drift, rebalance_cost, weights_path
from tests.engine_parts import ListSink, MomentumPredictor
from tests.exchange_kit import DAY_2021, SYMBOLS_2021, TAPE_2021

HOUR = 3_600_000
SYMBOLS = (*SYMBOLS_2021, "BTC/USDT")
SPEC = PortfolioSpec(long_short=True, top_k=2, max_weight=0.3, gross_cap=1.0, net_cap=0.5, no_trade_band=0.02)
COST = 0.0015
PPY = YEAR_MS / HOUR


def closes_and_bars(n: int) -> tuple[np.ndarray, dict[str, list[Bar]]]:
    lx = LocalExchange(TAPE_2021, start_ms=DAY_2021, speed=0)  # the tape's 1h bars, aggregated from 1m
    start = DAY_2021 - (n + 1) * HOUR
    bars = {
        s: [
            Bar(s, "1h", start + i * HOUR, *map(float, lx.markets[s.replace("/", "")].closed_bar("1h", start + i * HOUR)[1:]))
            for i in range(n)
        ]
        for s in SYMBOLS
    }
    return np.array([[b.close for b in bars[s]] for s in SYMBOLS]).T, bars


def backtest_equity(
    model: MomentumPredictor,
    bars: dict[str, list[Bar]],
    warm: int,
    start: float,
    spec: PortfolioSpec = SPEC,
    by_side: bool = False,
) -> float:
    """The model alone over the bars, in weights (the research way); `by_side`: scored by its
    calls (+1 LONG, -1 SHORT, 0 FLAT) as the per-symbol strategy's ledger is."""
    closes = np.array([[b.close for b in bars[s]] for s in SYMBOLS]).T  # (T, S)
    rows = {s: np.array([[b.ts, b.open, b.high, b.low, b.close, b.volume] for b in bars[s]]) for s in SYMBOLS}
    T = len(closes)

    def score(s: str, t: int) -> float:
        p = model.predict({"1h": rows[s][max(0, t - model.lookback) : t + 1]}, int(rows[s][t, 0]))
        if by_side:
            return float(p.side == Side.LONG) - float(p.side == Side.SHORT)
        return p.probs[2] - p.probs[0]

    scores = np.array([[score(s, t) for s in SYMBOLS] for t in range(warm, T)])
    returns = np.vstack([np.zeros(len(SYMBOLS)), closes[warm + 1 :] / closes[warm:-1] - 1.0])
    w = weights_path(scores, None, spec, PPY, returns)
    equity, held = start, np.zeros(len(SYMBOLS))
    rates = np.full(len(SYMBOLS), COST)
    for t in range(len(w)):
        equity *= 1.0 + float((held * returns[t]).sum())
        held = drift(held, returns[t])
        equity *= 1.0 - rebalance_cost(held, w[t], rates)
        held = w[t]
    return equity


@pytest.mark.parametrize("trading", ["fast", None])  # one model trades, or neither (both in shadow mode)
async def test_each_model_ledger_equals_its_own_backtest(tmp_path, trading: str | None) -> None:
    warm, n = 6, 40
    _, bars = closes_and_bars(n)
    fast, slow = MomentumPredictor("fast", key="1h", lookback=2, k=80.0), MomentumPredictor("slow", key="1h", lookback=5, k=40.0)
    rings = Buffers()
    for s in SYMBOLS:
        rings.add(s, "1h", 64)
    ledgers = ShadowLedgers(SYMBOLS, SPEC, periods_per_year=PPY, cost_rate=COST, starting_balance=10_000.0)
    store = Store(tmp_path / "s.sqlite")
    engine = Engine(
        store=store,
        buffers=rings,
        predictors={"fast": fast, "slow": slow},
        sink=ListSink(),
        broker=PaperBroker(store, ListSink(), fee=0.001, slippage=0.0005),
        symbols=SYMBOLS,
        timeframes=("1h",),
        trigger_timeframe="1h",
        wait_for_decision=True,
        rebalancer=Rebalancer(SPEC, timeframe="1h", cost_rate=COST),
        ledgers=ledgers,
    )
    engine.shadow = Shadow()
    for name in ("fast", "slow"):
        if name != trading:
            engine.shadow.demote(name, "test: in shadow mode")
    await engine.start()
    for i in range(n):
        for s in SYMBOLS:
            rings.append(bars[s][i])
            if i >= warm:
                await engine.on_bar(bars[s][i])
    books = ledgers.status()["books"]
    assert set(books) == {"fast", "slow", FLAT, HOLD}
    for model in (fast, slow):
        assert books[model.name]["equity"] == pytest.approx(
            backtest_equity(model, bars, warm, 10_000.0), abs=1e-4
        )  # status rounds to 1e-4
        assert books[model.name]["cycles"] == n - warm and books[model.name]["fills"] > 0
        assert books[model.name]["turnover"] > 0 and len(books[model.name]["equity_curve"]) == n - warm
    assert books[FLAT]["equity"] == 10_000.0 and books[FLAT]["fills"] == 0
    closes = np.array([[b.close for b in bars[s]] for s in SYMBOLS]).T
    hold = 10_000.0 * (1 - COST) * float(np.mean(closes[-1] / closes[warm]))
    assert books[HOLD]["equity"] == pytest.approx(hold, abs=1e-4) and books[HOLD]["fills"] == len(SYMBOLS)
    # the real paper book trades only the model that may trade: none at all when both are in shadow mode
    assert bool(store.orders()) == (trading is not None)
    text = "\n".join(render_ledgers(engine.status()["ledgers"]))
    assert "fast" in text and "buy_and_hold" in text and "always_flat" in text
    await engine.close()


async def test_the_ledgers_go_on_after_a_restart(tmp_path) -> None:
    warm, n, cut = 6, 30, 18
    _, bars = closes_and_bars(n)
    fast = MomentumPredictor("fast", key="1h", lookback=2, k=80.0)
    rings = Buffers()
    for s in SYMBOLS:
        rings.add(s, "1h", 64)
    store = Store(tmp_path / "s.sqlite")

    def engine() -> Engine:
        return Engine(
            store=store,
            buffers=rings,
            predictors={"fast": fast},
            sink=ListSink(),
            broker=PaperBroker(store, ListSink()),
            symbols=SYMBOLS,
            timeframes=("1h",),
            trigger_timeframe="1h",
            wait_for_decision=True,
            ledgers=ShadowLedgers(SYMBOLS, SPEC, periods_per_year=PPY, cost_rate=COST, starting_balance=10_000.0),
        )

    first = engine()
    await first.start()
    for i in range(n):
        for s in SYMBOLS:
            rings.append(bars[s][i])
            if i == cut:  # the process ends here; a new one starts on the same state file
                if first is not None:
                    await first.close()
                    first = None
                    second = engine()
                    await second.start()
            if i >= warm:
                await (first or second).on_bar(bars[s][i])
    book = second.ledgers.status()["books"]["fast"]
    assert book["cycles"] == n - warm
    assert book["equity"] == pytest.approx(backtest_equity(fast, bars, warm, 10_000.0), abs=1e-4)
    await second.close()

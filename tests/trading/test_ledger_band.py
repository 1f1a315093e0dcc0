"""Shadow ledgers do not churn: a book does not trade a weight whose target barely moved (the
portfolio construction's no-trade band). A book of calls (the per-symbol strategy) holds a
position until its call changes, as the live per-symbol book holds its amount. Turnover drops,
and the ledger still equals a backtest of the same model over the same bars (the bundled May
2021 tape, 6 symbols at 1h, fed to the ledgers cycle by cycle)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from daemon.domain import Bar
from daemon.trading.ledgers import ShadowLedgers
from strategies.portfolio import PortfolioSpec
from tests.engine_parts import MomentumPredictor
from tests.trading.test_shadow_ledgers import COST, PPY, SYMBOLS, backtest_equity, closes_and_bars

FRACTION = 0.1  # [strategy] position_fraction: each call's position, as daemon/trading/wiring.py builds the book
CALLS = PortfolioSpec(long_short=True, max_weight=FRACTION, gross_cap=FRACTION * len(SYMBOLS), net_cap=FRACTION * len(SYMBOLS))


def feed(ledgers: ShadowLedgers, model: MomentumPredictor, bars: dict[str, list[Bar]], warm: int) -> None:
    """Every cycle's closes and the model's answers, as the engine hands them to the ledgers."""
    rows = {s: np.array([[b.ts, b.open, b.high, b.low, b.close, b.volume] for b in bars[s]]) for s in SYMBOLS}
    for t in range(warm, len(bars[SYMBOLS[0]])):
        answers = {s: [model.predict({"1h": rows[s][max(0, t - model.lookback) : t + 1]}, int(rows[s][t, 0]))] for s in SYMBOLS}
        ledgers.on_cycle(int(rows[SYMBOLS[0]][t, 0]), {s: float(rows[s][t, 4]) for s in SYMBOLS}, answers)


@pytest.mark.parametrize("lookback", [3, 8])
def test_a_book_of_calls_holds_its_positions_through_drift(lookback: int) -> None:
    warm, n = 10, 120
    _, bars = closes_and_bars(n)
    model = MomentumPredictor("calls", key="1h", lookback=lookback, k=150.0, threshold=0.55)
    banded = ShadowLedgers(SYMBOLS, CALLS, periods_per_year=PPY, cost_rate=COST, starting_balance=10_000.0, by_side=True)
    assert banded.spec.no_trade_band == FRACTION / 2  # half a position: drift alone never trades it
    churning = ShadowLedgers(SYMBOLS, CALLS, periods_per_year=PPY, cost_rate=COST, starting_balance=10_000.0, by_side=True)
    churning.spec = CALLS  # the same book without a band: it rebalanced on drift every cycle
    feed(banded, model, bars, warm)
    feed(churning, model, bars, warm)
    a, b = banded.books["calls"], churning.books["calls"]
    assert a.cycles == b.cycles == n - warm
    # the drift trades were many and small: fills fall by a third or more, turnover and costs by their size
    assert b.fills > 1.5 * a.fills and a.turnover < 0.95 * b.turnover and a.costs < b.costs, (a.fills, b.fills)
    assert a.fills > 10  # entries, exits and reversals still trade
    # the ledger is still a backtest of the same model over the same bars, band included
    assert a.equity == pytest.approx(backtest_equity(model, bars, warm, 10_000.0, banded.spec, by_side=True), rel=1e-9)
    assert b.equity == pytest.approx(backtest_equity(model, bars, warm, 10_000.0, CALLS, by_side=True), rel=1e-9)
    # the per-cycle record the live gate reads compounds to the book's equity
    assert 10_000.0 * float(np.prod(1.0 + np.array(a.returns))) == pytest.approx(a.equity, rel=1e-9)
    assert sum(a.trades) == a.fills


def test_a_portfolio_book_keeps_the_configured_band() -> None:
    spec = PortfolioSpec(long_short=True, top_k=2, max_weight=0.3, gross_cap=1.0, net_cap=0.5, no_trade_band=0.02)
    ledgers = ShadowLedgers(SYMBOLS, spec, periods_per_year=PPY, cost_rate=COST, starting_balance=10_000.0)
    assert ledgers.spec == spec  # the live book's construction, band as configured
    wide = dataclasses.replace(CALLS, no_trade_band=0.08)
    calls = ShadowLedgers(SYMBOLS, wide, periods_per_year=PPY, cost_rate=COST, starting_balance=10_000.0, by_side=True)
    assert calls.spec.no_trade_band == 0.08  # a wider band than half a position is kept

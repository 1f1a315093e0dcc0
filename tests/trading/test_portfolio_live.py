"""Portfolio decisions live: every traded symbol's 1h bar forms one cycle, the models score all
symbols in one pass, strategies/portfolio.py turns the scores into target weights and the engine
sends the rebalancing orders; portfolio risk (caps, drawdown halt, cash) on top. Orders go
through real ccxt to the local exchange replaying the bundled May 2021 tape (6 symbols)."""

from __future__ import annotations

import numpy as np
import pytest

from daemon import config
from daemon.config import ConfigError
from daemon.domain import Bar, Position
from daemon.localexchange import LocalExchange
from daemon.market.bars import Buffers
from daemon.store import Store
from daemon.trading.broker import TestnetBroker
from daemon.trading.engine import Engine
from daemon.trading.rebalance import Rebalancer
from daemon.trading.wiring import check_model_windows
from strategies import risk
from strategies.portfolio import PortfolioSpec
from strategies.risk import RiskState
from tests.engine_parts import ListSink, MomentumPredictor
from tests.exchange_kit import DAY_2021, SYMBOLS_2021, TAPE_2021, exchange_client, feed_config, local_exchange

HOUR = 3_600_000
TRADED = (*SYMBOLS_2021, "BTC/USDT")  # the reference symbol traded too
SPEC = PortfolioSpec(long_short=False, top_k=3, max_weight=0.3, gross_cap=0.9, net_cap=0.9)


# -- the portfolio risk rules, pure ------------------------------------------------------------
def test_a_drawdown_halt_blocks_new_exposure_but_never_exits_or_reductions() -> None:
    current = np.array([0.2, 0.2, 0.0, -0.1, 0.3])
    target = np.array([0.3, 0.1, 0.2, 0.1, 0.0])  # grow, shrink, open, flip, exit
    assert risk.halt_exposure(target, current).tolist() == [0.2, 0.1, 0.0, 0.0, 0.0]


def test_buys_are_cut_to_the_cash_and_sells_never() -> None:
    current = np.array([0.5, 0.3, 0.0])
    target = np.array([0.2, 0.6, 0.6])  # sells 0.3, buys 0.9: cash would be 1 - 1.4 < 0
    funded = risk.fund_buys(target, current, cost_rate=0.001)
    assert funded[0] == 0.2  # the sell stands
    cash = 1.0 - funded.sum() - 0.001 * np.abs(funded - current).sum()
    assert cash == pytest.approx(0.0, abs=1e-12) and np.all(funded[1:] < target[1:])
    assert risk.fund_buys(np.array([0.2, 0.2]), np.array([0.1, 0.1]), 0.001).tolist() == [0.2, 0.2]


def test_the_book_halts_at_its_drawdown_limit_and_a_plan_then_only_reduces() -> None:
    state = risk.portfolio_drawdown(RiskState(), 10_000.0, 0.1)
    state = risk.portfolio_drawdown(state, 9_100.0, 0.1)
    assert not state.halted and state.peak_equity == 10_000.0
    assert risk.portfolio_drawdown(state, 8_999.0, 0.1).halted
    reb = Rebalancer(SPEC, timeframe="1h", max_drawdown=0.1)
    reb.risk_state = RiskState(peak_equity=12_000.0)
    symbols = ("A/USDT", "B/USDT", "C/USDT")
    bars = {s: Bar(s, "1h", 0, 100.0, 100.0, 100.0, 100.0, 1.0) for s in symbols}
    from daemon.domain import Side
    from tests.engine_parts import prediction

    preds = {
        "A/USDT": [prediction("m", Side.LONG, 0.9)],
        "B/USDT": [prediction("m", Side.LONG, 0.8)],
        "C/USDT": [prediction("m", Side.SHORT, 0.9)],
    }
    positions = {
        "A/USDT": Position("A/USDT", 10.0, 100.0),
        "B/USDT": Position("B/USDT", 0.0),
        "C/USDT": Position("C/USDT", 20.0, 100.0),
    }
    plan = reb.plan(symbols, bars, {}, preds, positions, {s: 100.0 for s in symbols}, 10_000.0)
    assert plan.halted  # 10 000 is 16.7 % under the 12 000 peak
    assert plan.target.tolist() == [0.1, 0.0, 0.0]  # A kept (not grown), B not opened, C exited
    assert "drawdown halt" in plan.reasons["A/USDT"] and "C/USDT" not in plan.reasons


# -- bad config: one line naming the key ---------------------------------------------------------
@pytest.mark.parametrize(
    "text, needle",
    [
        (
            "[engine]\nstrategies = ['portfolio']\n[portfolio]\ndecision_timeframe = '4h'\n",
            "portfolio.decision_timeframe: '4h' is not streamed",
        ),
        (
            "[engine]\nstrategies = ['portfolio']\n[portfolio]\ndecision_timeframe = '5m'\n",
            "portfolio.decision_timeframe: expected one of 1m, 1h, 4h, 1d",
        ),
        (
            "[exchange]\nsymbols = ['ETH/USDT', 'XRP/USDT', 'ADA/USDT']\n[engine]\nstrategies = ['portfolio']\n"
            "[portfolio]\nmax_weight = 0.25\ngross_cap = 1.0\n",
            "portfolio.max_weight: 3 symbols x max_weight 0.25",
        ),
        ("[engine]\nstrategies = ['portfolio', 'confidence']\n", "engine.strategies: the portfolio strategy"),
    ],
)
def test_bad_portfolio_config_names_the_key(write_config, text: str, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle.replace("(", r"\(")) as err:
        config.load(write_config(text))
    assert "\n" not in str(err.value)


def test_a_model_needing_a_timeframe_not_streamed_names_the_key(write_config) -> None:
    cfg = config.load(write_config("[exchange]\ntimeframes = ['1m', '1h']\n"))
    with pytest.raises(ConfigError, match=r"exchange.timeframes: model 'm' needs '1d' windows but '1d' is not streamed"):
        check_model_windows(cfg, {"m": MomentumPredictor("m", key="1d")})
    with pytest.raises(ConfigError, match="exchange.reference_timeframe: model 'r'"):
        check_model_windows(cfg, {"r": MomentumPredictor("r", key="btc_1h")})
    check_model_windows(cfg, {"ok": MomentumPredictor("ok", key="1h"), "ref": MomentumPredictor("ref", key="btc_1m")})


# -- live: six symbols rebalance at 1h on the local exchange --------------------------------------
def hour_bars(lx: LocalExchange, symbol: str, start: int, n: int) -> list[Bar]:
    """The exchange's own closed 1h bars (aggregated from its 1m tape)."""
    market = lx.markets[symbol.replace("/", "")]
    return [Bar(symbol, "1h", start + i * HOUR, *map(float, market.closed_bar("1h", start + i * HOUR)[1:])) for i in range(n)]


async def test_six_symbols_rebalance_at_1h_with_orders_the_exchange_accepts(tmp_path) -> None:
    start, warm, hours = DAY_2021 - 20 * HOUR, 8, 12
    cfg = feed_config(symbols=TRADED, timeframes=("1h",))
    async with (
        local_exchange(start + warm * HOUR, 0.0, TAPE_2021, paused=True, balances={"USDT": 10_000.0}) as lx,
        exchange_client(lx, cfg) as client,
    ):
        await client.start()
        store, sink = Store(tmp_path / "s.sqlite"), ListSink()
        rings = Buffers()
        for s in TRADED:
            rings.add(s, "1h", 64)
        broker = TestnetBroker(store, sink, client, symbols=TRADED)
        engine = Engine(
            store=store,
            buffers=rings,
            predictors={"mom": MomentumPredictor("mom", key="1h", k=50.0)},
            sink=sink,
            broker=broker,
            symbols=TRADED,
            timeframes=("1h",),
            trigger_timeframe="1h",
            wait_for_decision=True,
            rebalancer=Rebalancer(SPEC, timeframe="1h", cost_rate=0.002),
        )
        await engine.start()
        series = {s: hour_bars(lx, s, start, warm + hours) for s in TRADED}
        for i in range(warm):
            for s in TRADED:
                rings.append(series[s][i])
        cycles = []
        for i in range(warm, warm + hours):
            lx.clock.advance_to(series[TRADED[0]][i].ts + HOUR + 1_000)  # just after the bars' close
            for s in TRADED:
                rings.append(series[s][i])
                await engine.on_bar(series[s][i])
            plan = engine.rebalancer.last
            assert plan is not None and plan.bar_ts == series[TRADED[0]][i].ts
            cycles.append(plan)
            # the book after the cycle's orders, at the exchange's prices: what the targets said
            bal = await client.fetch_balance()
            prices = {s: lx.markets[s.replace("/", "")].price(lx.now_ms()) for s in TRADED}
            held = {s: bal.get(s.split("/")[0], 0.0) for s in TRADED}
            equity = bal.get("USDT", 0.0) + sum(held[s] * prices[s] for s in TRADED)
            weights = np.array([held[s] * prices[s] / equity for s in TRADED])
            assert bal.get("USDT", 0.0) >= 0.0  # cash never negative
            assert np.all(weights <= SPEC.max_weight + 1e-3) and weights.sum() <= SPEC.gross_cap + 1e-3
            assert np.count_nonzero(plan.target) <= SPEC.top_k
            assert np.abs(weights - plan.target).max() < 0.01  # lot rounding and fees only
        rejected = [o for o, _ in store.orders() if o.status.value != "filled"]
        assert not rejected
        assert len(store.orders()) >= 6 and len({o.symbol for o, _ in store.orders()}) >= 5
        assert len({tuple(np.nonzero(p.target)[0]) for p in cycles}) > 1  # the book rotated
        assert all(engine.states[s].decisions == hours for s in TRADED)
        status = engine.status()["rebalance"]
        assert status["last_cycle"]["symbols"]["BTC/USDT"]["target"] is not None
        await engine.close()

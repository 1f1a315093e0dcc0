"""[engine], [strategy] and [broker] config: defaults, validation naming the key, wiring."""

from __future__ import annotations

from pathlib import Path

import pytest

from daemon import config
from daemon.service.check import run_checks
from daemon.store import Store
from daemon.trading.engine import Engine
from daemon.trading.orders import AlertsBroker
from daemon.trading.paper import PaperBroker
from tests.conftest import REPO
from tests.engine_parts import ListSink, buffers


def test_shipped_config_trades_on_paper_with_both_models_agreeing() -> None:
    cfg = config.load(REPO / "config.toml")
    assert cfg.broker.mode == "paper" and cfg.engine.trigger_timeframe == "1m"
    assert cfg.strategy.combine == "both"


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[engine]\ntrigger_timeframe = '7m'\n", "engine.trigger_timeframe: unknown timeframe '7m'"),
        ("[engine]\nstrategies = ['magic']\n", "engine.strategies: unknown strategy 'magic'"),
        ("[strategy]\ncombine = 'majority'\n", "strategy.combine: 'majority' is not one of"),
        ("[strategy]\nweights = {mtf_transformer = -1.0}\n", "strategy.weights.mtf_transformer: must be >= 0"),
        ("[strategy]\nstop_loss = 1.5\n", "strategy.stop_loss"),
        ("[strategy]\ncooldown_bars = -1\n", "strategy.cooldown_bars"),
        ("[strategy]\nposition_fraction = 0\n", "strategy.position_fraction"),
        ("[broker]\nmode = 'live'\n", "broker.mode: 'live' is not one of"),
        ("[broker]\nfee = -0.001\n", "broker.fee"),
        ("[broker]\nstarting_balance = 0\n", "broker.starting_balance"),
    ],
)
def test_bad_engine_config_names_the_key(write_config, text: str, needle: str) -> None:
    with pytest.raises(config.ConfigError) as err:
        config.load(write_config(text))
    assert needle in str(err.value)


def test_from_config_builds_strategies_risk_and_broker(write_config, tmp_path: Path) -> None:
    cfg = config.load(
        write_config(
            "[strategy]\ncombine = 'weighted'\nweights = {mtf = 2.0, cnn = 1.0}\ncooldown_bars = 4\n"
            "[engine]\ntrigger_timeframe = '1s'\n[broker]\nmode = 'alerts'\nstarting_balance = 500.0\n"
        )
    )
    store = Store(tmp_path / "s.sqlite")
    engine = Engine.from_config(cfg, store=store, buffers=buffers(), predictors={}, sink=ListSink())
    assert isinstance(engine.broker, AlertsBroker)
    state = engine.states["ETH/USDT"]
    assert state.strategies[0].weights == {"mtf": 2.0, "cnn": 1.0}
    assert (state.risk_params.cooldown_bars, state.risk_params.bar_ms) == (4, 1000)
    assert state.risk_params.starting_balance == 500.0 and engine.trigger_timeframe == "1s"
    paper = Engine.from_config(config.load(REPO / "config.toml"), store=store, buffers=buffers(), predictors={}, sink=ListSink())
    assert isinstance(paper.broker, PaperBroker) and paper.broker.fee == 0.001


def test_testnet_orders_are_refused_on_a_live_endpoint(write_config, tmp_path: Path, monkeypatch) -> None:
    cfg = config.load(write_config("[exchange]\nendpoint = 'live'\n[broker]\nmode = 'testnet'\n"))
    monkeypatch.delenv("SIGD_API_KEY", raising=False)
    problems = run_checks(cfg)
    assert any("exchange.endpoint 'live' is refused" in p for p in problems)
    assert any("SIGD_API_KEY" in p for p in problems)
    with pytest.raises(ValueError, match="refuses exchange.endpoint = 'live'"):
        Engine.from_config(
            cfg, store=Store(tmp_path / "s.sqlite"), buffers=buffers(), predictors={}, sink=ListSink(), exchange=object()
        )


def test_check_names_each_missing_exchange_key_once(write_config, monkeypatch) -> None:
    for env in ("SIGD_API_KEY", "SIGD_API_SECRET"):
        monkeypatch.delenv(env, raising=False)
    testnet = run_checks(config.load(write_config("[exchange]\nendpoint = 'testnet'\n[broker]\nmode = 'testnet'\n")))
    assert [sum(env in p for p in testnet) for env in ("SIGD_API_KEY", "SIGD_API_SECRET")] == [1, 1]
    # On the local exchange `sigd run` falls back to its loopback dev keys: nothing is missing.
    local = run_checks(config.load(write_config("[exchange]\nendpoint = 'local'\n[broker]\nmode = 'testnet'\n")))
    assert not [p for p in local if "SIGD_API_" in p]


def test_a_trigger_timeframe_that_is_not_streamed_is_a_config_error(write_config) -> None:
    # Valid as a timeframe, but no 5m bar would ever arrive: the engine would never decide.
    path = write_config("[exchange]\ntimeframes = ['1m', '1h']\n[engine]\ntrigger_timeframe = '5m'\n")
    with pytest.raises(config.ConfigError, match=r"engine\.trigger_timeframe: '5m' is not streamed"):
        config.load(path)


def test_from_config_keys_the_engine_by_symbol_with_overrides_and_portfolio(write_config, tmp_path: Path) -> None:
    cfg = config.load(
        write_config(
            "[exchange]\nsymbols = ['ETH/USDT', 'SOL/USDT', 'XRP/USDT']\n"
            "[strategy]\nposition_fraction = 0.2\nallow_short = true\n"
            "[symbols.'SOL/USDT']\nposition_fraction = 0.05\nallow_short = false\n"
            "[portfolio]\nmax_open_positions = 2\nmax_gross_exposure = 0.5\nper_symbol_cap = 0.3\n"
            "[engine]\ncycle_deadline_ms = 40\nprewarm_ms = 0\n"
        )
    )
    engine = Engine.from_config(cfg, store=Store(tmp_path / "s.sqlite"), buffers=buffers(), predictors={}, sink=ListSink())
    assert engine.symbols == ("ETH/USDT", "SOL/USDT", "XRP/USDT") and set(engine.states) == set(engine.symbols)
    sol, xrp = engine.states["SOL/USDT"].risk_params, engine.states["XRP/USDT"].risk_params
    assert (sol.position_fraction, sol.allow_short) == (0.05, False)
    assert (xrp.position_fraction, xrp.allow_short) == (0.2, True)
    assert (engine.portfolio.max_open_positions, engine.portfolio.max_gross_exposure, engine.portfolio.per_symbol_cap) == (
        2,
        0.5,
        0.3,
    )
    assert engine.cycles.deadline_s == 0.04 and engine.prewarm_s == 0.0
    assert set(engine.status()["symbols"]) == set(engine.symbols)

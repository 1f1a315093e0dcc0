"""Strategies and risk rules: every combine mode and every risk rule, by hand."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from daemon.domain import Position, Side, Signal
from strategies import risk
from strategies.confidence import ConfidenceStrategy, combine_both, combine_either, combine_weighted
from strategies.risk import RiskParams, RiskState
from strategies.threshold import decide, positions
from tests.engine_parts import T0, bar, prediction

L, S, F = Side.LONG, Side.SHORT, Side.FLAT
FLAT_POS = Position("ETH/USDT")
B = bar(T0, 100.0)


def two(a: Side, ca: float, b: Side, cb: float) -> list:
    return [prediction("mtf", a, ca), prediction("cnn", b, cb)]


@pytest.mark.parametrize(
    ("preds", "side", "conf"),
    [
        (two(L, 0.8, L, 0.6), L, 0.7),
        (two(S, 0.9, S, 0.7), S, 0.8),
        (two(L, 0.8, S, 0.9), F, 0.0),
        (two(L, 0.8, F, 0.9), F, 0.0),
        ([prediction("mtf", L, 0.9)], F, 0.0),  # the other model is missing: no agreement
    ],
)
def test_both_needs_every_model_to_agree(preds, side, conf) -> None:
    out = combine_both(preds)
    assert out.side == side
    assert out.confidence == pytest.approx(conf)


@pytest.mark.parametrize(
    ("preds", "side", "conf"),
    [
        (two(L, 0.8, F, 0.9), L, 0.8),
        (two(F, 0.9, S, 0.7), S, 0.7),
        (two(L, 0.6, L, 0.9), L, 0.9),
        (two(L, 0.8, S, 0.9), F, 0.0),  # conflict
        (two(F, 0.8, F, 0.9), F, 0.0),
    ],
)
def test_either_takes_any_unopposed_side(preds, side, conf) -> None:
    out = combine_either(preds)
    assert out.side == side
    assert out.confidence == pytest.approx(conf)


def test_weighted_score_by_hand() -> None:
    preds = two(L, 0.9, S, 0.6)
    # (3 * +1 * 0.9 + 1 * -1 * 0.6) / 4 = 0.525
    out = combine_weighted(preds, {"mtf": 3.0, "cnn": 1.0}, min_score=0.5)
    assert (out.side, out.confidence) == (L, pytest.approx(0.525))
    assert combine_weighted(preds, {"mtf": 3.0, "cnn": 1.0}, min_score=0.6).side == F
    # (1 * -1 * 0.9 + 1 * -1 * 0.6) / 2 = -0.75
    assert combine_weighted(two(S, 0.9, S, 0.6), {}, 0.5).side == S
    # A configured model that did not answer still weighs: 3 * 0.9 / (3 + 1) = 0.675
    out = combine_weighted([prediction("mtf", L, 0.9)], {"mtf": 3.0, "cnn": 1.0}, 0.5)
    assert out.confidence == pytest.approx(0.675)


def test_strategy_signals_only_on_a_change_of_side() -> None:
    strat = ConfidenceStrategy(combine="both")
    sig = strat.decide(two(L, 0.8, L, 0.6), FLAT_POS, B, RiskState())
    assert isinstance(sig, Signal) and sig.side == L and sig.price == 100.0 and sig.bar_ts == T0
    assert sig.model_versions == {"mtf": "v1", "cnn": "v1"}
    long_pos = Position("ETH/USDT", 1.0, 100.0)
    assert strat.decide(two(L, 0.8, L, 0.6), long_pos, B, RiskState()) is None
    exit_sig = strat.decide(two(L, 0.8, F, 0.6), long_pos, B, RiskState())
    assert exit_sig is not None and exit_sig.side == F
    assert ConfidenceStrategy(exit_on_flat=False).decide(two(L, 0.8, F, 0.6), long_pos, B, RiskState()) is None
    assert strat.decide(two(F, 0.8, F, 0.6), FLAT_POS, B, RiskState()) is None


def test_unknown_combine_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="combine must be one of"):
        ConfidenceStrategy(combine="majority")  # type: ignore[arg-type]


# --- risk -------------------------------------------------------------------------------------

P = RiskParams(starting_balance=10_000.0, position_fraction=0.1, max_position=5_000.0, bar_ms=60_000)


def sig(side: Side, price: float = 100.0, ts: int = T0) -> Signal:
    return Signal("ETH/USDT", ts, side, 0.8, price, "confidence")


def test_sizing_is_a_fraction_of_equity() -> None:
    v = risk.gate(sig(L), FLAT_POS, RiskState(), P)
    assert v.target == pytest.approx(10_000 * 0.1 / 100.0)
    v = risk.gate(sig(S), FLAT_POS, RiskState(), P)
    assert v.target == pytest.approx(-10.0)
    # Equity counts realized PnL net of fees: 10_000 + 500 - 20 = 10_480.
    pos = Position("ETH/USDT", 0.0, 0.0, realized_pnl=500.0, fees=20.0)
    assert risk.gate(sig(L), pos, RiskState(), P).target == pytest.approx(10_480 * 0.1 / 100.0)


def test_maximum_position_caps_the_notional() -> None:
    params = dataclasses.replace(P, position_fraction=1.0, max_position=2_500.0)
    assert risk.gate(sig(L, price=50.0), FLAT_POS, RiskState(), params).target == pytest.approx(50.0)


def test_cooldown_blocks_entries_for_n_bars_but_not_exits() -> None:
    params = dataclasses.replace(P, cooldown_bars=3)
    state = risk.after_trade(RiskState(), T0)
    for k, blocked in ((1, True), (2, True), (3, False)):
        v = risk.gate(sig(L, ts=T0 + k * 60_000), FLAT_POS, state, params)
        assert (v.blocked == "cooldown") is blocked, k
    long_pos = Position("ETH/USDT", 10.0, 100.0)
    v = risk.gate(sig(F, ts=T0 + 60_000), long_pos, state, params)
    assert v.target == 0.0 and v.blocked is None
    # A flip inside the cooldown closes the old side and opens nothing.
    v = risk.gate(sig(S, ts=T0 + 60_000), long_pos, state, params)
    assert v.target == 0.0 and v.signal is not None and v.signal.side == F and v.blocked == "cooldown"


@pytest.mark.parametrize(
    ("amount", "low", "high", "expect"),
    [
        (10.0, 97.9, 100.5, "stop_loss"),  # long, low 2.1 % under entry
        (10.0, 99.0, 104.2, "take_profit"),  # long, high 4.2 % over entry
        (10.0, 98.5, 103.0, None),
        (-10.0, 99.0, 102.5, "stop_loss"),  # short, high 2.5 % over entry
        (-10.0, 95.5, 100.0, "take_profit"),  # short, low 4.5 % under entry
        (10.0, 97.0, 105.0, "stop_loss"),  # both inside one bar: the stop is assumed first
    ],
)
def test_stop_loss_and_take_profit(amount: float, low: float, high: float, expect: str | None) -> None:
    params = dataclasses.replace(P, stop_loss=0.02, take_profit=0.04)
    pos = Position("ETH/USDT", amount, 100.0)
    out = risk.protective_exit(pos, bar(T0, 100.0, low=low, high=high), params)
    if expect is None:
        assert out is None
    else:
        assert out is not None and out.side == F and out.strategy == "risk" and out.reasons[0] == expect
    assert risk.protective_exit(FLAT_POS, bar(T0, 100.0, low=50.0, high=150.0), params) is None


def test_drawdown_halt_stops_new_entries_only() -> None:
    params = dataclasses.replace(P, max_drawdown=0.1)
    pos = Position("ETH/USDT", 100.0, 100.0)  # 10_000 of ETH on a 10_000 balance
    state = risk.observe(RiskState(), pos, bar(T0, 105.0), params)  # equity 10_500: the peak
    assert state.peak_equity == pytest.approx(10_500.0) and not state.halted
    state = risk.observe(state, pos, bar(T0 + 60_000, 96.0), params)  # 9_600: -8.6 %
    assert not state.halted
    state = risk.observe(state, pos, bar(T0 + 120_000, 94.0), params)  # 9_400: -10.5 %
    assert state.halted
    assert risk.gate(sig(F), pos, state, params).target == 0.0  # exits still pass
    assert risk.gate(sig(L), FLAT_POS, state, params).blocked == "drawdown_halt"
    assert RiskState.from_dict(state.to_dict()) == state


def test_shorts_can_be_forbidden() -> None:
    params = dataclasses.replace(P, allow_short=False)
    assert risk.gate(sig(S), FLAT_POS, RiskState(), params).blocked == "short_not_allowed"


def test_live_strategy_holds_exactly_the_positions_the_optimizer_measured() -> None:
    """Single model, a seeded sequence of thresholded predictions: the live strategy (position
    and last-trade state advanced as the engine does) is in the optimizer's position every bar."""
    rng = np.random.default_rng(3)
    hold, threshold = 4, 0.5
    probs = rng.dirichlet([1.0, 1.0, 1.0], size=300)  # [300, 3]
    sides = decide(probs, threshold)
    expected = positions(sides, hold)
    strat = ConfidenceStrategy(combine="either", min_models=1)
    pos, state, live = Position("ETH/USDT"), RiskState(), []
    for t, side in enumerate(sides.tolist()):
        b = bar(T0 + t * 60_000, 100.0)
        pred = dataclasses.replace(prediction("cnn", Side(side), float(probs[t].max()), threshold), hold_bars=hold)
        signal = strat.decide([pred], pos, b, state)
        if signal is not None:
            pos = Position("ETH/USDT", float(int(signal.side) - 1), 100.0)
            state = risk.after_trade(state, b.ts)
        live.append(int(np.sign(pos.amount)))
    assert live == expected.tolist()
    assert np.count_nonzero(np.diff(expected, prepend=0)) < np.count_nonzero(np.diff(positions(sides), prepend=0))


def test_flat_answer_waits_for_the_hold_live() -> None:
    strat = ConfidenceStrategy(combine="either", min_models=1)
    long_pos = Position("ETH/USDT", 1.0, 100.0)
    flat = dataclasses.replace(prediction("cnn", F, 0.4), hold_bars=3)
    entered = RiskState(last_trade_ts=T0)
    assert strat.decide([flat], long_pos, bar(T0 + 2 * 60_000, 100.0), entered) is None  # 2 bars old
    out = strat.decide([flat], long_pos, bar(T0 + 3 * 60_000, 100.0), entered)
    assert out is not None and out.side == F  # 3 bars old: the hold has expired
    short = dataclasses.replace(prediction("cnn", S, 0.9), hold_bars=3)
    flip = strat.decide([short], long_pos, bar(T0 + 60_000, 100.0), entered)
    assert flip is not None and flip.side == S  # the opposite side flips inside the hold


@pytest.mark.parametrize(
    ("amount", "low", "high", "rule", "detail"),
    [
        (10.0, 97.9, 100.5, "stop_loss", "LONG entry 100, bar low 97.9: -2.10 % (limit 2.00 %)"),
        (-10.0, 99.0, 102.5, "stop_loss", "SHORT entry 100, bar high 102.5: -2.50 % (limit 2.00 %)"),
        (10.0, 99.0, 104.2, "take_profit", "LONG entry 100, bar high 104.2: +4.20 % (limit 4.00 %)"),
        (-10.0, 95.5, 100.0, "take_profit", "SHORT entry 100, bar low 95.5: +4.50 % (limit 4.00 %)"),
    ],
)
def test_protective_exit_reasons_name_the_rule_the_price_and_the_override(
    amount: float, low: float, high: float, rule: str, detail: str
) -> None:
    params = dataclasses.replace(P, stop_loss=0.02, take_profit=0.04)
    out = risk.protective_exit(Position("ETH/USDT", amount, 100.0), bar(T0, 100.0, low=low, high=high), params)
    assert out is not None and out.reasons == (rule, detail, "risk exit: overrides the holding period")

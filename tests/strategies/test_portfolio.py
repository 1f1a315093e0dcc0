"""Portfolio construction: selection, sizing, caps, band, penalty, costs and bad settings."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strategies.portfolio import (
    Costs,
    PortfolioError,
    PortfolioSpec,
    cost_rates,
    drift,
    rebalance_cost,
    target_weights,
    turnover,
    weights_path,
)

HOURS = 24 * 365


def _tw(scores: list[float], current: list[float] | None = None, vol: list[float] | None = None, **spec: object) -> np.ndarray:
    s = np.array(scores, dtype=float)
    c = np.zeros_like(s) if current is None else np.array(current, dtype=float)
    v = None if vol is None else np.array(vol, dtype=float)
    return target_weights(s, c, v, PortfolioSpec(**spec), HOURS)  # type: ignore[arg-type]


def test_long_only_top_k_equal_weights() -> None:
    w = _tw([0.3, -0.1, 0.5, 0.2, 0.0], top_k=2, max_weight=0.5)
    assert w.tolist() == pytest.approx([0.5, 0.0, 0.5, 0.0, 0.0])


def test_long_only_never_shorts_and_needs_a_positive_score() -> None:
    w = _tw([-0.3, -0.1, 0.0], max_weight=1.0)
    assert w.tolist() == [0.0, 0.0, 0.0]


def test_min_score_is_a_threshold_on_both_sides() -> None:
    w = _tw([0.05, 0.2, -0.2, -0.05], long_short=True, min_score=0.1, max_weight=0.5)
    assert w.tolist() == pytest.approx([0.0, 0.5, -0.5, 0.0])


def test_long_short_splits_the_book_and_respects_net_cap() -> None:
    w = _tw([0.4, 0.3, -0.2, -0.5], long_short=True, top_k=2, max_weight=0.5, net_cap=0.0)
    assert w.tolist() == pytest.approx([0.25, 0.25, -0.25, -0.25])
    assert abs(w.sum()) <= 1e-12
    # Only longs on offer: the net cap shrinks them to the cap.
    w = _tw([0.4, 0.3, 0.2, 0.1], long_short=True, max_weight=0.5, net_cap=0.5)
    assert w.sum() == pytest.approx(0.5)


def test_per_symbol_cap_clips_without_redistributing() -> None:
    w = _tw([0.9, 0.1, 0.0, 0.0], max_weight=0.3)
    assert w.tolist() == pytest.approx([0.3, 0.3, 0.0, 0.0])


def test_vol_target_scales_the_book_and_weights_inverse_to_vol() -> None:
    per_period = 0.8 / math.sqrt(HOURS)  # two names at 80 % annualised volatility
    w = _tw([1.0, 1.0], vol=[per_period, per_period / 2], max_weight=1.0, vol_target=0.2)
    # Inverse vol: the calmer name holds twice as much.
    assert w[1] == pytest.approx(2 * w[0])
    book_vol = float((np.abs(w) * np.array([per_period, per_period / 2])).sum()) * math.sqrt(HOURS)
    assert book_vol == pytest.approx(0.2)


def test_vol_target_never_exceeds_the_gross_cap() -> None:
    tiny = 0.01 / math.sqrt(HOURS)
    w = _tw([1.0, 1.0, 1.0, 1.0], vol=[tiny] * 4, vol_target=0.5, gross_cap=1.0, max_weight=0.5)
    assert np.abs(w).sum() == pytest.approx(1.0)


def test_nan_score_keeps_the_held_weight() -> None:
    w = _tw([float("nan"), 0.5, 0.1], current=[0.2, 0.0, 0.0], top_k=1, max_weight=0.8)
    assert w[0] == pytest.approx(0.2)
    assert w[1] == pytest.approx(0.8)


def test_no_trade_band_holds_small_moves_but_never_blocks_an_exit() -> None:
    held = [0.26, 0.24, 0.25, 0.0]
    w = _tw([0.5, 0.4, -0.1, 0.3], current=held, max_weight=0.5, gross_cap=0.75, no_trade_band=0.03)
    # 0.26 -> 0.25 and 0.24 -> 0.25 are inside the band: kept. Symbol 2 exits despite the band.
    assert w[0] == pytest.approx(0.26) and w[1] == pytest.approx(0.24)
    assert w[2] == 0.0
    assert w[3] == pytest.approx(0.25)


def test_turnover_penalty_moves_part_of_the_way() -> None:
    w = _tw([0.5, 0.0], current=[0.0, 0.0], max_weight=1.0, turnover_penalty=1.0)
    assert w[0] == pytest.approx(0.5)


def test_costs_are_charged_on_turnover() -> None:
    rates = cost_rates([Costs(fee_bps=10, spread_bps=4, slippage_bps=1), Costs(fee_bps=7.5)])
    assert rates.tolist() == pytest.approx([0.0013, 0.00075])
    current = np.array([0.5, 0.0])
    target = np.array([0.1, 0.3])
    assert turnover(current, target) == pytest.approx(0.7)
    assert rebalance_cost(current, target, rates) == pytest.approx(0.4 * 0.0013 + 0.3 * 0.00075)


def test_drift_follows_prices_and_keeps_the_book_consistent() -> None:
    w = drift(np.array([0.5, 0.5]), np.array([0.1, -0.1]))
    assert w.tolist() == pytest.approx([0.55, 0.45])
    # A symbol with no bar keeps its weight; a wiped-out book holds nothing.
    assert drift(np.array([0.5, 0.5]), np.array([float("nan"), 0.0])).tolist() == pytest.approx([0.5, 0.5])
    assert drift(np.array([1.0]), np.array([-1.0])).tolist() == [0.0]


def test_weights_path_is_sequential_and_uses_the_band() -> None:
    scores = np.array([[0.5, 0.4], [0.5, 0.4], [-0.1, 0.4]])
    spec = PortfolioSpec(max_weight=0.6, no_trade_band=0.05)
    returns = np.array([[0.0, 0.0], [0.02, -0.02], [0.0, 0.0]])
    path = weights_path(scores, None, spec, HOURS, returns=returns)
    assert path[0].tolist() == pytest.approx([0.5, 0.5])
    # Drifted to 0.51 / 0.49: inside the band and the caps, nothing trades.
    assert path[1].tolist() == pytest.approx([0.51, 0.49])
    assert path[2][0] == 0.0


@pytest.mark.parametrize(
    ("spec", "n", "key"),
    [
        (PortfolioSpec(max_weight=0.0), 5, "max_weight"),
        (PortfolioSpec(gross_cap=-1.0), 5, "gross_cap"),
        (PortfolioSpec(top_k=6), 5, "top_k"),
        (PortfolioSpec(top_k=3, long_short=True), 5, "top_k"),
        (PortfolioSpec(top_k=2, max_weight=0.25), 5, "max_weight"),
        (PortfolioSpec(vol_target=0.0), 5, "vol_target"),
        (PortfolioSpec(no_trade_band=-0.1), 5, "no_trade_band"),
        (PortfolioSpec(turnover_penalty=float("nan")), 5, "turnover_penalty"),
        (PortfolioSpec(max_weight=0.1), 5, "max_weight"),
    ],
)
def test_settings_that_cannot_work_name_their_key(spec: PortfolioSpec, n: int, key: str) -> None:
    with pytest.raises(PortfolioError) as err:
        spec.validate(n)
    assert err.value.key == key
    assert str(err.value).startswith(f"{key}: ")


def test_negative_cost_names_the_key() -> None:
    with pytest.raises(PortfolioError, match="^slippage_bps: "):
        Costs(slippage_bps=-1.0)


_weights = st.floats(min_value=-0.6, max_value=0.6, allow_nan=False)
_scores = st.one_of(st.floats(min_value=-1, max_value=1, allow_nan=False), st.just(float("nan")))


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(_scores, _weights, st.floats(min_value=1e-4, max_value=0.05)), min_size=1, max_size=12),
    st.booleans(),
    st.floats(min_value=0.05, max_value=1.0),
    st.floats(min_value=0.1, max_value=2.0),
    st.floats(min_value=0.0, max_value=2.0),
    st.floats(min_value=0.0, max_value=0.1),
    st.one_of(st.none(), st.floats(min_value=0.05, max_value=1.0)),
)
def test_weights_always_within_limits(
    rows: list[tuple[float, float, float]],
    long_short: bool,
    max_weight: float,
    gross_cap: float,
    net_cap: float,
    band: float,
    vol_target: float | None,
) -> None:
    scores = np.array([r[0] for r in rows])
    current = np.array([r[1] for r in rows])
    vol = np.array([r[2] for r in rows])
    spec = PortfolioSpec(
        long_short=long_short,
        max_weight=max_weight,
        gross_cap=gross_cap,
        net_cap=net_cap,
        no_trade_band=band,
        vol_target=vol_target,
    )
    w = target_weights(scores, current, vol, spec, HOURS)
    assert np.all(np.isfinite(w))
    assert np.all(np.abs(w) <= max_weight + 1e-9)
    assert np.abs(w).sum() <= gross_cap + 1e-9
    assert abs(w.sum()) <= net_cap + 1e-9
    if not long_short:
        # Long-only never opens a short: a short can only be what was held, shrunk by the caps.
        opened = (w < 0) & ~(current < 0)
        assert not opened.any()

"""Portfolio baselines: same spec (sizing), same simulator, and what each one is by hand."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from daemon.research import baselines
from daemon.research.portfolio_sim import simulate
from strategies.portfolio import PortfolioError, PortfolioSpec, weights_path

HOUR = 3_600_000
PPY = 24 * 365


def market(t: int = 24 * 80, s: int = 6, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    close = 100 * np.cumprod(1 + rng.normal(0.0, 0.01, size=(t, s)), axis=0)
    close[:300, -1] = np.nan  # listed later
    close[500:510, min(2, s - 1)] = np.nan  # an outage
    return np.arange(t, dtype=np.int64) * HOUR, close


@pytest.mark.parametrize("name", baselines.BASELINE_NAMES)
def test_every_baseline_obeys_the_strategy_spec(name: str) -> None:
    ts, close = market()
    spec = PortfolioSpec(max_weight=0.3, gross_cap=0.6, top_k=2)
    w = baselines.baseline_weights(name, ts, close, spec, PPY)
    assert w.shape == close.shape and np.isfinite(w).all()
    res = simulate(w, close, np.full(6, 0.001), PPY)
    held = res.weights[:-1]
    assert (held[:300, -1] == 0).all()  # nothing is held before it has a price
    if name == "buy_and_hold":  # it never trades after buying: its weights drift; the caps bind at the buys
        held = held[res.turnover > 0]
    assert np.abs(held).max() <= 0.3 + 1e-9
    assert np.abs(held).sum(axis=1).max() <= 0.6 + 1e-9
    assert (held >= -1e-12).all()  # long-only spec: no baseline shorts


def test_flat_is_zero_and_buy_and_hold_pays_only_at_entry_and_listing() -> None:
    ts, close = market()
    spec = PortfolioSpec(max_weight=0.2, gross_cap=1.0)
    assert not baselines.baseline_weights("flat", ts, close, spec, PPY).any()
    w = baselines.baseline_weights("buy_and_hold", ts, close, spec, PPY)
    res = simulate(w, close, np.full(6, 0.001), PPY)
    paid = np.flatnonzero(res.costs > 1e-12)
    assert paid.tolist() == [0, 300]  # the first buy, the listing of the last symbol
    assert w[0, :5] == pytest.approx([0.2] * 5)


def test_cross_sectional_momentum_holds_the_top_k_by_30_day_return_for_a_week() -> None:
    ts, close = market(t=24 * 60, s=8, seed=3)
    close[:, -1] = np.nan
    close[:, -1] = 100.0  # the last symbol never moves
    spec = PortfolioSpec(max_weight=0.5, top_k=2)
    w = baselines.baseline_weights("xs_momentum", ts, close, spec, PPY)
    week_rows = np.flatnonzero(baselines.every(ts, 7 * 86_400_000))
    ret30 = close / np.roll(close, 30 * 24, axis=0) - 1
    for r in week_rows:
        if r < 30 * 24:
            continue
        best = set(np.argsort(-ret30[r])[:2].tolist())
        assert set(np.flatnonzero(w[r] > 0).tolist()) == best
    # held, not re-decided, between two weekly rows: the same names (drift past a cap is trimmed)
    names = [tuple(np.flatnonzero(row > 0)) for row in w]
    changed = np.flatnonzero([a != b for a, b in itertools.pairwise(names)]) + 1
    assert set(changed.tolist()) <= set(week_rows.tolist())


def test_time_series_momentum_long_short_follows_each_symbols_own_trend() -> None:
    t = 24 * 40
    ts = np.arange(t, dtype=np.int64) * HOUR
    close = np.column_stack([np.linspace(100, 200, t), np.linspace(200, 100, t)])
    spec = PortfolioSpec(long_short=True, max_weight=0.5)
    w = baselines.baseline_weights("ts_momentum", ts, close, spec, PPY)
    last_day = np.flatnonzero(baselines.every(ts, 86_400_000))[-1]
    assert w[last_day].tolist() == [0.5, -0.5]
    assert not w[: 30 * 24].any()  # no 30-day history yet


def test_vol_targeted_buy_and_hold_scales_with_the_spec_target() -> None:
    ts, close = market(s=4)
    spec = PortfolioSpec(max_weight=1.0, gross_cap=1.0, vol_target=0.05)
    lo = baselines.baseline_weights("vol_target_buy_and_hold", ts, close, spec, PPY)
    hi = baselines.baseline_weights("vol_target_buy_and_hold", ts, close, dataclasses.replace(spec, vol_target=0.1), PPY)
    last_day = np.flatnonzero(baselines.every(ts, 86_400_000))[-1]
    assert np.abs(hi[last_day]).sum() == pytest.approx(2 * np.abs(lo[last_day]).sum(), rel=1e-9)
    assert np.abs(hi[last_day]).sum() < 1.0  # the target, not the cap, sized it


def test_k_larger_than_the_universe_names_top_k() -> None:
    ts, close = market(s=3)
    with pytest.raises(PortfolioError, match="top_k"):
        baselines.baseline_weights("xs_momentum", ts, close, PortfolioSpec(top_k=5), PPY)


@settings(max_examples=30, deadline=None)
@given(st.floats(0.01, 0.2), st.integers(0, 10_000))
def test_the_no_trade_band_holds_in_the_simulated_portfolio(band: float, seed: int) -> None:
    # prices stand still, so every weight change simulate sees is a trade the portfolio module made;
    # caps wide enough never to rescale band-held weights (a cap would move them: caps are hard limits)
    rng = np.random.default_rng(seed)
    t, s = 200, 5
    close = np.full((t, s), 100.0)
    spec = PortfolioSpec(long_short=True, max_weight=0.4, gross_cap=2.0, net_cap=2.0, no_trade_band=band)
    w = weights_path(rng.normal(size=(t, s)), None, spec, PPY)
    res = simulate(w, close, np.full(s, 0.001), PPY)
    held = res.weights[:-1]
    move = np.abs(np.diff(np.vstack([np.zeros(s), held]), axis=0))
    exits = held == 0
    assert ((move < 1e-12) | (move >= band - 1e-12) | exits).all()
    assert res.turnover == pytest.approx(move.sum(axis=1))
    assert res.costs == pytest.approx(0.001 * move.sum(axis=1))


def test_spec_is_the_strategys_sizing_not_all_equity() -> None:
    ts, close = market(s=1)
    close[:, 0] = np.linspace(100, 110, len(ts))
    spec = PortfolioSpec(max_weight=0.1, gross_cap=0.1)
    w = baselines.baseline_weights("buy_and_hold", ts, close, dataclasses.replace(spec), PPY)
    assert w[0, 0] == pytest.approx(0.1)

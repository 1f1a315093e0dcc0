"""Features and samples without look-ahead: causal features, live == training windows, splits."""

from __future__ import annotations

import numpy as np
import pytest

from models import indicators
from models.datasets import TEST, TRAIN, VAL, assemble, build_symbol_samples, live_windows
from models.features import FeatureSpec, Scaler, encode_window, encode_windows
from models.targets import IGNORE, TargetSpec, balance, labels
from tests.pipeline_builders import random_bars

TARGET = TargetSpec(horizon=5, threshold=0.003, neutral_zone=0.001)


def _future_replaced(bars: np.ndarray, t: int, seed: int = 9) -> np.ndarray:
    """Same bars up to row t; every later bar replaced by another random walk (same timestamps)."""
    other = random_bars(len(bars), seed=seed, price=float(bars[t, 4]) * 1.5)
    out = bars.copy()
    out[t + 1 :, 1:] = other[t + 1 :, 1:]
    return out


@pytest.mark.parametrize("kind, feature_set", [("mtf", "bar"), ("sequence", "full"), ("sequence", "minimal")])
def test_features_up_to_t_ignore_every_later_bar(kind: str, feature_set: str) -> None:
    bars = random_bars(400)
    spec = FeatureSpec(kind, 8, ("1m",), feature_set)
    for t in (150, 250, 398):
        a, b = spec.raw_features(bars), spec.raw_features(_future_replaced(bars, t))
        np.testing.assert_array_equal(a[: t + 1], b[: t + 1])
        assert not np.array_equal(a[t + 1 :], b[t + 1 :]) or t == 399


def test_indicators_have_the_documented_warmup_and_are_finite_after() -> None:
    feats = indicators.indicator_features(random_bars(300))
    assert np.isnan(feats[: indicators.FULL_WARMUP]).all()
    assert np.isfinite(feats[indicators.FULL_WARMUP :]).all()
    assert feats.shape[1] == len(indicators.FULL_NAMES)


def _samples(spec: FeatureSpec, bars: np.ndarray):
    series = {"1m": bars}
    return assemble([(build_symbol_samples("ETH/USDT", series, spec, TARGET), series)], spec)


def test_live_window_encodes_exactly_the_training_window() -> None:
    bars = random_bars(900)
    spec = FeatureSpec("sequence", 16, ("1m",), "full")
    ss = _samples(spec, bars)
    for i in (0, 123, len(ss.y) - 1):
        row = int(ss.ends["1m"][i])
        windows = live_windows({"1m": bars}, int(bars[row, 0]), ss.spec.required_windows)
        np.testing.assert_allclose(
            encode_windows(windows, ss.spec)["1m"], ss.gather("1m", np.array([i]))[0][0], rtol=1e-6, atol=1e-6
        )


def test_windows_never_cross_a_split_and_targets_stay_inside() -> None:
    bars = random_bars(1000)
    spec = FeatureSpec("mtf", 20, ("1m",), "bar")
    ss = _samples(spec, bars)
    need, n = spec.required_windows["1m"], len(bars)
    bounds = [0, int(n * 0.7), int(n * 0.85), n]
    for part in (TRAIN, VAL, TEST):
        rows = ss.ends["1m"][ss.split == part]
        assert len(rows) > 0
        assert rows.min() - need + 1 >= bounds[part] and rows.max() + TARGET.horizon < bounds[part + 1]


def test_the_scaler_sees_no_validation_or_test_statistic() -> None:
    bars = random_bars(1000)
    spec = FeatureSpec("mtf", 20, ("1m",), "bar")
    base = _samples(spec, bars)
    first_val = int(base.ends["1m"][base.split == VAL].min()) - spec.required_windows["1m"] + 1
    wild = bars.copy()
    wild[first_val:, 1:5] *= np.linspace(1.0, 5.0, len(bars) - first_val)[:, None]  # a different future
    wild[first_val:, 5] *= 100.0
    changed = _samples(spec, wild)
    assert changed.spec.scalers == base.spec.scalers
    train = base.indices(TRAIN)
    np.testing.assert_array_equal(base.gather("1m", train)[0], changed.gather("1m", train)[0])
    # the centre is the mean over exactly the rows of training windows
    rows = np.unique((base.ends["1m"][train][:, None] + np.arange(-19, 1)).ravel())
    expected = Scaler.fit(spec.raw_features(bars)[rows])
    assert base.spec.scalers["1m"].center == pytest.approx(expected.center)


def test_a_window_spanning_a_gap_is_not_used() -> None:
    bars = np.delete(random_bars(400), 300, axis=0)
    spec = FeatureSpec("sequence", 16, ("1m",), "full")
    ss = _samples(spec, bars)
    need = spec.required_windows["1m"]
    assert not np.any((ss.ends["1m"] >= 299) & (ss.ends["1m"] - need + 1 < 300))
    fitted = ss.spec
    assert encode_window(bars[300 - need + 5 : 305], "1m", fitted) is None  # live: same rule
    assert encode_window(bars[: need - 1], "1m", fitted) is None  # too short


def test_labels_by_hand_and_balancing_equalizes_train() -> None:
    close = np.array([100.0, 100.5, 99.0, 99.05, 100.0, 100.0, 100.0])
    spec = TargetSpec(horizon=1, threshold=0.004, neutral_zone=0.001)
    # +0.5 % LONG, -1.49 % SHORT, +0.05 % FLAT, +0.96 % LONG, 0 FLAT, 0 FLAT, unknown
    assert labels(close, spec).tolist() == [2, 0, 1, 2, 1, 1, IGNORE]
    amb = TargetSpec(horizon=1, threshold=0.004, neutral_zone=0.001)
    assert labels(np.array([100.0, 100.2]), amb).tolist() == [IGNORE, IGNORE]  # +0.2 %: ambiguous
    y = np.array([0, 0, 0, 1, 2, 2, 1, 0, IGNORE])
    kept = balance(np.arange(len(y)), y, np.random.default_rng(0))
    assert sorted(np.bincount(y[kept]).tolist()) == [2, 2, 2]


def test_a_global_model_concatenates_windows_never_rows_across_symbols() -> None:
    spec = FeatureSpec("sequence", 16, ("1m",), "full")
    eth, btc = random_bars(700, seed=1), random_bars(500, seed=2, price=60000.0)
    per = [(build_symbol_samples(s, {"1m": b}, spec, TARGET), {"1m": b}) for s, b in (("ETH/USDT", eth), ("BTC/USDT", btc))]
    ss = assemble(per, spec)
    first = ss.ends["1m"] - spec.seq_len + 1
    in_eth = (first >= 0) & (ss.ends["1m"] < len(eth))
    in_btc = (first >= len(eth)) & (ss.ends["1m"] < len(eth) + len(btc))
    assert np.array_equal(in_eth, ss.symbol_id == 0) and np.array_equal(in_btc, ss.symbol_id == 1)
    i = int(np.flatnonzero(ss.symbol_id == 1)[0])  # BTC's first window equals BTC alone
    alone = assemble([per[1]], spec)
    j = int(alone.ends["1m"][0])
    assert j + len(eth) == ss.ends["1m"][i]

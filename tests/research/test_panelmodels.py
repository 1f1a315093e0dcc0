"""Pooled panel models: a planted, learnable edge is found out of sample by LightGBM and by a
tiny window network; scores respect the test rows and the pairs without bars."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from daemon.research.panelmodels import PanelModelSpec, fold_scores, spec_from_dict
from models.labels import LabelSpec, forward_return, make_labels
from models.panel import Panel
from models.xsfeatures import XSConfig, xs_features

HOUR = 3_600_000


def planted_panel(T: int = 1500, S: int = 6, seed: int = 0) -> Panel:
    """Random walks whose next 4-bar drift follows the sign of the last 4-bar move (momentum):
    an edge the features (r4) carry and the targets can learn."""
    rng = np.random.default_rng(seed)
    r = rng.normal(0, 0.01, (T, S))
    for t in range(8, T):
        r[t] += 0.004 * np.sign(r[t - 4 : t].sum(axis=0))
    close = 100 * np.exp(np.cumsum(r, axis=0))
    close[:300, 5] = np.nan  # a late listing
    vol = np.where(np.isfinite(close), 10.0, np.nan)
    syms = ("BTC/USDT", *(f"A{i}/USDT" for i in range(1, S)))
    return Panel("1h", syms, np.arange(T, dtype=np.int64) * HOUR, close, close, close, close, vol, {})


@pytest.mark.parametrize(
    "family,kind",
    [
        ("lgbm", "forward_return"),
        ("lgbm", "triple_barrier"),
        ("lgbm", "meta"),
        ("gru", "triple_barrier"),
        ("tcn", "forward_return"),
    ],
)
def test_planted_edge_is_found_out_of_sample(family: str, kind: str) -> None:
    panel = planted_panel()
    _, X = xs_features(panel, XSConfig(horizons=(1, 4, 8), vol_window=24, long_window=96))
    spec = PanelModelSpec(
        family,
        LabelSpec(kind, horizon=4, vol_window=24, momentum=4, cost=0.0),
        epochs=3,
        params={"n_estimators": 60} if family == "lgbm" else {},
        seq_len=8,
    )
    y = make_labels(panel.close, spec.label)
    split = SimpleNamespace(train_idx=np.arange(0, 1000), test_idx=np.arange(1010, 1500))
    (s,) = fold_scores(X, y, panel.close, spec, [split])
    assert s.shape == (490, 6)
    fwd = forward_return(panel.close, 4)[split.test_idx]
    ok = np.isfinite(s) & np.isfinite(fwd)
    assert np.corrcoef(s[ok], fwd[ok])[0, 1] > 0.1, spec.name


def test_scores_only_where_the_pair_has_a_bar() -> None:
    panel = planted_panel()
    _, X = xs_features(panel, XSConfig(horizons=(1, 4, 8), vol_window=24, long_window=96))
    spec = PanelModelSpec("lgbm", LabelSpec("forward_return", horizon=4, cost=0.0), params={"n_estimators": 10})
    y = make_labels(panel.close, spec.label)
    split = SimpleNamespace(train_idx=np.arange(400, 1500), test_idx=np.arange(0, 350))
    (s,) = fold_scores(X, y, panel.close, spec, [split])
    assert np.isnan(s[:300, 5]).all()  # not listed yet
    assert np.isfinite(s[100:, :5]).all()


def test_spec_round_trip_and_bad_family() -> None:
    spec = PanelModelSpec("gru", LabelSpec("vol", horizon=6), params={"hidden": 4})
    assert spec_from_dict(spec.to_dict()) == spec
    with pytest.raises(ValueError, match="nope"):
        PanelModelSpec("nope")

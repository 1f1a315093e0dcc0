"""Panel targets: small cases computed by hand."""

from __future__ import annotations

import numpy as np
import pytest

from models.labels import (
    LabelSpec,
    cost_aware_positions,
    forward_return,
    forward_vol,
    label_end,
    make_labels,
    meta_labels,
    momentum_side,
    scores,
    triple_barrier,
)


def col(*v: float) -> np.ndarray:
    return np.array(v, dtype=np.float64)[:, None]


def test_triple_barrier_by_hand() -> None:
    # barrier = width * vol * sqrt(H) = 1 * 0.05 * 2 = 0.1 in log space, H = 4
    c = col(100, 105, 112, 100, 95, 89, 90, 91, 92, 93)
    vol = np.full(c.shape, 0.05)
    lab, at = triple_barrier(c, vol, horizon=4, width=1.0)
    # t=0: log(112/100)=0.113 >= 0.1 at i=2 -> +1
    assert lab[0, 0] == 1 and at[0, 0] == 2
    # t=1 (105): 112 (+0.064), 100 (-0.049), 95 (-0.100), 89 (-0.165): first <= -0.1 at i=4?
    # log(95/105) = -0.1001 <= -0.1 -> -1 at i=3
    assert lab[1, 0] == -1 and at[1, 0] == 3
    # t=4 (95): 89, 90, 91, 92: log(89/95)=-0.065 -> no touch -> time limit 0
    assert lab[4, 0] == 0 and at[4, 0] == 4
    # the last 4 rows cannot see H bars ahead
    assert np.isnan(lab[6:, 0]).all()


def test_triple_barrier_gap_and_no_vol_are_unknown() -> None:
    c = col(100, 101, np.nan, 103, 104, 105, 106)
    vol = np.full(c.shape, 0.01)
    vol[5] = np.nan
    lab, _ = triple_barrier(c, vol, horizon=2, width=1.0)
    assert np.isnan(lab[0, 0]) and np.isnan(lab[1, 0]) and np.isnan(lab[2, 0])  # a gap on the path
    assert lab[3, 0] == 1  # log(105/103) = 0.019 >= 0.01*sqrt2 = 0.0141
    assert np.isnan(lab[5, 0])  # no vol, and the end


def test_make_labels_triple_barrier_classes_are_shifted() -> None:
    rng = np.random.default_rng(0)
    c = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, (400, 3)), axis=0))
    y = make_labels(c, LabelSpec("triple_barrier", horizon=10, vol_window=20))
    vals = set(np.unique(y[np.isfinite(y)]).tolist())
    assert vals == {0.0, 1.0, 2.0}
    # no vol before 16 of the 20 returns (80 %) exist, i.e. row 16; no label in the last H rows
    assert np.isnan(y[:16]).all() and np.isfinite(y[16:-10]).all() and np.isnan(y[-10:]).all()


def test_forward_return_and_cost_aware_rule() -> None:
    c = col(100, 110, 121, np.nan, 100)
    r = forward_return(c, 2)
    assert np.isclose(r[0, 0], np.log(1.21)) and np.isnan(r[1, 0]) and np.isnan(r[3, 0])
    pred = np.array([0.003, -0.0025, 0.001, -0.0005, np.nan])
    assert cost_aware_positions(pred, 0.002).tolist() == [1, -1, 0, 0, 0]
    out = scores(LabelSpec("forward_return", cost=0.002), pred[:, None], np.ones((5, 1)))
    assert np.allclose(out[:, 0], [0.003, -0.0025, 0, 0, 0])


def test_meta_labels_by_hand() -> None:
    c = col(100, 90, 95, 100, 99, 120)
    side = momentum_side(c, 1)
    assert side[:, 0].tolist() == [0, -1, 1, 1, -1, 1]
    y = meta_labels(c, side, horizon=1, cost=0.02)
    # t=0 no side; t=1 short: next 95/90 up -> lose -> 0; t=2 long: 100/95 +5.1% > 2% -> 1;
    # t=3 long: 99/100 -> 0; t=4 short: 120/99 -> 0; t=5: the end
    assert np.isnan(y[0, 0]) and y[1:5, 0].tolist() == [0, 1, 0, 0] and np.isnan(y[5, 0])
    # score: side * P(take) when P > 0.5
    p = np.stack([1 - np.array([0.9, 0.9, 0.7, 0.4, 0.6, 0.5]), [0.9, 0.9, 0.7, 0.4, 0.6, 0.5]], axis=-1)[:, None]
    s = scores(LabelSpec("meta", momentum=1), p, c)
    assert np.allclose(s[:, 0], [0, -0.9, 0.7, 0, -0.6, 0])


def test_forward_vol_by_hand() -> None:
    c = col(100, 110, 99, 99)
    v = forward_vol(c, 2)
    r1, r2, r3 = np.log(1.1), np.log(0.9), 0.0
    assert np.isclose(v[0, 0], np.sqrt((r1**2 + r2**2) / 2))
    assert np.isclose(v[1, 0], np.sqrt((r2**2 + r3**2) / 2))
    assert np.isnan(v[2:, 0]).all()
    y = make_labels(c, LabelSpec("vol", horizon=2))
    assert np.isclose(y[0, 0], np.log(v[0, 0]))
    # sizing: side / forecast relative to the median forecast
    s = scores(LabelSpec("vol", momentum=1), np.log(np.array([[0.01], [0.02], [0.04], [0.02]])), col(1, 2, 1, 2))
    assert np.allclose(s[:, 0], [0, 1.0, -0.5, 1.0])


def test_label_end_and_spec_checks() -> None:
    spec = LabelSpec("triple_barrier", horizon=3)
    assert label_end(np.array([0, 10]), spec, 10).tolist() == [30, 40]
    assert LabelSpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(ValueError, match="^label.kind"):
        LabelSpec("direction")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="^label.cost"):
        LabelSpec(cost=-0.1)
    with pytest.raises(ValueError, match=r"^label: unknown key\(s\) \['horizn'\]"):
        LabelSpec.from_dict({"horizn": 3})

"""CPCV: purge and embargo hold on random cases; paths cover every decision once."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from daemon.research.cpcv import (
    cpcv_paths,
    cpcv_splits,
    n_paths,
    path_sharpes,
    path_values,
)

HOUR = 3_600_000


@st.composite
def cases(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, int, int, int]:
    n = draw(st.integers(8, 120))
    gaps = draw(st.lists(st.integers(0, 5), min_size=n, max_size=n))  # 0: two decisions at one instant
    ts = np.cumsum(np.array(gaps, dtype=np.int64) * HOUR)
    horizon = np.array(draw(st.lists(st.integers(0, 12), min_size=n, max_size=n)), dtype=np.int64) * HOUR
    n_groups = draw(st.integers(2, min(10, n)))
    k = draw(st.integers(1, n_groups - 1))
    embargo = draw(st.integers(0, 6)) * HOUR
    return ts, ts + horizon, n_groups, k, embargo


@settings(max_examples=200, deadline=None)
@given(cases())
def test_no_training_label_meets_a_test_label_or_follows_it_within_the_embargo(case) -> None:
    ts, end, n_groups, k, embargo = case
    splits = cpcv_splits(ts, n_groups, k, end, embargo)
    assert len(splits) == math.comb(n_groups, k)
    for s in splits:
        assert not set(s.train_idx.tolist()) & set(s.test_idx.tolist())
        tr, te = s.train_idx, s.test_idx
        if not len(tr):
            continue
        # pairwise over every training and test decision
        overlap = (ts[tr][:, None] <= end[te][None, :]) & (end[tr][:, None] >= ts[te][None, :])
        assert not overlap.any(), "purge: a training label overlaps a test label"
        after = (ts[tr][:, None] > end[te][None, :]) & (ts[tr][:, None] <= end[te][None, :] + embargo)
        assert not after.any(), "embargo: training starts within the embargo after a test label ends"


@settings(max_examples=100, deadline=None)
@given(cases())
def test_paths_cover_every_decision_exactly_once(case) -> None:
    ts, end, n_groups, k, embargo = case
    splits = cpcv_splits(ts, n_groups, k, end, embargo)
    paths = cpcv_paths(splits, n_groups)
    assert paths.shape == (n_paths(n_groups, k), n_groups)
    # each split's out-of-sample value at a decision = the decision's position: a path must hold 0..n-1
    values = path_values(splits, paths, [s.test_idx.astype(float) for s in splits], len(ts))
    for row in values:
        assert np.array_equal(row, np.arange(len(ts), dtype=float))
    # every (split, group) pair is used by exactly one path
    used = {(int(s), g) for row in paths for g, s in enumerate(row)}
    assert len(used) == paths.size == sum(len(s.test_groups) for s in splits)


def test_no_purge_without_overlap_keeps_every_other_group() -> None:
    ts = np.arange(60, dtype=np.int64) * HOUR
    splits = cpcv_splits(ts, 6, 2, ts, 0)
    assert len(splits) == 15 and n_paths(6, 2) == 5
    for s in splits:
        assert len(s.train_idx) + len(s.test_idx) == 60


def test_purge_and_embargo_drop_exactly_the_neighbours() -> None:
    ts = np.arange(30, dtype=np.int64) * HOUR
    end = ts + 2 * HOUR  # labels look two decisions ahead
    split = next(s for s in cpcv_splits(ts, 3, 1, end, HOUR) if s.test_groups == (1,))
    assert split.test_idx.tolist() == list(range(10, 20))
    # purge: 8, 9 (their labels reach 10, 11); the test block's labels end at 21 h, embargo 1 h:
    # decisions 20, 21 (inside the labels) and 22 (inside the embargo) go
    assert split.train_idx.tolist() == list(range(8)) + list(range(23, 30))


def test_path_sharpes_of_a_planted_drift() -> None:
    rng = np.random.default_rng(0)
    r = rng.normal(0.001, 0.01, size=(3, 5000))
    sharpe = path_sharpes(r, 8760)
    expected = r.mean(axis=1) / r.std(axis=1, ddof=1) * math.sqrt(8760)
    assert np.allclose(sharpe, expected)


@pytest.mark.parametrize(
    "n_groups, k, match", [(1, 1, "n_groups 1"), (4, 4, "n_test_groups 4"), (4, 0, "n_test_groups 0"), (50, 2, "n_groups 50")]
)
def test_bad_grid_names_the_setting(n_groups: int, k: int, match: str) -> None:
    ts = np.arange(20, dtype=np.int64)
    with pytest.raises(ValueError, match=match):
        cpcv_splits(ts, n_groups, k, ts, 0)


def test_negative_embargo_and_unsorted_times_rejected() -> None:
    ts = np.arange(20, dtype=np.int64)
    with pytest.raises(ValueError, match="embargo_ms"):
        cpcv_splits(ts, 4, 1, ts, -1)
    with pytest.raises(ValueError, match="sorted"):
        cpcv_splits(ts[::-1].copy(), 4, 1, ts[::-1].copy(), 0)

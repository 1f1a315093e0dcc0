"""The gate on CPCV paths: judged by the mean of the paths' returns over the T decisions, the
same function for one series; sound under the null, and more power than one path."""

from __future__ import annotations

import numpy as np
import pytest

from daemon.research import stats
from daemon.research.evaluation import evaluate_configs


def test_paths_are_judged_by_their_mean_over_the_t_decisions() -> None:
    rng = np.random.default_rng(0)
    paths = rng.normal(0.001, 0.01, size=(5, 3000))
    on_paths = stats.gate(paths, 100, 10)
    on_mean = stats.gate(paths.mean(axis=0), 100, 10)
    assert on_paths.bars == 3000  # T decisions, not 5 x T
    assert (on_paths.sharpe, on_paths.psr, on_paths.dsr) == pytest.approx((on_mean.sharpe, on_mean.psr, on_mean.dsr))


def test_one_path_is_the_series_itself() -> None:
    r = np.random.default_rng(1).normal(0.0005, 0.01, size=2000)
    assert stats.gate(r[None, :], 40, 3) == stats.gate(r, 40, 3)


def test_a_decision_no_path_covers_is_left_out() -> None:
    paths = np.array([[0.01, np.nan, -0.02, 0.03], [0.03, np.nan, np.nan, 0.01]])
    assert stats.pooled(paths) == pytest.approx([0.02, -0.02, 0.02])
    with pytest.raises(ValueError, match="returns: need a series"):
        stats.pooled(np.zeros((2, 3, 4)))


def _draws(edge: float, n: int, rng: np.random.Generator, t: int = 1000, paths: int = 5) -> np.ndarray:
    """[n, paths, t] CPCV-like paths: one market per draw that every path trades, plus each path's
    own model noise (the split models differ), and a per-period edge."""
    market = rng.normal(0.0, 1.0, size=(n, 1, t))
    model = rng.normal(0.0, 0.6, size=(n, paths, t))
    out: np.ndarray = market + model + edge
    return out


def test_pooling_is_sound_under_the_null_and_finds_an_edge_more_often() -> None:
    rng = np.random.default_rng(7)
    null = _draws(0.0, 400, rng)
    # PSR >= 0.95 with no edge: about 5 % pooled, as for one path (treating the pool as
    # 5 x T independent returns would pass far more often)
    false_pass = np.mean([stats.gate(d, 100, 1, min_dsr=0.0).passed for d in null])
    assert 0.02 <= false_pass <= 0.09
    as_if_independent = np.mean([stats.gate(d.reshape(-1), 100, 1, min_dsr=0.0).passed for d in null])
    assert as_if_independent > 0.15
    edged = _draws(0.1, 400, rng)
    pooled = np.mean([stats.gate(d, 100, 10).passed for d in edged])
    median = np.mean([stats.gate(d[np.argsort(d.mean(axis=1) / d.std(axis=1))[2]], 100, 10).passed for d in edged])
    assert pooled > median + 0.05


def test_the_leaderboard_verdict_is_the_gate_on_the_paths() -> None:
    rng = np.random.default_rng(2)
    returns = {"a": rng.normal(0.0004, 0.01, size=(5, 5000)), "b": rng.normal(0.0, 0.01, size=(5, 5000))}
    v = evaluate_configs(returns, {"a": 60, "b": 60}, 8760)
    variance_of = [stats.moments(stats.pooled(returns[n])).sharpe for n in ("a", "b")]
    expected = stats.gate(returns["a"], 60, 2, trial_sharpes=variance_of)
    assert v.configs[0].gate == expected.to_dict()

"""PSR, DSR and the gate against values worked out by hand (Bailey & López de Prado)."""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
import pytest

from daemon.research import stats

PHI = NormalDist().cdf
R = [1.0, -1.0, 1.0, -1.0, 1.0, 1.0]  # mean 1/3, population sd sqrt(8/9)


def test_moments_by_hand() -> None:
    m = stats.moments(R)
    assert m.sharpe == pytest.approx(1 / math.sqrt(8))  # (1/3) / sqrt(8/9)
    assert m.skew == pytest.approx(-1 / math.sqrt(2))  # (4 * 2^-1.5 - 2 * 2^1.5) / 6
    assert m.kurtosis == pytest.approx(1.5)  # (4 * 1/4 + 2 * 4) / 6
    assert m.n == 6


def test_psr_by_hand() -> None:
    # 1 - g3 SR + (g4 - 1)/4 SR^2 = 1 + 1/4 + 1/64 = 1.265625, sqrt = 1.125
    expected = PHI((1 / math.sqrt(8)) * math.sqrt(5) / 1.125)
    assert stats.psr(stats.moments(R)) == pytest.approx(expected)
    assert stats.psr(stats.moments(R)) == pytest.approx(0.7589, abs=1e-4)
    # against a benchmark equal to the estimate: a coin flip
    assert stats.psr(stats.moments(R), benchmark=1 / math.sqrt(8)) == pytest.approx(0.5)


def test_expected_max_sharpe_by_hand() -> None:
    # (1 - gamma) Phi^-1(0.9) + gamma Phi^-1(1 - 1/(10 e)) with unit variance
    a, b = 1.2815515655446004, NormalDist().inv_cdf(1 - 1 / (10 * math.e))
    assert stats.expected_max_sharpe(10, 1.0) == pytest.approx((1 - 0.5772156649) * a + 0.5772156649 * b)
    # close to the exact expected maximum of 10 standard normals (1.5388)
    assert stats.expected_max_sharpe(10, 1.0) == pytest.approx(1.5388, abs=0.05)
    assert stats.expected_max_sharpe(10, 4.0) == pytest.approx(2 * stats.expected_max_sharpe(10, 1.0))
    assert stats.expected_max_sharpe(1, 1.0) == 0.0


def test_dsr_deflates_with_the_number_of_tries() -> None:
    m = stats.moments(R)
    assert stats.dsr(m, 1) == pytest.approx(stats.psr(m))
    # null variance 1/(T-1) = 0.2: SR0 = sqrt(0.2) * E[max of 5]
    sr0 = math.sqrt(0.2) * stats.expected_max_sharpe(5, 1.0)
    assert stats.dsr(m, 5) == pytest.approx(PHI((1 / math.sqrt(8) - sr0) * math.sqrt(5) / 1.125))
    assert stats.dsr(m, 100) < stats.dsr(m, 5) < stats.dsr(m, 1)
    # the tries' own Sharpes give the variance when there are two or more
    tries = [0.1, 0.3, 0.2]
    sr0 = math.sqrt(0.01) * stats.expected_max_sharpe(3, 1.0)
    assert stats.dsr(m, 3, tries) == pytest.approx(PHI((1 / math.sqrt(8) - sr0) * math.sqrt(5) / 1.125))


def test_gate_passes_an_edge_and_fails_noise_and_anecdotes() -> None:
    rng = np.random.default_rng(3)
    edge = rng.normal(0.002, 0.01, 5000)  # per-bar Sharpe 0.2 over 5000 bars
    ok = stats.gate(edge, trades=200, n_trials=20)
    assert ok.passed and ok.psr > 0.99 and ok.dsr > 0.95 and "200 trades" in ok.why
    # the best of 200 pure-noise tries: a positive Sharpe that deflation rejects
    noise = [rng.normal(0.0, 0.01, 500) for _ in range(200)]
    best = max(noise, key=lambda r: stats.moments(r).sharpe)
    verdict = stats.gate(best, trades=100, n_trials=200)
    assert stats.moments(best).sharpe > 0 and verdict.psr > 0.9
    assert not verdict.passed and verdict.dsr < 0.95 < verdict.psr + 0.1 and verdict.psr > verdict.dsr
    assert "DSR" in verdict.why and "after 200 configurations" in verdict.why
    few = stats.gate(edge, trades=7, n_trials=1)
    assert not few.passed and few.why == "7 trades < 30"
    flat = stats.gate(np.zeros(100), trades=0, n_trials=1)
    assert not flat.passed and flat.psr == 0.5 and flat.to_dict()["trades"] == 0


def test_bad_returns_are_refused() -> None:
    with pytest.raises(ValueError, match="NaN"):
        stats.moments([0.1, float("nan")])
    with pytest.raises(ValueError, match="at least 2"):
        stats.moments([0.1])
    with pytest.raises(ValueError, match="n_trials"):
        stats.expected_max_sharpe(0, 1.0)

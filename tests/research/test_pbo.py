"""PBO on synthetic cases with a known answer."""

from __future__ import annotations

import numpy as np
import pytest

from daemon.research.pbo import pbo


def test_all_noise_configurations_overfit_half_the_time() -> None:
    # PBO of pure noise is 0.5 in expectation; averaged over seeds to keep the test tight
    values = [pbo(np.random.default_rng(s).normal(0, 0.01, size=(2000, 20)), n_blocks=10).pbo for s in range(8)]
    assert 0.35 <= float(np.mean(values)) <= 0.65


def test_one_dominant_configuration_is_not_overfit() -> None:
    rng = np.random.default_rng(1)
    m = rng.normal(0, 0.01, size=(2000, 20))
    m[:, 7] += 0.004  # per-period Sharpe 0.4: wins in-sample and out-of-sample in every split
    result = pbo(m, n_blocks=10)
    assert result.pbo < 0.02
    assert result.n_splits == 252 and result.n_configs == 20
    assert np.median(result.logits) > 2


def test_configurations_that_flip_are_overfit() -> None:
    # each configuration is good in one half of the blocks and bad in the other: the IS winner loses OOS
    rng = np.random.default_rng(2)
    m = rng.normal(0, 0.01, size=(1600, 8))
    for j in range(8):
        m[(j * 200) : (j * 200 + 200), j] += 0.01
    assert pbo(m, n_blocks=8).pbo > 0.7


@pytest.mark.parametrize(
    "shape, blocks, match", [((100, 1), 4, "at least 2"), ((100, 3), 5, "n_blocks 5"), ((10, 3), 8, "n_blocks 8")]
)
def test_bad_input_names_the_setting(shape: tuple[int, int], blocks: int, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        pbo(np.zeros(shape), n_blocks=blocks)

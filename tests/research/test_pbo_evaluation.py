"""A run's verdict: CPCV distributions, N over runs (temporary MLflow store), PBO across configurations."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from daemon.research.evaluation import evaluate_configs, markdown
from daemon.research.registry import Registry

PPY = 8760


def _paths(rng: np.random.Generator, mean: float, n_paths: int = 5, t: int = 20_000) -> np.ndarray:
    return rng.normal(mean, 0.01, size=(n_paths, t))


def test_a_real_edge_passes_noise_fails_and_pbo_is_low(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    returns = {f"noise{i}": _paths(rng, 0.0) for i in range(5)}
    returns["edge"] = _paths(rng, 0.0006)  # about 5.7 annualised
    v = evaluate_configs(returns, {n: 500 for n in returns}, PPY)
    by = {c.name: c for c in v.configs}
    assert by["edge"].gate["passed"] and not any(by[f"noise{i}"].gate["passed"] for i in range(5))
    assert len(by["edge"].path_sharpes) == 5 and by["edge"].p05 <= by["edge"].median_sharpe <= by["edge"].p95
    assert v.n_trials == 6 and v.pbo is not None and v.pbo["pbo"] < 0.1
    assert any("PBO" in line for line in markdown(v))


def test_n_counts_the_earlier_run_on_the_same_data_set(tmp_path: Path) -> None:
    reg = Registry(f"sqlite:///{tmp_path / 'mlflow.db'}")
    rng = np.random.default_rng(1)
    first = {f"a{i}": _paths(rng, 0.0, t=2000) for i in range(3)}
    v1 = evaluate_configs(
        first, {n: 50 for n in first}, PPY, configs={n: {"alpha": n} for n in first}, dataset="ds", registry=reg, group="run-1"
    )
    second = {f"b{i}": _paths(rng, 0.0, t=2000) for i in range(2)}
    v2 = evaluate_configs(
        second, {n: 50 for n in second}, PPY, configs={n: {"beta": n} for n in second}, dataset="ds", registry=reg, group="run-2"
    )
    assert (v1.n_trials, v2.n_trials) == (3, 5)
    assert all(c.gate["n_trials"] == 5 for c in v2.configs)  # the DSR was deflated by both runs


def test_configurations_on_different_periods_are_refused() -> None:
    with pytest.raises(ValueError, match="different periods"):
        evaluate_configs({"a": np.zeros((2, 10)), "b": np.zeros((2, 11))}, {}, PPY)

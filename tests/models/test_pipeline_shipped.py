"""The shipped artifacts load, answer a live window set, and were trained before the 2025 data."""

from __future__ import annotations

import json

import pytest

from daemon.domain import Side
from pipeline.predictor import Predictor
from tests.conftest import REPO
from tests.pipeline_builders import random_bars

START_2025 = 1_735_689_600_000  # 2025-01-01T00:00Z
# The recorded probabilities were computed on another CPU: float32 kernels differ in their last
# bits between CPUs (0.3789364695549011 here, 0.3789364993572235 where it was recorded, 8e-8
# apart), so a probability is compared to 1e-6 relative. A model that moved would differ by
# far more; the sides must still be exactly the recorded ones.
RTOL = 1e-6


@pytest.mark.parametrize("name", ["cnn_lstm_attn", "mtf_transformer"])
def test_shipped_artifact_loads_and_predicts(name: str) -> None:
    pred = Predictor.load(REPO / "models" / "artifacts" / name, device="cpu")
    assert pred.meta["data"]["last_close_ts"] < START_2025  # the 2025 period stays out of sample
    assert pred.meta["training"]["preset"] == "small" and pred.meta["samples"]["symbols"] == ["ETH/USDT", "BTC/USDT"]
    end = START_2025
    windows = {
        "1s": random_bars(60, "1s", start_ms=end - 60_000),  # live-only 1s: never an input
        "1m": random_bars(600, start_ms=end - 600 * 60_000),
        "1h": random_bars(600, "1h", start_ms=end - 600 * 3_600_000, vol=0.01),
        "1d": random_bars(600, "1d", start_ms=end - 600 * 86_400_000, vol=0.03),
        "btc_1m": random_bars(600, start_ms=end - 600 * 60_000, price=60000.0, seed=4),
    }
    assert "1s" not in pred.required_windows
    p = pred.predict(windows, int(windows["1m"][-1, 0]))
    assert p.model == name and p.version == pred.version and p.side in tuple(Side)
    assert sum(p.probs) == pytest.approx(1.0, abs=1e-5) and p.threshold == pred.threshold
    # the threshold was optimized holding each position for the target horizon, and trades so live
    assert pred.hold_bars == pred.meta["target"]["horizon"] == p.hold_bars


def test_shipped_artifacts_still_give_the_predictions_they_gave_before_the_family_refactor() -> None:
    # Recorded with the code before models became families (the same windows, the same
    # artifacts): the refactor and the scores mapping must not move a probability beyond
    # float32 rounding.
    recorded = json.loads((REPO / "tests" / "models" / "shipped_predictions.json").read_text())
    start = START_2025
    for name, rows in recorded.items():
        pred = Predictor.load(REPO / "models" / "artifacts" / name, device="cpu")
        for seed, row in enumerate(rows):
            end = start - seed * 3_600_000
            w = {
                "1m": random_bars(600, start_ms=end - 600 * 60_000, seed=seed),
                "1h": random_bars(600, "1h", start_ms=end - 600 * 3_600_000, vol=0.01, seed=seed + 10),
                "1d": random_bars(600, "1d", start_ms=end - 600 * 86_400_000, vol=0.03, seed=seed + 20),
                "btc_1m": random_bars(600, start_ms=end - 600 * 60_000, price=60000.0, seed=seed + 30),
            }
            p = pred.predict(w, int(w["1m"][-1, 0]))
            assert list(p.probs) == pytest.approx(row["probs"], rel=RTOL), (name, seed)
            assert int(p.side) == row["side"], (name, seed)
            assert p.confidence == pytest.approx(row["confidence"], rel=RTOL), (name, seed)

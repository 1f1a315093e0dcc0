"""The shipped hourly artifacts (models/artifacts/hourly/) are not saturated: on the bundled
May 2021 tape (five coins through the 2021-05-19 sell-off, the windows `sigd run -c
config.hourly.toml` holds) their P(long) moves over time and differs across coins, and the
share of their inputs clipped at +-10 is reported per input and stays bounded.

Floors and ceilings, with what was measured (`python -m daemon.commands.saturation`, 48 bars):

| | cross-symbol sd | over-time sd | mean / max correlation |
|---|---|---|---|
| hourly mtf_transformer | 0.0072 | 0.0285 | 0.947 / 0.996 |
| hourly cnn_lstm_attn | 0.0065 | 0.0405 | 0.970 / 0.993 |
| 1m cnn_lstm_attn (before, 48 1m bars) | 0.0156 | 0.0155 | 0.41 / 0.86 |

The hourly models move with the market over time (the over-time floor), but they rank the coins
alike: at one bar their P(long) differs across coins by less than the 1m model's did, and the
coins' series correlate 0.95-0.97 on average through the sell-off. The cross-symbol floor and the
correlation ceiling below are weak bounds that hold today, not a sign of cross-sectional skill
(docs/guides/research.md, "The shipped hourly models").
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from pipeline.saturation import report
from tests.conftest import REPO

HOURLY = REPO / "models" / "artifacts" / "hourly"
FAMILIES = ("mtf_transformer", "cnn_lstm_attn")
BARS = 48  # the tape's last 48 complete hours: 2021-05-18 evening to 2021-05-20 evening, the sell-off inside
OVER_TIME_STD_FLOOR = 0.015  # mean sd of P(long) over the 48 bars, per coin (the 1m hybrid: 0.007)
CROSS_SYMBOL_STD_FLOOR = 0.005  # mean sd of P(long) across the five coins at the same bar
CORRELATION_CEILING = 0.98  # mean correlation of two coins' P(long) series (measured 0.947 and 0.970)
# Share of an input feature's values clipped at +-10, per family: the hybrid's bar2 features are
# vol-normalised (<= 2.1 % measured); the window models' indicators are not, and on the crash
# tape clip up to 44 % (1d range, ETH) and 24 % (1h atr14).
CLIP_CEILING = {"mtf_transformer": 0.05, "cnn_lstm_attn": 0.5}


@pytest.fixture(scope="module", params=FAMILIES)
def shipped(request: pytest.FixtureRequest) -> tuple[str, dict]:
    return request.param, report(HOURLY / request.param, bars=BARS)


def test_shipped_hourly_artifacts_are_1h_models_with_daily_and_btc_context() -> None:
    for name in FAMILIES:
        meta = json.loads((HOURLY / name / "artifact.json").read_text())
        assert meta["features"]["trigger"] == "1h"
        assert meta["features"]["inputs"] == ["1h", "1d", "btc_1h"]
        assert meta["train_spec"]["trigger_timeframe"] == "1h" and meta["train_spec"]["decision_timeframe"] == "1h"
        assert "/hourly" in meta["train_spec"]["data_dirs"][0]


def test_shipped_hourly_models_vary_over_time_and_across_coins(shipped: tuple[str, dict]) -> None:
    name, r = shipped
    numbers = {k: round(v, 4) for k, v in r.items() if isinstance(v, float)}
    assert r["bars"] == BARS, numbers
    assert r["cross_symbol_std"] >= CROSS_SYMBOL_STD_FLOOR, (name, numbers)
    assert r["over_time_std"] >= OVER_TIME_STD_FLOOR, (name, numbers)
    assert r["mean_correlation"] <= CORRELATION_CEILING, (name, numbers)


def test_clipped_share_is_reported_per_input_and_bounded(shipped: tuple[str, dict]) -> None:
    name, r = shipped
    clip = r["clip_share"]
    assert set(clip) == {"1h", "1d", "btc_1h"}, (name, clip)  # every input window counted (ETH has 1d history)
    for key, shares in clip.items():
        assert all(np.isfinite(list(shares.values()))), (name, key)
        assert max(shares.values()) <= CLIP_CEILING[name], (name, key, shares)


def test_the_hourly_config_serves_them() -> None:
    res = subprocess.run(
        [sys.executable, "-m", "daemon", "check", "-c", "config.hourly.toml"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-2000:]

"""No look-ahead through a higher-timeframe bar that is still forming at decision time t.

At 12:30 the 12:00 1h bar and today's 1d bar are forming: neither the training windows
(models.datasets) nor the live/backtest windows (live_windows -> Predictor) may hold them,
so replacing them (and everything later) changes nothing a model sees or says at 12:30,
while changing the newest CLOSED 1h bar does change it (the test can fail).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from models.data import load_series
from models.datasets import assemble, build_symbol_samples, live_windows
from models.features import FeatureSpec
from models.targets import TargetSpec
from pipeline.predictor import Predictor
from tests.conftest import REPO
from tests.pipeline_builders import random_bars

HOUR, DAY, MINUTE = 3_600_000, 86_400_000, 60_000
TAPE = REPO / "daemon" / "localexchange" / "tape"


def _forming_replaced(bars: np.ndarray, step: int, t_close: int, factor: float) -> np.ndarray:
    """Every bar not closed by t_close (the forming one and later) with prices scaled."""
    out = bars.copy()
    out[bars[:, 0] + step > t_close, 1:5] *= factor
    return out


def test_training_windows_hold_no_forming_hour_or_day_bar() -> None:
    start = 40 * DAY
    m1 = random_bars(3 * 1440, start_ms=start, seed=1)
    h1 = random_bars(24 * 40, "1h", start_ms=start - 30 * DAY, seed=2)
    d1 = random_bars(60, "1d", start_ms=start - 57 * DAY, seed=3)
    spec = FeatureSpec("mtf", 8, ("1m", "1h", "1d"), "bar")
    target = TargetSpec(horizon=5, threshold=0.003, neutral_zone=0.001)
    series = {"1m": m1, "1h": h1, "1d": d1}
    base = assemble([(build_symbol_samples("ETH/USDT", series, spec, target), series)], spec)
    t_close = None
    for i in np.flatnonzero(base.extra["close_ts"] % HOUR == 30 * MINUTE)[:20]:  # hh:30, mid-hour
        ts = int(base.extra["close_ts"][i])
        for key, bars, step in (("1h", h1, HOUR), ("1d", d1, DAY)):
            e = int(base.ends[key][i])
            assert e >= 0 and bars[e, 0] + step <= ts < bars[e + 1, 0] + step  # the newest CLOSED bar
        changed = {"1m": m1, "1h": _forming_replaced(h1, HOUR, ts, 1.3), "1d": _forming_replaced(d1, DAY, ts, 0.7)}
        other = assemble([(build_symbol_samples("ETH/USDT", changed, spec, target), changed)], spec, scalers=base.spec.scalers)
        for key in ("1h", "1d"):
            np.testing.assert_array_equal(base.gather(key, np.array([i]))[0], other.gather(key, np.array([i]))[0])
        t_close = ts
    assert t_close is not None


def test_a_model_says_the_same_whatever_the_forming_hour_and_day_bars_hold(tiny_artifacts: dict[str, Path]) -> None:
    predictor = Predictor.load(tiny_artifacts["mtf_transformer"], "cpu")
    assert {"1h", "1d"} <= set(predictor.spec.inputs)
    series = {
        "1m": load_series([TAPE], "ETH/USDT", "1m"),
        "1h": load_series([TAPE], "ETH/USDT", "1h"),
        "1d": load_series([TAPE], "ETH/USDT", "1d"),
        "btc_1m": load_series([TAPE], "BTC/USDT", "1m"),
    }
    bar_ts = int(series["1m"][-1, 0]) - 3 * DAY
    bar_ts -= bar_ts % HOUR - 29 * MINUTE  # the 1m bar of hh:29, deciding at hh:30
    t_close = bar_ts + MINUTE
    sizes = predictor.required_windows
    windows = live_windows(series, bar_ts, sizes)
    assert windows["1h"][-1, 0] + HOUR <= t_close < windows["1h"][-1, 0] + 2 * HOUR
    assert windows["1d"][-1, 0] + DAY <= t_close
    before = predictor.predict(windows, bar_ts).probs
    forming = {
        **series,
        "1h": _forming_replaced(series["1h"], HOUR, t_close, 1.5),
        "1d": _forming_replaced(series["1d"], DAY, t_close, 0.6),
    }
    assert predictor.predict(live_windows(forming, bar_ts, sizes), bar_ts).probs == before
    # the newest closed hour does reach the model: the comparison above can fail
    closed = series["1h"].copy()
    closed[int(np.searchsorted(closed[:, 0], windows["1h"][-1, 0])), 1:5] *= 1.5
    assert predictor.predict(live_windows({**series, "1h": closed}, bar_ts, sizes), bar_ts).probs != before

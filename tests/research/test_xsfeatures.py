"""Cross-sectional features: causality canary, hand-checked values, context alignment."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from daemon.research.dataset import load_panel
from models.panel import Panel, resample_panel
from models.xsfeatures import (
    XSConfig,
    context_rows,
    feature_names,
    xs_features,
    xs_rank,
)
from tests.conftest import REPO

HOUR = 3_600_000
TAPE_2021 = REPO / "daemon" / "localexchange" / "tape_2021"


def synthetic(T: int = 600, S: int = 5, seed: int = 0, start: int = 1_600_041_600_000) -> Panel:
    """Random-walk panel with BTC first, some gaps and a late listing."""
    rng = np.random.default_rng(seed)
    r = rng.normal(0, 0.01, (T, S))
    close = 100 * np.exp(np.cumsum(r, axis=0))
    open_ = np.vstack([close[:1], close[:-1]])
    high, low = np.maximum(open_, close) * 1.002, np.minimum(open_, close) * 0.998
    volume = rng.uniform(1, 100, (T, S))
    close[50:53, 2] = np.nan
    close[:200, 4] = np.nan  # listed later
    for a in (open_, high, low, volume):
        a[np.isnan(close)] = np.nan
    syms = ("BTC/USDT", *(f"A{i}/USDT" for i in range(1, S)))
    return Panel("1h", syms, start + np.arange(T, dtype=np.int64) * HOUR, open_, high, low, close, volume, {s: 0 for s in syms})


def shuffled_after(panel: Panel, t: int, seed: int) -> Panel:
    """Every field of every pair after row t permuted (rows), everything up to t untouched."""
    rng = np.random.default_rng(seed)
    perm = t + 1 + rng.permutation(len(panel.ts) - t - 1)
    fields = {}
    for f in ("open", "high", "low", "close", "volume"):
        a = getattr(panel, f).copy()
        a[t + 1 :] = a[perm] * rng.uniform(0.5, 2.0)  # and rescaled: any use of the future shows
        fields[f] = a
    return Panel(panel.timeframe, panel.symbols, panel.ts, gaps=panel.gaps, **fields)


@pytest.mark.parametrize("t", [250, 377, 480])
def test_canary_features_at_t_use_only_bars_closed_by_t(t: int) -> None:
    panel = synthetic()
    cfg = XSConfig(horizons=(1, 3, 12, 24), vol_window=24, long_window=96, context=("4h", "1d"))
    names, x = xs_features(panel, cfg)
    _, y = xs_features(shuffled_after(panel, t, seed=t), cfg)
    assert x.shape == (len(panel.ts), len(panel.symbols), len(names))
    assert np.array_equal(x[: t + 1], y[: t + 1], equal_nan=True)
    # the canary is alive: the future did change the features after t, context included
    assert not np.array_equal(x[t + 1 :], y[t + 1 :], equal_nan=True)
    late = t + 48
    for k in (names.index("ctx1d_r1"), names.index("ctx4h_r1")):
        assert not np.array_equal(x[late:, :, k], y[late:, :, k], equal_nan=True)
    # every own-timeframe feature and the 4h context exist once history is there (for BTC)
    base = [i for i, n in enumerate(names) if not n.startswith("ctx1d")]
    assert np.isfinite(x[300:, 0][:, base]).all()


def test_canary_on_real_bars(tmp_path: Path) -> None:
    panel = load_panel(TAPE_2021, "1h", cache_dir=tmp_path / "c")
    names, x = xs_features(panel, XSConfig(horizons=(1, 4, 24, 48), vol_window=24, long_window=120, context=("4h", "1d")))
    t = 700
    _, y = xs_features(
        shuffled_after(panel, t, seed=1), XSConfig(horizons=(1, 4, 24, 48), vol_window=24, long_window=120, context=("4h", "1d"))
    )
    assert np.array_equal(x[: t + 1], y[: t + 1], equal_nan=True)
    # per-symbol normalisation: every coin's normalised returns have a comparable spread
    sd = np.nanstd(x[200:, :, names.index("r1")], axis=0)
    assert np.all((sd > 0.5) & (sd < 2.0)), sd


def test_hand_values() -> None:
    ts = 1_600_041_600_000 + np.arange(6, dtype=np.int64) * HOUR
    btc = np.array([100, 101, 99, 102, 103, 101.0])
    alt = btc**2 / 100  # log returns exactly 2x BTC's
    close = np.column_stack([btc, alt, np.full(6, 5.0)])
    close[3, 2] = np.nan
    p = Panel("1h", ("BTC/USDT", "ALT/USDT", "FLAT/USDT"), ts, close, close, close, close, np.ones((6, 3)) * 10, {})
    names, x = xs_features(p, XSConfig(horizons=(1, 2), vol_window=3, long_window=4))
    f = {n: x[..., i] for i, n in enumerate(names)}
    # beta of ALT to BTC is 2 wherever the window is full (4 returns: rows 4, 5)
    assert np.allclose(f["beta"][4:, 1], 2.0, atol=1e-5) and np.allclose(f["beta"][4:, 0], 1.0, atol=1e-5)
    # BTC relative to itself is 0
    assert np.allclose(f["rel1"][2:, 0], 0.0)
    # ranks at row 1: returns BTC +1 %, ALT +2 %, FLAT 0 -> -0.5, 0.5 ... centred: FLAT -0.5, BTC 0, ALT 0.5
    assert np.allclose(f["rank_r1"][1], [0.0, 0.5, -0.5])
    # r1 = log return / vol (sd of the last 3 returns), row 3 by hand for BTC
    r = np.log(btc[1:] / btc[:-1])
    assert np.isclose(f["r1"][3, 0], r[2] / np.std(r[0:3], ddof=1), rtol=1e-5)
    # the flat coin has zero vol: its normalised return is NaN, never inf
    assert np.isnan(f["r1"][:, 2]).all()
    # row 3 of FLAT is missing: no rank there
    assert np.isnan(f["rank_r1"][3, 2])


def test_xs_rank_ignores_nan() -> None:
    a = np.array([[3.0, np.nan, 1.0, 2.0], [np.nan, np.nan, 7.0, np.nan]])
    assert np.allclose(xs_rank(a), [[0.5, np.nan, -0.5, 0.0], [np.nan, np.nan, 0.0, np.nan]], equal_nan=True)


def test_context_is_the_last_closed_bar() -> None:
    panel = synthetic(T=60)
    day = resample_panel(panel, "1d")
    rows = context_rows(panel, day)
    # the panel starts at midnight: hours 0..22 of day 0 see no closed day, hour 23 closes day 0
    assert (rows[:23] == -1).all() and rows[23] == 0 and rows[24] == 0 and rows[47] == 1
    assert day.close[0, 0] == panel.close[23, 0]


def test_resample_panel_matches_loaded_4h(tmp_path: Path) -> None:
    h = load_panel(TAPE_2021, "1h", cache_dir=tmp_path / "c")
    direct = load_panel(TAPE_2021, "4h", cache_dir=tmp_path / "c")
    via = resample_panel(h, "4h")
    lo = np.searchsorted(via.ts, direct.ts[0])
    for f in ("open", "high", "low", "close", "volume"):
        a, b = getattr(via, f)[lo : lo + len(direct.ts)], getattr(direct, f)
        assert np.allclose(a, b, rtol=1e-12, equal_nan=True), f
    assert via.gaps == direct.gaps


def test_names_match_columns() -> None:
    cfg = XSConfig.for_timeframe("1h")
    names, x = xs_features(synthetic(T=700), cfg)
    assert names == feature_names(cfg) and x.shape[-1] == len(names) and len(set(names)) == len(names)

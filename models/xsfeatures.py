"""Cross-sectional features over a universe of pairs: one definition for research and live.

`xs_features(panel)` returns an array (T, S, F): the features of every pair at every decision
time. Row t uses only bars closed by the close of bar t (the bar that opened at ts[t]); the
decision it serves is taken at that close. Every feature is normalised per symbol, so one
("global", pooled) model can read all pairs: returns are divided by the pair's own recent
volatility, volume is a z-score against the pair's own history, vol is ranked across pairs.

Per pair, at horizons h (bars) of `XSConfig.horizons`:
    r{h}        log return over the last h bars / (vol * sqrt(h))          (normalised return)
    rank_r{h}   cross-sectional percentile of the h-bar return, centred on 0 (-0.5 .. 0.5)
    rel{h}      (r_h - market r_h) / (vol * sqrt(h)); market = BTC/USDT (else the universe mean)
beta            rolling beta of 1-bar returns to the market over `long_window` bars
log_vol         log of realised vol (sd of 1-bar log returns over `vol_window`), per bar
vol_rank        its cross-sectional percentile, centred
vol_ratio       log(vol over vol_window / vol over long_window): vol regime of the pair
volume_z        z-score of log(1 + volume) against its own `long_window` history
dispersion      cross-sectional sd of the mid-horizon returns / their median vol (same for all)
Context (for decisions at a shorter timeframe, e.g. 4h and 1d for 1h): for each context
timeframe, `ctx{tf}_r1`, `ctx{tf}_r{h}` and `ctx{tf}_rank` computed the same way on the bars of
that timeframe, each taken from the last context bar closed by the decision bar's close. Context
bars are resampled from the decision panel itself (`resample_panel`), so a context period with
a missing hour is missing too.

NaN marks a feature that cannot be computed (not enough history, a gap, no bar): never filled.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from daemon.domain import timeframe_ms
from models.panel import Panel, resample_panel

MARKET = "BTC/USDT"
XS_VERSION = 1


@dataclass(frozen=True)
class XSConfig:
    """Windows (in bars of the panel's timeframe) and context timeframes of the features."""

    horizons: tuple[int, ...] = (1, 4, 24, 96)
    vol_window: int = 48
    long_window: int = 480
    context: tuple[str, ...] = ()  # e.g. ("4h", "1d") for 1h decisions

    def __post_init__(self) -> None:
        if not self.horizons or min(self.horizons) < 1:
            raise ValueError(f"XSConfig.horizons: need bar counts >= 1, got {self.horizons}")
        if not 2 <= self.vol_window <= self.long_window:
            raise ValueError(f"XSConfig.vol_window: need 2 <= vol_window ({self.vol_window}) <= long_window ({self.long_window})")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (saved with every research trial)."""
        return {**asdict(self), "version": XS_VERSION}

    @classmethod
    def for_timeframe(cls, timeframe: str) -> XSConfig:
        """The defaults used by research: 1h decisions see 4h and 1d context, 4h see 1d."""
        return {
            "1h": cls(context=("4h", "1d")),
            "4h": cls(horizons=(1, 6, 24, 84), vol_window=42, long_window=360, context=("1d",)),
            "1d": cls(horizons=(1, 3, 7, 30), vol_window=20, long_window=120),
        }.get(timeframe, cls())


def feature_names(cfg: XSConfig) -> tuple[str, ...]:
    """Column names of `xs_features`' last axis, in order."""
    names = [f"r{h}" for h in cfg.horizons] + [f"rank_r{h}" for h in cfg.horizons] + [f"rel{h}" for h in cfg.horizons]
    names += ["beta", "log_vol", "vol_rank", "vol_ratio", "volume_z", "dispersion"]
    for tf in cfg.context:
        names += [f"ctx{tf}_r1", f"ctx{tf}_r{cfg.horizons[2 % len(cfg.horizons)]}", f"ctx{tf}_rank"]
    return tuple(names)


def log_returns(close: np.ndarray) -> np.ndarray:
    """1-bar log returns (T, S); NaN at row 0 and next to a missing bar."""
    out = np.full_like(close, np.nan)
    out[1:] = np.log(close[1:] / close[:-1])
    return out


def rolling(a: np.ndarray, window: int, how: str, min_frac: float = 0.8) -> np.ndarray:
    """Trailing rolling statistic over `window` rows, needing min_frac of them finite."""
    import pandas as pd  # here, not at the top: pipeline.spec reaches this module from `sigd run`,
    # whose process stays without pandas (~100 MB; tests/service/test_run_imports.py)

    r = pd.DataFrame(a).rolling(window, min_periods=max(2, int(window * min_frac)))
    return getattr(r, how)().to_numpy()


def xs_rank(a: np.ndarray) -> np.ndarray:
    """Percentile rank across the columns of each row, centred: -0.5 (lowest) .. 0.5 (highest);
    NaN stays NaN and is not ranked; a row with one value ranks it 0."""
    import pandas as pd  # kept off the `sigd run` path, as in rolling()

    pct = pd.DataFrame(a).rank(axis=1, pct=True).to_numpy()
    n = np.isfinite(a).sum(axis=1, keepdims=True)
    # rank 1..n mapped to -0.5..0.5: (pct*n - 1) / (n - 1) - 0.5
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(n > 1, (pct * n - 1) / np.maximum(n - 1, 1) - 0.5, 0.0)
    return np.where(np.isfinite(a), out, np.nan)


def _horizon_return(close: np.ndarray, h: int) -> np.ndarray:
    out = np.full_like(close, np.nan)
    out[h:] = np.log(close[h:] / close[:-h])
    return out


def _base(panel: Panel, cfg: XSConfig) -> dict[str, np.ndarray]:
    """Every non-context feature as (T, S) arrays."""
    close = panel.close
    r1 = log_returns(close)
    vol = rolling(r1, cfg.vol_window, "std")
    vol_long = rolling(r1, cfg.long_window, "std")
    safe_vol = np.where(vol > 0, vol, np.nan)
    market_col = panel.symbols.index(MARKET) if MARKET in panel.symbols else None
    out: dict[str, np.ndarray] = {}
    rets = {h: _horizon_return(close, h) for h in cfg.horizons}
    for h, r in rets.items():
        out[f"r{h}"] = r / (safe_vol * np.sqrt(h))
    for h, r in rets.items():
        out[f"rank_r{h}"] = xs_rank(r)
    for h, r in rets.items():
        with np.errstate(invalid="ignore"):
            m = r[:, [market_col]] if market_col is not None else np.nanmean(r, axis=1, keepdims=True)
        out[f"rel{h}"] = (r - m) / (safe_vol * np.sqrt(h))
    m1 = r1[:, [market_col]] if market_col is not None else _nanmean_rows(r1)
    m1b = np.broadcast_to(m1, r1.shape)
    both = np.isfinite(r1) & np.isfinite(m1b)
    x, y = np.where(both, m1b, np.nan), np.where(both, r1, np.nan)
    cov = rolling(x * y, cfg.long_window, "mean") - rolling(x, cfg.long_window, "mean") * rolling(y, cfg.long_window, "mean")
    var = rolling(x * x, cfg.long_window, "mean") - rolling(x, cfg.long_window, "mean") ** 2
    out["beta"] = cov / np.where(var > 0, var, np.nan)
    out["log_vol"] = np.log(safe_vol)
    out["vol_rank"] = xs_rank(vol)
    out["vol_ratio"] = np.log(safe_vol / np.where(vol_long > 0, vol_long, np.nan))
    lv = np.log1p(panel.volume)
    sd = rolling(lv, cfg.long_window, "std")
    out["volume_z"] = (lv - rolling(lv, cfg.long_window, "mean")) / np.where(sd > 0, sd, np.nan)
    mid = cfg.horizons[2 % len(cfg.horizons)]
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows (before any listing) give NaN
        disp = np.nanstd(rets[mid], axis=1, keepdims=True) / (np.nanmedian(vol, axis=1, keepdims=True) * np.sqrt(mid))
    enough = np.isfinite(rets[mid]).sum(axis=1, keepdims=True) >= 3
    out["dispersion"] = np.broadcast_to(np.where(enough, disp, np.nan), close.shape).copy()
    return out


def _nanmean_rows(a: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        n = np.isfinite(a).sum(axis=1, keepdims=True)
        return np.where(n > 0, np.nansum(a, axis=1, keepdims=True) / np.maximum(n, 1), np.nan)


def context_rows(panel: Panel, ctx: Panel) -> np.ndarray:
    """For each decision bar t, the row of the last context bar closed by t's close (-1: none)."""
    step, period = timeframe_ms(panel.timeframe), timeframe_ms(ctx.timeframe)
    closes_at = ctx.ts + period
    return np.searchsorted(closes_at, panel.ts + step, side="right") - 1


def xs_features(panel: Panel, cfg: XSConfig | None = None) -> tuple[tuple[str, ...], np.ndarray]:
    """(names, features float32 (T, S, F)) for a panel; see the module doc."""
    cfg = cfg or XSConfig.for_timeframe(panel.timeframe)
    base = _base(panel, cfg)
    cols = [base[n] for n in feature_names(XSConfig(cfg.horizons, cfg.vol_window, cfg.long_window))]
    mid = cfg.horizons[2 % len(cfg.horizons)]
    for tf in cfg.context:
        ctx = resample_panel(panel, tf)
        c = _base(ctx, XSConfig(cfg.horizons, cfg.vol_window, cfg.long_window))
        rows = context_rows(panel, ctx)
        ok = rows >= 0
        for name in ("r1", f"r{mid}", f"rank_r{mid}"):
            a = np.full(panel.close.shape, np.nan)
            a[ok] = c[name][rows[ok]]
            cols.append(a)
    x = np.stack(cols, axis=-1).astype(np.float32)
    x[~np.isfinite(x)] = np.nan
    return feature_names(cfg), x

"""Is a served model saturated? Its P(long) over the bundled multi-coin tape, across symbols and
over time, and the share of its inputs clipped at +-CLIP, per input window.

    python -m daemon.commands.saturation [--artifact DIR ...] [--tape daemon/localexchange/tape_2021] [--bars 48]

The windows are the daemon's: at the close of each of the last `bars` trigger bars of the tape,
the newest bars of every input closed by then (`models.datasets.live_windows`). The tape's
altcoin 1h/1d files stop where its 1m files begin (its README): 1h and 1d bars are completed
from the 1m files exactly as the local exchange aggregates them, so the windows are what
`sigd run` on that tape would hold. A saturated model (the 1m artifacts shipped before the
hourly ones) gives nearly the same P(long) for every coin at every bar; this module measures
that with three numbers:

    cross_symbol_std  mean over bars of the sd of P(long) across symbols at that bar
    over_time_std     mean over symbols of the sd of P(long) over the bars
    max_correlation   the highest correlation of two symbols' P(long) series
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from models.data import derive_bars, load_series
from models.datasets import live_windows
from models.features import key_timeframe

REPO = Path(__file__).resolve().parent.parent
TAPE = REPO / "daemon" / "localexchange" / "tape_2021"
SYMBOLS = ("ETH/USDT", "XRP/USDT", "ADA/USDT", "DOGE/USDT", "LTC/USDT")
REFERENCE = "BTC/USDT"


def tape_series(tape: Path, symbol: str, timeframe: str) -> np.ndarray | None:
    """One symbol's bars at `timeframe`: the recorded file, completed after its end with bars
    aggregated from the 1m file (complete periods only), as the local exchange serves them."""
    recorded = load_series([tape], symbol, timeframe, required=False)
    if timeframe == "1m":
        return recorded
    m1 = load_series([tape], symbol, "1m", required=False)
    derived = derive_bars(m1, "1m", timeframe) if m1 is not None and len(m1) else None
    if recorded is None or derived is None:
        return recorded if derived is None else derived
    later = derived[derived[:, 0] > recorded[-1, 0]]
    return np.concatenate([recorded, later])


def p_long_matrix(art_dir: Path | str, tape: Path = TAPE, symbols: Sequence[str] = SYMBOLS, bars: int = 48) -> dict[str, Any]:
    """P(long) [bars, symbols] of one artifact at the last `bars` trigger closes the tape holds
    for every symbol, and the predictor's clipped share per input over those windows."""
    from pipeline.predictor import Predictor

    predictor = Predictor.load(art_dir, "cpu")
    spec = predictor.spec
    series = {}
    for sym in symbols:
        series[sym] = {
            key: tape_series(tape, REFERENCE if key.startswith("btc_") else sym, key_timeframe(key)) for key in spec.inputs
        }
    common = set.intersection(*(set(s[spec.trigger][:, 0].astype(np.int64).tolist()) for s in series.values()))
    bar_ts = sorted(common)[-bars:]
    p_long = np.full((len(bar_ts), len(symbols)), np.nan)
    for j, sym in enumerate(symbols):
        windows = [live_windows(series[sym], t, predictor.required_windows, spec.trigger) for t in bar_ts]
        for i, pred in enumerate(predictor.predict_batch(windows, bar_ts)):
            p_long[i, j] = pred.scores["p_long"]
    return {"bar_ts": bar_ts, "p_long": p_long, "clip_share": predictor.clip_share(), "features": list(spec.feature_names)}


def saturation_stats(p_long: np.ndarray) -> dict[str, float]:
    """The three saturation numbers of a P(long) matrix [bars, symbols] (module docstring)."""
    corr = np.corrcoef(p_long.T)
    off = corr[~np.eye(len(corr), dtype=bool)]
    return {
        "cross_symbol_std": float(p_long.std(axis=1).mean()),
        "over_time_std": float(p_long.std(axis=0).mean()),
        "max_correlation": float(np.nanmax(off)),
        "mean_correlation": float(np.nanmean(off)),
        "mean_p_long": float(p_long.mean()),
    }


def report(art_dir: Path | str, tape: Path = TAPE, bars: int = 48) -> dict[str, Any]:
    """Saturation numbers and clipped shares (max over features, per input) of one artifact."""
    m = p_long_matrix(art_dir, tape, SYMBOLS, bars)
    clip = {k: dict(zip(m["features"], (round(v, 4) for v in shares))) for k, shares in m["clip_share"].items()}
    return {"artifact": str(art_dir), "bars": len(m["bar_ts"]), **saturation_stats(m["p_long"]), "clip_share": clip}

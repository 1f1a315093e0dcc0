"""The scoring every retrain job uses: artifacts scored on the same unseen bars.

For every 1m bar of the tape that opens at or after `from_ms` (and has a next bar), each
predictor gets the windows it would have had live (only bars closed by then), the artifact's
threshold rule turns its answer into a side, and the score is the annualized Sharpe ratio net
of fees of holding that side over the next bar: the same trading model the threshold was
optimized with (strategies.threshold). `ScoreJob` (daemon/retrain/jobs.py) runs it; the
subprocess side is daemon/commands/worker.py.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from daemon.domain import Side, timeframe_ms

SCHEMA_KEYS = ("1s", "1m", "1h", "1d", "btc_1m")


def _key_stream(key: str, symbol: str) -> tuple[str, str]:
    # "btc_1m" -> ("BTC/USDT", "1m"); "1h" -> (symbol, "1h"): the window convention.
    if "_" in key:
        base, tf = key.split("_", 1)
        return f"{base.upper()}/{symbol.split('/')[1]}", tf
    return symbol, key


def load_streams(data: Path, symbol: str) -> dict[str, np.ndarray]:
    """Every tape of the window convention found in `data`, float64 [n, 6]."""
    from models.data import load_series

    out = {}
    for key in SCHEMA_KEYS:
        sym, tf = _key_stream(key, symbol)
        arr = load_series([data], sym, tf, required=False)
        if arr is not None and len(arr):
            out[key] = arr
    return out


def holdout(
    streams: Mapping[str, np.ndarray], from_ms: int, need: Mapping[str, int], to_ms: int | None = None
) -> tuple[list[dict[str, np.ndarray]], list[int], np.ndarray]:
    """(windows per bar, bar_ts per bar, next-bar return per bar) for 1m bars opening in
    [from_ms, to_ms) whose next bar also opens before to_ms."""
    m1 = streams["1m"]
    ts = m1[:, 0].astype(np.int64)
    step = timeframe_ms("1m")
    closes = {k: v[:, 0].astype(np.int64) + timeframe_ms(k.split("_")[-1]) for k, v in streams.items()}
    windows, bar_ts, rets = [], [], []
    stop = to_ms if to_ms is not None else int(ts[-1]) + step
    for i in np.flatnonzero((ts >= from_ms) & (ts < stop)):
        if i + 1 >= len(ts) or ts[i + 1] - ts[i] != step or ts[i + 1] >= stop:
            continue  # no next bar: nothing to score the decision on
        close_t = int(ts[i]) + step
        w: dict[str, np.ndarray] = {}
        for key, n in need.items():
            if key not in streams:
                continue
            end = int(np.searchsorted(closes[key], close_t, side="right"))  # bars closed by close_t
            if end >= n:
                w[key] = streams[key][end - n : end]
        if "1m" not in w:
            continue
        windows.append(w)
        bar_ts.append(int(ts[i]))
        rets.append(m1[i + 1, 4] / m1[i, 4] - 1.0)
    return windows, bar_ts, np.asarray(rets, dtype=np.float64)


def sides(predictor: Any, windows: Sequence[Mapping[str, np.ndarray]], bar_ts: Sequence[int]) -> np.ndarray:
    """The predictor's side per bar; a bar it cannot answer counts as FLAT."""
    from pipeline.predictor import InsufficientWindows

    try:
        return np.array([int(p.side) for p in predictor.predict_batch(windows, bar_ts)], dtype=np.int64)
    except InsufficientWindows:
        out = []
        for w, t in zip(windows, bar_ts):
            try:
                out.append(int(predictor.predict(w, t).side))
            except InsufficientWindows:
                out.append(int(Side.FLAT))
        return np.array(out, dtype=np.int64)


def score_artifacts(
    data: Path, from_ms: int, to_ms: int | None, symbol: str, artifacts: Mapping[str, Path], fee: float
) -> dict[str, Any]:
    """Every artifact (keyed by any name) scored on the same bars of [from_ms, to_ms)."""
    from pipeline.predictor import Predictor
    from strategies import threshold as thr

    streams = load_streams(data, symbol)
    if "1m" not in streams:
        raise SystemExit(f"retrain_worker: no {symbol} 1m tape in {data}")
    predictors = {key: Predictor.load(path, "cpu") for key, path in artifacts.items()}
    need: dict[str, int] = {}
    for p in predictors.values():
        for k, n in p.required_windows.items():
            need[k] = max(need.get(k, 0), int(n))
    windows, bar_ts, rets = holdout(streams, from_ms, need, to_ms)
    if len(bar_ts) < 10:
        raise SystemExit(f"retrain_worker: only {len(bar_ts)} scorable bars after {from_ms}")
    out: dict[str, Any] = {"from": from_ms, "bars": len(bar_ts), "fee": fee, "by_artifact": {}}
    for key, p in predictors.items():
        # Each model gets exactly the window lengths it asks for (the newest bars).
        own = [{k: v[-int(p.required_windows[k]) :] for k, v in w.items() if k in p.required_windows} for w in windows]
        pos = thr.positions(sides(p, own, bar_ts))
        out["by_artifact"][key] = {
            "version": p.version,
            "score": thr.sharpe(pos, rets, fee),
            "trades": int(np.count_nonzero(np.diff(pos, prepend=0))),
            "total_return": float(np.prod(1.0 + thr.net_returns(pos, rets, fee)) - 1.0),
        }
    return out


def score_pair(data: Path, from_ms: int, symbol: str, current: Path, new: Path, fee: float) -> dict[str, Any]:
    """Both artifacts scored on the same holdout bars."""
    out = score_artifacts(data, from_ms, None, symbol, {"current": current, "new": new}, fee)
    return {**{k: v for k, v in out.items() if k != "by_artifact"}, **out.pop("by_artifact")}

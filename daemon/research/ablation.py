"""Why a model saturates: per-input scaling health and ablations on a tape.

`python -m daemon.research.ablation [--artifact DIR] [--tape DIR] [--bars N]` loads an artifact
and, at N evenly spaced 1m bars of the tape, for every symbol of the tape:

1. Scaling health, per input window and feature: the median |z| after the artifact's scaler
   and the share of values clipped at +-CLIP, per symbol. An input whose z depends on the coin
   (tick size, price level) instead of the market shows up here.
2. Ablations, the mean |change| of P(long):
   - `swap:<key>`: that input window replaced by the same window of another symbol of the tape
     (the first one), at the same bar (btc_1m: by that symbol's own 1m window);
   - `mask:<key>`: that input left out (the hybrid masks it; nan = the model needs it);
   - `zero:<feature>`: that feature set to its training mean (scaled 0) in every input;
   beside the spread of P(long) across symbols at the same bar and over time per symbol.

Library use: `scaling_health` and `ablate` return plain dicts; `main` prints tables.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from daemon.domain import timeframe_ms
from models.features import CLIP, FeatureSpec, key_timeframe, window_is_contiguous

REPO = Path(__file__).resolve().parents[2]
DEFAULT_TAPE = REPO / "daemon" / "localexchange" / "tape_2021"
DEFAULT_ARTIFACT = REPO / "models" / "artifacts" / "mtf_transformer"


def load_series(tape: Path, symbols: Sequence[str], keys: Sequence[str]) -> dict[str, dict[str, np.ndarray]]:
    """{symbol: {window key: rows [n, 6]}} in the window convention (btc_1m = BTC/USDT 1m)."""
    import pandas as pd

    out: dict[str, dict[str, np.ndarray]] = {}
    for s in symbols:
        out[s] = {}
        for key in keys:
            sym = "BTC/USDT" if key.startswith("btc_") else s
            path = tape / f"{sym.replace('/', '_')}-{key_timeframe(key)}.csv.gz"
            if path.exists():
                out[s][key] = pd.read_csv(path).to_numpy(dtype=np.float64)
    return out


def raw_z(bars: np.ndarray | None, key: str, spec: FeatureSpec) -> np.ndarray | None:
    """Scaled, unclipped features [seq_len, F] of one window (None when missing/short/gap)."""
    need = spec.required_windows[key]
    if bars is None or len(bars) < need:
        return None
    bars = bars[-need:]
    if not window_is_contiguous(bars, key_timeframe(key)):
        return None
    rows = spec.raw_features(bars)[-spec.seq_len :]
    sc = spec.scalers[key]
    return (rows - np.asarray(sc.center)) / np.asarray(sc.scale)


def windows_at(series: Mapping[str, np.ndarray], bar_ts: int, sizes: Mapping[str, int]) -> dict[str, np.ndarray]:
    """Windows closed by the close of the 1m bar opening at bar_ts (models.datasets.live_windows)."""
    from models.datasets import live_windows

    return live_windows(dict(series), bar_ts, dict(sizes))


def scaling_health(
    spec: FeatureSpec, windows: Mapping[str, Sequence[Mapping[str, np.ndarray]]]
) -> dict[str, dict[str, dict[str, tuple[float, float]]]]:
    """{symbol: {key: {feature: (median |z|, clipped share)}}} over the given windows."""
    out: dict[str, dict[str, dict[str, tuple[float, float]]]] = {}
    for s, per_bar in windows.items():
        out[s] = {}
        for key in spec.inputs:
            zs = [z for w in per_bar if (z := raw_z(w.get(key), key, spec)) is not None]
            if not zs:
                continue
            z = np.abs(np.concatenate(zs))
            out[s][key] = {
                n: (float(np.median(z[:, i])), float(np.mean(z[:, i] > CLIP))) for i, n in enumerate(spec.feature_names)
            }
    return out


def ablate(predictor: Any, windows: Mapping[str, Sequence[dict[str, np.ndarray]]], bar_ts: Sequence[int]) -> dict[str, float]:
    """Mean |dP(long)| of each ablation (see the module doc), plus the spreads for scale."""
    from models import features as F

    spec: FeatureSpec = predictor.spec
    symbols = list(windows)
    ref = symbols[0]

    def p_long(per_symbol: Mapping[str, Sequence[Mapping[str, np.ndarray]]]) -> np.ndarray:
        out = np.full((len(symbols), len(bar_ts)), np.nan)
        for i, s in enumerate(symbols):
            try:
                preds = predictor.predict_batch(per_symbol[s], list(bar_ts))
            except ValueError:
                continue
            out[i] = [p.scores.get("p_long", np.nan) for p in preds]
        return out

    base = p_long(windows)
    result = {
        "spread_across_symbols": float(np.nanmean(np.nanstd(base, axis=0))),
        "spread_over_time": float(np.nanmean(np.nanstd(base, axis=1))),
        "p_long_mean": float(np.nanmean(base)),
    }
    others = [s for s in symbols if s != ref]
    for key in spec.inputs:
        # the BTC stream is the same for every symbol: swap it for the reference symbol's own 1m
        donor = "1m" if key.startswith("btc_") else key
        swapped = {
            s: [{**w, key: windows[ref][j][donor]} if donor in windows[ref][j] else w for j, w in enumerate(windows[s])]
            for s in symbols
        }
        result[f"swap:{key}"] = float(np.nanmean(np.abs(p_long(swapped) - base)[[symbols.index(s) for s in others]]))
        masked = {s: [{k: v for k, v in w.items() if k != key} for w in windows[s]] for s in symbols}
        change = np.abs(p_long(masked) - base)
        # NaN: the model cannot answer without that input (the 1m window is always required)
        result[f"mask:{key}"] = float(np.nanmean(change)) if np.isfinite(change).any() else float("nan")
    original = F.Scaler.transform
    for i, name in enumerate(spec.feature_names):

        def zeroed(self: Any, x: np.ndarray, _i: int = i) -> np.ndarray:
            z = original(self, x)
            z[..., _i] = 0.0
            return z

        F.Scaler.transform = zeroed  # type: ignore[method-assign]
        try:
            result[f"zero:{name}"] = float(np.nanmean(np.abs(p_long(windows) - base)))
        finally:
            F.Scaler.transform = original  # type: ignore[method-assign]
    return result


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m daemon.research.ablation", description=__doc__.split("\n")[0])
    ap.add_argument("--artifact", type=Path, default=DEFAULT_ARTIFACT)
    ap.add_argument("--tape", type=Path, default=DEFAULT_TAPE)
    ap.add_argument("--bars", type=int, default=24, help="1m decision bars, evenly spaced over the tape")
    ap.add_argument("--symbols", default="ETH/USDT,XRP/USDT,DOGE/USDT,ADA/USDT,LTC/USDT")
    args = ap.parse_args(argv)
    if args.bars < 1:
        print(f"--bars: must be >= 1, got {args.bars}", file=sys.stderr)
        return 2
    for flag, path in (("--artifact", args.artifact), ("--tape", args.tape)):
        if not path.is_dir():
            print(f"{flag}: {path} is not a folder", file=sys.stderr)
            return 2
    from pipeline.predictor import Predictor

    predictor = Predictor.load(args.artifact, "cpu")
    spec: FeatureSpec = predictor.spec
    symbols = args.symbols.split(",")
    series = load_series(args.tape, symbols, spec.inputs)
    if missing := [s for s in symbols if "1m" not in series[s]]:
        print(f"--symbols: no 1m tape for {', '.join(missing)} in {args.tape}", file=sys.stderr)
        return 2
    sizes = spec.required_windows
    first = max(int(series[s]["1m"][0, 0]) for s in symbols) + sizes["1m"] * timeframe_ms("1m")
    last = min(int(series[s]["1m"][-1, 0]) for s in symbols)
    grid = np.linspace(first, last, args.bars).astype(np.int64)
    grid -= grid % timeframe_ms("1m")
    windows = {s: [windows_at(series[s], int(t), sizes) for t in grid] for s in symbols}
    print(
        f"artifact {args.artifact} (features: {spec.feature_set} v{spec.version}), tape {args.tape}, "
        f"{len(grid)} bars x {len(symbols)} symbols"
    )
    health = scaling_health(spec, windows)
    print(f"\nscaling health: median |z| / share clipped at +-{CLIP:g}, per input and feature")
    print(f"{'symbol':<10} {'input':<7} " + " ".join(f"{n:>22}" for n in spec.feature_names))
    for s, per_key in health.items():
        for key, per_feat in per_key.items():
            print(f"{s:<10} {key:<7} " + " ".join(f"{m:>12.2f} / {c:>6.1%}" for m, c in per_feat.values()))
    print("\nablation: mean |change of P(long)|")
    for k, v in ablate(predictor, windows, [int(t) for t in grid]).items():
        print(f"  {k:<26} {v:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Training: `train_pipeline(...)` (the one code path of `sigd train` and the nightly retrain).

load tapes -> samples without look-ahead (models.datasets) -> scalers fitted on train ->
balance train -> fit (models.fit) -> threshold grid search on VALIDATION (strategies.threshold)
-> report on TEST (accuracy, macro-F1 vs always answering the training split's most frequent
class, Sharpe net of fees vs buy-and-hold) -> atomic artifact (models.artifacts) + history.json + PNG plots.
Trading metrics use the first symbol (the primary); other symbols only add training windows.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch

from models import evaluate, plots, registry
from models.adapters import SequenceAdapter, adapter_for
from models.artifacts import hold_bars, load_artifact, save_artifact
from models.data import fingerprint, find_gaps, load_series
from models.datasets import TEST, TRAIN, VAL, SampleSet, assemble, build_symbol_samples
from models.features import WINDOW_KEYS, key_timeframe
from models.fit import FitConfig, choose_batch_size, fit, memory_estimate, pick_device
from models.indicators import FULL_WARMUP
from models.targets import IGNORE, TargetSpec, balance, class_counts
import strategies.threshold as thr

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATA = (REPO / "daemon" / "localexchange" / "tape",)
DEFAULT_SYMBOLS = ("ETH/USDT", "BTC/USDT")
REFERENCE = "BTC/USDT"
BARS_PER_YEAR_1M = thr.MINUTES_PER_YEAR
Log = Callable[[str], None]


@dataclass
class TrainResult:
    """What a training run produced."""

    artifact_dir: Path
    version: str
    metrics: dict[str, Any]
    history: dict[str, list[float]]
    samples: dict[str, Any] = field(default_factory=dict)


def _iso_ms(text: str | None) -> int | None:
    if not text:
        return None
    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return int((dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)).timestamp() * 1000)


def load_symbol(dirs: Sequence[Path], symbol: str, keys: Sequence[str], start: int | None, end: int | None,
                log: Log) -> dict[str, np.ndarray | None]:
    """Series per window key for one symbol; the primary 1m cut to [start, end), context whole."""
    out: dict[str, np.ndarray | None] = {"1m": load_series(dirs, symbol, "1m", start_ms=start, end_ms=end)}
    for key in keys:
        if key == "1m":
            continue
        sym = REFERENCE if key.startswith("btc_") else symbol
        out[key] = load_series(dirs, sym, key_timeframe(key), required=False)
    for key, bars in out.items():
        if bars is not None:
            gaps = find_gaps(bars, key_timeframe(key))
            if gaps:
                log(f"{symbol} {key}: {len(gaps)} gap(s), {sum(g.missing for g in gaps)} missing bars "
                    "(windows spanning them are not used)")
    return out


def build_sampleset(adapter: SequenceAdapter, seq_len: int, dirs: Sequence[Path], symbols: Sequence[str],
                    start: int | None, end: int | None, target: TargetSpec, log: Log) -> tuple[SampleSet, list]:
    """Load every symbol, pick the feature set, build and assemble samples."""
    keys = WINDOW_KEYS if adapter.kind == "mtf" else ("1m",)
    loaded = [load_symbol(dirs, s, keys, start, end, log) for s in symbols]
    inputs = tuple(k for k in keys if any(series.get(k) is not None for series in loaded))
    shortest = min(len(series["1m"]) for series in loaded)
    # The seed's fallback: too few rows for the indicators -> the minimal feature set.
    feature_set = "full" if shortest >= seq_len + FULL_WARMUP + 50 else "minimal"
    if adapter.kind == "sequence" and feature_set == "minimal":
        log(f"only {shortest} bars: minimal feature set (indicators need {seq_len + FULL_WARMUP + 50})")
    spec = adapter.spec(seq_len, feature_set, inputs)
    per_symbol = [(build_symbol_samples(s, series, spec, target), series) for s, series in zip(symbols, loaded)]
    return assemble(per_symbol, spec), loaded


def _batches(adapter: SequenceAdapter, ss: SampleSet, idx: np.ndarray, bs: int, device: torch.device,
             rng: np.random.Generator | None = None, max_batches: int = 0) -> tuple[Iterator[dict[str, Any]], int]:
    order = rng.permutation(idx) if rng is not None else idx
    if max_batches:
        order = order[: max_batches * bs]
    n = (len(order) + bs - 1) // bs
    return (adapter.batch(ss, order[i * bs:(i + 1) * bs], device) for i in range(n)), n


def predict_scores(adapter: SequenceAdapter, model: torch.nn.Module, ss: SampleSet, idx: np.ndarray,
                   device: torch.device, bs: int = 512) -> np.ndarray:
    """Scores (probabilities or returns) for samples idx, in order."""
    model.eval()
    out = []
    with torch.inference_mode():
        for i in range(0, len(idx), bs):
            out.append(adapter.scores(model, adapter.inputs(ss, idx[i:i + bs], device)))
    return np.concatenate(out) if out else np.zeros((0, 3))


def _primary(ss: SampleSet, part: int) -> np.ndarray:
    idx = np.flatnonzero((ss.split == part) & (ss.symbol_id == 0))
    if len(idx) == 0:
        raise ValueError(f"the primary symbol {ss.symbols[0]} has no {('train', 'validation', 'test')[part]} "
                         "samples (more bars needed)")
    return idx


def test_report(adapter: SequenceAdapter, model: torch.nn.Module, ss: SampleSet, device: torch.device,
                threshold: float, fee: float, hold: int = 1) -> tuple[dict[str, Any], np.ndarray]:
    """Every test-split number of the primary symbol at a given threshold and holding period, and
    the test scores."""
    test = _primary(ss, TEST)
    scores = predict_scores(adapter, model, ss, test, device)
    report = evaluate.trading_report(scores, ss.next_ret[test], threshold, adapter.mode, fee, BARS_PER_YEAR_1M, hold)
    if adapter.mode == "classification":
        majority = int(np.argmax(class_counts(ss.y[ss.indices(TRAIN)])))  # of the unbalanced train split
        report.update(evaluate.classification_report(ss.y[test], scores, majority))
    else:
        report["mse"] = float(np.mean((scores - ss.y[test]) ** 2))
    return report, scores


def _evaluate(adapter: SequenceAdapter, model: torch.nn.Module, ss: SampleSet, device: torch.device,
              fee: float, hold: int) -> tuple[dict[str, Any], thr.ThresholdResult, np.ndarray]:
    """Threshold on validation (primary symbol) under holding period `hold`, then every test number."""
    val = _primary(ss, VAL)
    val_scores = predict_scores(adapter, model, ss, val, device)
    chosen = thr.optimize(val_scores, ss.next_ret[val], adapter.mode, fee=fee, bars_per_year=BARS_PER_YEAR_1M,
                          hold=hold)
    report, test_scores = test_report(adapter, model, ss, device, chosen.threshold, fee, hold)
    metrics = {"test": report, "validation": {"threshold": chosen.threshold, "sharpe": chosen.sharpe,
                                              "trades": chosen.trades, "hold_bars": hold}}
    return metrics, chosen, test_scores


def _fit_config(epochs: int | None, batch_size: int, max_batches: int, scheduler: str, progress: bool) -> FitConfig:
    base = FitConfig()
    return replace(base, epochs=epochs or base.epochs, batch_size=batch_size, max_train_batches=max_batches,
                   scheduler=scheduler, progress=progress)


def _train_indices(ss: SampleSet, mode: str, rng: np.random.Generator, log: Log) -> np.ndarray:
    idx = ss.indices(TRAIN)
    if mode != "classification":
        return idx[np.isfinite(ss.y[idx])]
    log(f"train labels SHORT/FLAT/LONG before balancing: {class_counts(ss.y[idx])}")
    return balance(idx, ss.y, rng)


def _labelled(ss: SampleSet, part: int, mode: str) -> np.ndarray:
    idx = ss.indices(part)
    return idx[ss.y[idx] != IGNORE] if mode == "classification" else idx[np.isfinite(ss.y[idx])]


def _write_report(out: Path, adapter: SequenceAdapter, model: torch.nn.Module, ss: SampleSet,
                  history: dict, test_scores: np.ndarray, device: torch.device) -> None:
    (out / "history.json").write_text(json.dumps(_json_history(history), indent=1))
    plots.curves(history, out)
    test = np.flatnonzero((ss.split == TEST) & (ss.symbol_id == 0))
    if hasattr(model, "attention_weights") and getattr(model.config, "use_attention", True):
        with torch.inference_mode():
            w = model.attention_weights(adapter.inputs(ss, test[-1:], device)["x"])
        plots.attention(w[0].float().cpu().numpy(), out, f"{adapter.name}: last test window")
    if adapter.mode == "regression":
        plots.predictions_vs_truth(test_scores, ss.y[test], out)
    else:
        plots.class_probabilities(test_scores, out)


def _prepare(name: str, preset: str, mode: str, data_dirs: Sequence[Path | str], symbols: Sequence[str],
             start: str | None, end: str | None, target: TargetSpec,
             log: Log) -> tuple[SequenceAdapter, SampleSet, Any, str]:
    """Adapter, sample set and model config (the data decides n_features and inputs)."""
    adapter = adapter_for(name, mode)
    base = registry.make_config(name, adapter.config_overrides_base(), preset)
    dirs = [Path(d) for d in data_dirs]
    ss, loaded = build_sampleset(adapter, base.seq_len, dirs, symbols, _iso_ms(start), _iso_ms(end), target, log)
    config = registry.make_config(name, {**base.to_dict(), **adapter.config_overrides(ss.spec)})
    fp = fingerprint((f"{s}:{k}", a[a[:, 0] < ss.extra["close_ts"].max()])
                     for s, series in zip(symbols, loaded) for k, a in sorted(series.items()) if a is not None)
    return adapter, ss, config, fp


def _batch_size(net: torch.nn.Module, ss: SampleSet, dev: torch.device, given: int, cnn: bool, log: Log) -> int:
    """The given batch size or one chosen from free memory; prints the memory estimate."""
    sample_floats = ss.spec.seq_len * len(ss.spec.feature_names) * len(ss.spec.inputs)
    bs = given or choose_batch_size(dev, sample_floats, cnn=cnn)
    est = memory_estimate(net, sample_floats, bs)
    log(f"device {dev}; batch {bs}; memory estimate: {int(est['params'])} params, weights {est['weights_mb']:.2f} MB, "
        f"training state {est['training_state_mb']:.2f} MB, batch inputs {est['batch_inputs_mb']:.2f} MB, "
        f"activations ~{est['activations_mb_guess']:.1f} MB")
    return bs


def _meta(ss: SampleSet, target: TargetSpec, chosen: thr.ThresholdResult, metrics: dict[str, Any],
          history: dict[str, list[float]], train_idx: np.ndarray, run: dict[str, Any]) -> dict[str, Any]:
    """The artifact's JSON content besides model and weights."""
    mode = target.mode
    samples = {"train": int(len(train_idx)), "train_unbalanced": int(len(ss.indices(TRAIN))),
               "validation": int(len(ss.indices(VAL))), "test": int(len(ss.indices(TEST))),
               "train_classes": class_counts(ss.y[train_idx]) if mode == "classification" else None,
               "symbols": list(ss.symbols)}
    training = {k: run[k] for k in ("preset", "seed", "device", "batch_size", "trend_tau")}
    training.update({"epochs_trained": len(history["train_loss"]), "best_epoch": history.get("best_epoch"),
                     "best_val_loss": float(min(history["val_loss"])), "final_lr": history["lr"][-1],
                     "seconds": round(time.time() - run["started"], 1), "torch": torch.__version__,
                     "trained_at": datetime.now(timezone.utc).isoformat()})
    return {
        "features": ss.spec.to_dict(), "target": target.to_dict(),
        "threshold": {"value": chosen.threshold, "validation_sharpe": chosen.sharpe, "mode": mode,
                      "hold_bars": chosen.hold,
                      "fee": run["fee"], "bars_per_year": BARS_PER_YEAR_1M, "grid": [list(g) for g in chosen.grid]},
        "training": training,
        "data": {"fingerprint": run["fingerprint"], "dirs": run["dirs"], "start": run["start"], "end": run["end"],
                 "first_close_ts": int(ss.extra["close_ts"].min()), "last_close_ts": int(ss.extra["close_ts"].max())},
        "samples": samples, "metrics": metrics, "history": _json_history(history),
    }


def _json_history(history: dict[str, list[float]]) -> dict[str, list[float | None]]:
    """NaN (accuracy in regression) becomes null: JSON has no NaN."""
    return {k: [v if np.isfinite(v) else None for v in vals] for k, vals in history.items()}


def train_pipeline(model: str, *, preset: str = "small", data_dirs: Sequence[Path | str] = DEFAULT_DATA,
                   symbols: Sequence[str] = DEFAULT_SYMBOLS, start: str | None = None, end: str | None = None,
                   epochs: int | None = None, out_dir: Path | str | None = None, seed: int = 0,
                   device: str = "auto", mode: str = "classification", target: TargetSpec | None = None,
                   batch_size: int = 0, max_batches: int = 0, max_val: int = 0, scheduler: str = "cosine",
                   fee: float = thr.DEFAULT_FEE, hold: int | None = None, progress: bool = True,
                   log: Log = lambda s: None) -> TrainResult:
    """Train `model` on tapes in data_dirs (first dir holding a file wins) and write an artifact;
    `hold` = holding period in bars for the threshold rule (default: the target's horizon)."""
    t_start = time.time()
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    target = target or TargetSpec(mode=mode)  # type: ignore[arg-type]
    adapter, ss, config, fp = _prepare(model, preset, mode, data_dirs, symbols, start, end, target, log)
    dev = pick_device(device)
    net = registry.model_class(model)(config).to(dev)
    train_idx = _train_indices(ss, mode, rng, log)
    val_idx = _labelled(ss, VAL, mode)
    if max_val and len(val_idx) > max_val:  # a fixed subset for the per-epoch loss (CPU time)
        val_idx = np.sort(rng.choice(val_idx, size=max_val, replace=False))
    if hasattr(adapter, "fit_trend_tau"):
        adapter.fit_trend_tau(ss)
    bs = _batch_size(net, ss, dev, batch_size, bool(getattr(config, "use_cnn", False)), log)
    log(f"samples train {len(train_idx)} (balanced) / val {len(val_idx)} / test {len(ss.indices(TEST))}")
    cfg = _fit_config(epochs, bs, max_batches, scheduler, progress)
    history = fit(net, adapter.step,
                  lambda e: _batches(adapter, ss, train_idx, bs, dev, rng, cfg.max_train_batches),
                  lambda: _batches(adapter, ss, val_idx, bs, dev), cfg, dev, log)
    metrics, chosen, test_scores = _evaluate(adapter, net, ss, dev, fee, hold or target.span)
    run = {"preset": preset, "seed": seed, "device": str(dev), "batch_size": bs, "started": t_start,
           "trend_tau": getattr(adapter, "trend_tau", None), "dirs": [str(d) for d in data_dirs],
           "start": start, "end": end, "fingerprint": fp, "fee": fee}
    meta = _meta(ss, target, chosen, metrics, history, train_idx, run)
    out = Path(out_dir) if out_dir else REPO / "runs" / "train" / model
    save_artifact(out, net, model, config.to_dict(), meta)
    _write_report(out, adapter, net, ss, history, test_scores, dev)
    version = json.loads((out / "artifact.json").read_text())["version"]
    return TrainResult(out, version, metrics, history, meta["samples"])


def evaluate_artifact(art_dir: Path | str, *, data_dirs: Sequence[Path | str] = DEFAULT_DATA,
                      symbols: Sequence[str] = DEFAULT_SYMBOLS, start: str | None = None, end: str | None = None,
                      device: str = "auto", fee: float | None = None, log: Log = lambda s: None) -> dict[str, Any]:
    """Test-split report of an existing artifact on this data, with the very splits train_pipeline
    would make, the artifact's own scalers and threshold: champion vs challenger on equal terms."""
    dev = pick_device(device)
    model, meta, spec = load_artifact(art_dir, dev)
    adapter = adapter_for(meta["model"]["name"], meta["threshold"]["mode"])
    target = TargetSpec.from_dict(meta["target"])
    loaded = [load_symbol([Path(d) for d in data_dirs], s, spec.inputs, _iso_ms(start), _iso_ms(end), log)
              for s in symbols]
    per_symbol = [(build_symbol_samples(s, series, spec, target), series) for s, series in zip(symbols, loaded)]
    ss = assemble(per_symbol, spec, scalers=spec.scalers)
    if hasattr(adapter, "trend_tau"):
        adapter.trend_tau = dict(meta["training"].get("trend_tau") or {})
    report, _ = test_report(adapter, model, ss, dev, float(meta["threshold"]["value"]),
                            meta["threshold"]["fee"] if fee is None else fee, hold_bars(meta))
    return {"test": report, "validation": {"threshold": float(meta["threshold"]["value"]),
                                           "sharpe": float(meta["threshold"]["validation_sharpe"]), "trades": -1},
            "version": meta["version"]}


def format_metrics(name: str, m: dict[str, Any]) -> str:
    """The final evaluation as a few aligned lines for a person."""
    t = m["test"]
    lines = [f"{name}: test split ({t['bars']} bars of the primary symbol)"]
    if "accuracy" in t:
        # The baseline always answers the training split's most frequent class: name that class, not
        # "majority" (it need not be the test split's majority).
        always = ("SHORT", "FLAT", "LONG")[t["baseline_class"]]
        lines.append(f"  accuracy {t['accuracy']:.3f}  macro-F1 {t['macro_f1']:.3f}   always-{always} baseline "
                     f"(most frequent in training): accuracy {t['baseline_accuracy']:.3f}  macro-F1 {t['baseline_macro_f1']:.3f}")
    lines.append(f"  Sharpe net of fees {t['sharpe']:.2f} (threshold {m['validation']['threshold']:.3f}, "
                 f"hold {m['validation'].get('hold_bars', 1)} bars, {t['trades']} trades)   buy-and-hold {t['buy_and_hold_sharpe']:.2f}")
    lines.append(f"  total return {t['total_return']:+.2%}   buy-and-hold {t['buy_and_hold_return']:+.2%}   "
                 f"validation Sharpe {m['validation']['sharpe']:.2f}")
    return "\n".join(lines)


def train_command(args: argparse.Namespace) -> int:
    """`sigd train --model NAME [--preset] [--data DIR...] [--epochs N] [--out DIR] ...`."""
    data = args.data or [str(d) for d in DEFAULT_DATA]
    say = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    try:
        res = train_pipeline(
            args.model, preset=args.preset, data_dirs=data, symbols=args.symbols or DEFAULT_SYMBOLS,
            start=args.start, end=args.end, epochs=args.epochs,
            out_dir=args.out, seed=args.seed, device=args.device, mode=args.mode,
            batch_size=args.batch_size or 0, max_batches=args.max_batches or 0, max_val=args.max_val or 0,
            scheduler=args.scheduler, hold=args.hold, progress=sys.stderr.isatty(), log=say,
            target=TargetSpec(args.mode, args.horizon, args.label_threshold, args.neutral_zone))
    except (ValueError, OSError) as exc:
        print(f"sigd train: {exc}", file=sys.stderr)
        return 1
    print(format_metrics(args.model, res.metrics))
    print(f"artifact {res.artifact_dir} (version {res.version})")
    return 0

"""Training: `train(TrainSpec(...))`, the one code path of `sigd train`, the nightly retrain and
walk-forward folds.

load tapes -> samples without look-ahead (models.datasets) -> scalers fitted on train ->
balance train -> fit (models.fit; augmentation on training batches only) -> threshold grid
search on VALIDATION (strategies.threshold) -> report on TEST (accuracy, macro-F1 vs always
answering the training split's most frequent class, Sharpe net of fees vs buy-and-hold) ->
atomic artifact (models.artifacts, with the TrainSpec) + history.json + PNG plots (curves,
attention, predictions vs truth).
Trading metrics use the first symbol (the primary); other symbols only add training windows.
The family's IO (models.io) does everything family-specific: no model is named here.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

import strategies.threshold as thr
from daemon.domain import timeframe_ms
from models import plots, registry
from models.artifacts import hold_bars, load_artifact, save_artifact
from models.augment import augment
from models.data import DERIVED_FROM_1H, TapeError, find_gaps, find_tape, fingerprint, load_series
from models.datasets import TEST, TRAIN, VAL, SampleSet, assemble, build_symbol_samples
from models.features import key_timeframe
from models.fit import FitConfig, choose_batch_size, fit, memory_estimate, pick_device
from models.io import WindowIO
from models.targets import IGNORE, TargetSpec, balance, class_counts
from pipeline import evaluate
from pipeline.spec import DEFAULT_DATA, DEFAULT_SYMBOLS, REPO, TrainSpec

REFERENCE = "BTC/USDT"
BARS_PER_YEAR_1M = thr.MINUTES_PER_YEAR
Log = Callable[[str], None]
__all__ = ["DEFAULT_DATA", "DEFAULT_SYMBOLS", "REPO", "TrainSpec", "train", "evaluate_artifact"]


class FlagError(ValueError):
    """Input the data cannot serve (a timeframe it cannot give, a span no pair covers): the
    message names the flag; `sigd train` prints it and exits 2."""


@dataclass
class TrainResult:
    """What a training run produced."""

    artifact_dir: Path
    version: str
    metrics: dict[str, Any]
    history: dict[str, list[float]]
    samples: dict[str, Any] = field(default_factory=dict)


def _iso(ms: int | None) -> str:
    return "open" if ms is None else datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _iso_ms(text: str | None, what: str = "date") -> int | None:
    if not text:
        return None
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValueError(f"{what} {text!r}: not an ISO 8601 instant (e.g. 2025-06-01T00:00:00Z): {exc}") from None
    return int((dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp() * 1000)


def bars_per_year(trigger: str) -> float:
    """Trigger bars in a year (annualised Sharpe of the threshold search and the test report)."""
    return BARS_PER_YEAR_1M * timeframe_ms("1m") / timeframe_ms(trigger)


def load_symbol(
    dirs: Sequence[Path],
    symbol: str,
    keys: Sequence[str],
    start: int | None,
    end: int | None,
    log: Log,
    trigger: str = "1m",
) -> dict[str, np.ndarray | None]:
    """Series per window key for one symbol; the primary (trigger) series cut to [start, end),
    context whole. 4h/1d come from a 1h file when there is no file of their own."""
    try:
        prim = load_series(dirs, symbol, trigger, start_ms=start, end_ms=end)
    except TapeError as exc:
        sources = (trigger, "1h") if trigger in DERIVED_FROM_1H else (trigger,)
        if all(find_tape(dirs, symbol, tf) is None for tf in sources):  # absent, not malformed: the data cannot give it
            raise FlagError(f"--timeframe {trigger}: {exc}") from None
        raise
    if prim is None or len(prim) == 0:
        span = f"[{_iso(start)}, {_iso(end)})"
        raise FlagError(f"--from/--to: {symbol} has no {trigger} bar in the span {span}")
    out: dict[str, np.ndarray | None] = {trigger: prim}
    for key in keys:
        if key == trigger:
            continue
        sym = REFERENCE if key.startswith("btc_") else symbol
        out[key] = load_series(dirs, sym, key_timeframe(key), required=False)
    for key, bars in out.items():
        if bars is not None:
            gaps = find_gaps(bars, key_timeframe(key))
            if gaps:
                log(
                    f"{symbol} {key}: {len(gaps)} gap(s), {sum(g.missing for g in gaps)} missing bars "
                    "(windows spanning them are not used)"
                )
    return out


def build_sampleset(
    io: WindowIO,
    seq_len: int,
    dirs: Sequence[Path],
    symbols: Sequence[str],
    start: int | None,
    end: int | None,
    target: TargetSpec,
    log: Log,
) -> tuple[SampleSet, list]:
    """Load every symbol's windows the family needs, pick its features, build and assemble samples."""
    loaded = [load_symbol(dirs, s, io.window_keys, start, end, log, io.trigger) for s in symbols]
    inputs = tuple(k for k in io.window_keys if any(series.get(k) is not None for series in loaded))
    shortest = min(len(series[io.trigger]) for series in loaded)
    spec = io.feature_spec(seq_len, shortest, inputs, log)
    per_symbol = [
        (build_symbol_samples(s, series, spec, target, aux_targets=io.aux_targets), series) for s, series in zip(symbols, loaded)
    ]
    return assemble(per_symbol, spec), loaded


def _batches(
    io: WindowIO,
    ss: SampleSet,
    idx: np.ndarray,
    bs: int,
    device: torch.device,
    rng: np.random.Generator | None = None,
    max_batches: int = 0,
) -> tuple[Iterator[dict[str, Any]], int]:
    order = rng.permutation(idx) if rng is not None else idx
    if max_batches:
        order = order[: max_batches * bs]
    n = (len(order) + bs - 1) // bs
    return (io.batch(ss, order[i * bs : (i + 1) * bs], device) for i in range(n)), n


def predict_scores(
    io: WindowIO, model: torch.nn.Module, ss: SampleSet, idx: np.ndarray, device: torch.device, bs: int = 512
) -> np.ndarray:
    """Scores (probabilities or returns) for samples idx, in order."""
    model.eval()
    out = []
    with torch.inference_mode():
        for i in range(0, len(idx), bs):
            out.append(io.scores(model, io.inputs(ss, idx[i : i + bs], device)))
    return np.concatenate(out) if out else np.zeros((0, 3))


def _primary(ss: SampleSet, part: int) -> np.ndarray:
    idx = np.flatnonzero((ss.split == part) & (ss.symbol_id == 0))
    if len(idx) == 0:
        raise ValueError(
            f"the primary symbol {ss.symbols[0]} has no {('train', 'validation', 'test')[part]} samples (more bars needed)"
        )
    return idx


def test_report(
    io: WindowIO, model: torch.nn.Module, ss: SampleSet, device: torch.device, threshold: float, fee: float, hold: int = 1
) -> tuple[dict[str, Any], np.ndarray]:
    """Every test-split number of the primary symbol at a given threshold and holding period, and
    the test scores."""
    test = _primary(ss, TEST)
    scores = predict_scores(io, model, ss, test, device)
    report = evaluate.trading_report(scores, ss.next_ret[test], threshold, io.mode, fee, bars_per_year(ss.spec.trigger), hold)
    if io.mode == "classification":
        majority = int(np.argmax(class_counts(ss.y[ss.indices(TRAIN)])))  # of the unbalanced train split
        report.update(evaluate.classification_report(ss.y[test], scores, majority))
    else:
        report["mse"] = float(np.mean((scores - ss.y[test]) ** 2))
    return report, scores


def _evaluate(
    io: WindowIO, model: torch.nn.Module, ss: SampleSet, device: torch.device, fee: float, hold: int
) -> tuple[dict[str, Any], thr.ThresholdResult, np.ndarray]:
    """Threshold on validation (primary symbol) under holding period `hold`, then every test number."""
    val = _primary(ss, VAL)
    val_scores = predict_scores(io, model, ss, val, device)
    chosen = thr.optimize(val_scores, ss.next_ret[val], io.mode, fee=fee, bars_per_year=bars_per_year(ss.spec.trigger), hold=hold)
    report, test_scores = test_report(io, model, ss, device, chosen.threshold, fee, hold)
    metrics = {
        "test": report,
        "validation": {"threshold": chosen.threshold, "sharpe": chosen.sharpe, "trades": chosen.trades, "hold_bars": hold},
    }
    return metrics, chosen, test_scores


def _fit_config(spec: TrainSpec, io: WindowIO, batch_size: int, progress: bool) -> FitConfig:
    """The loop's knobs from the spec; augmentation draws from its own seeded generator."""
    gen = torch.Generator().manual_seed(spec.seed + 1)
    aug = (lambda b: augment(b, io, spec.jitter, spec.scaling, gen)) if spec.jitter or spec.scaling else None
    return FitConfig(
        epochs=spec.epochs or FitConfig.epochs,
        batch_size=batch_size,
        lr=spec.lr,
        max_train_batches=spec.max_batches,
        scheduler=spec.scheduler,
        progress=progress,
        augment=aug,
    )


def _train_indices(ss: SampleSet, mode: str, rng: np.random.Generator, log: Log) -> np.ndarray:
    idx = ss.indices(TRAIN)
    if mode != "classification":
        return idx[np.isfinite(ss.y[idx])]
    log(f"train labels SHORT/FLAT/LONG before balancing: {class_counts(ss.y[idx])}")
    return balance(idx, ss.y, rng)


def _labelled(ss: SampleSet, part: int, mode: str) -> np.ndarray:
    idx = ss.indices(part)
    return idx[ss.y[idx] != IGNORE] if mode == "classification" else idx[np.isfinite(ss.y[idx])]


def _write_report(
    out: Path, io: WindowIO, model: torch.nn.Module, ss: SampleSet, history: dict, test_scores: np.ndarray, device: torch.device
) -> None:
    """history.json, curves, the attention of the last test window (families that attend) and
    predictions vs truth on the test split, next to the artifact."""
    (out / "history.json").write_text(json.dumps(_json_history(history), indent=1))
    plots.curves(history, out)
    test = _primary(ss, TEST)
    with torch.inference_mode():
        weights = io.attention(model, io.inputs(ss, test[-1:], device))
    if weights is not None:
        plots.attention(weights[0], out, f"{io.name}: last test window")
    if io.mode == "regression":
        plots.predictions_vs_truth(test_scores, ss.y[test], out)
    else:
        plots.class_probabilities(test_scores, out)
        plots.classes_vs_truth(test_scores, ss.y[test], out)


def _prepare(spec: TrainSpec, log: Log) -> tuple[WindowIO, SampleSet, Any, str]:
    """IO, sample set and model config (the data decides n_features and inputs)."""
    family = registry.family(spec.model)
    io = family.make_io(spec.target.mode, spec.trigger_timeframe)
    base = family.make_config({**io.config_overrides_base(), **spec.config}, spec.preset)
    dirs = [Path(d) for d in spec.data_dirs]
    start, end = _iso_ms(spec.start, "--from"), _iso_ms(spec.end, "--to")
    ss, loaded = build_sampleset(io, base.seq_len, dirs, spec.symbols, start, end, spec.target, log)
    config = family.make_config({**base.to_dict(), **io.config_overrides(ss.spec)})
    fp = fingerprint(
        (f"{s}:{k}", a[a[:, 0] < ss.extra["close_ts"].max()])
        for s, series in zip(spec.symbols, loaded)
        for k, a in sorted(series.items())
        if a is not None
    )
    return io, ss, config, fp


def _batch_size(net: torch.nn.Module, ss: SampleSet, dev: torch.device, given: int, cnn: bool, log: Log) -> int:
    """The given batch size or one chosen from free memory; prints the memory estimate."""
    sample_floats = ss.spec.seq_len * len(ss.spec.feature_names) * len(ss.spec.inputs)
    bs = given or choose_batch_size(dev, sample_floats, cnn=cnn)
    est = memory_estimate(net, sample_floats, bs)
    log(
        f"device {dev}; batch {bs}; memory estimate: {int(est['params'])} params, weights {est['weights_mb']:.2f} MB, "
        f"training state {est['training_state_mb']:.2f} MB, batch inputs {est['batch_inputs_mb']:.2f} MB, "
        f"activations ~{est['activations_mb_guess']:.1f} MB"
    )
    return bs


def _meta(
    ss: SampleSet,
    spec: TrainSpec,
    chosen: thr.ThresholdResult,
    metrics: dict[str, Any],
    history: dict[str, list[float]],
    train_idx: np.ndarray,
    run: dict[str, Any],
) -> dict[str, Any]:
    """The artifact's JSON content besides model and weights."""
    mode = spec.target.mode
    samples = {
        "train": int(len(train_idx)),
        "train_unbalanced": int(len(ss.indices(TRAIN))),
        "validation": int(len(ss.indices(VAL))),
        "test": int(len(ss.indices(TEST))),
        "train_classes": class_counts(ss.y[train_idx]) if mode == "classification" else None,
        "symbols": list(ss.symbols),
    }
    training = {"preset": spec.preset, "seed": spec.seed, **{k: run[k] for k in ("device", "batch_size", "trend_tau")}}
    training.update(
        {
            "epochs_trained": len(history["train_loss"]),
            "best_epoch": history.get("best_epoch"),
            "best_val_loss": float(min(history["val_loss"])),
            "final_lr": history["lr"][-1],
            "seconds": round(time.time() - run["started"], 1),
            "torch": torch.__version__,
            "trained_at": datetime.now(UTC).isoformat(),
        }
    )
    return {
        "features": ss.spec.to_dict(),
        "target": spec.target.to_dict(),
        "train_spec": spec.to_dict(),
        "threshold": {
            "value": chosen.threshold,
            "validation_sharpe": chosen.sharpe,
            "mode": mode,
            "hold_bars": chosen.hold,
            "fee": spec.fee,
            "bars_per_year": bars_per_year(spec.trigger_timeframe),
            "grid": [list(g) for g in chosen.grid],
        },
        "training": training,
        "data": {
            "fingerprint": run["fingerprint"],
            "dirs": list(spec.data_dirs),
            "start": spec.start,
            "end": spec.end,
            "first_close_ts": int(ss.extra["close_ts"].min()),
            "last_close_ts": int(ss.extra["close_ts"].max()),
        },
        "samples": samples,
        "metrics": metrics,
        "history": _json_history(history),
    }


def _json_history(history: dict[str, list[float]]) -> dict[str, list[float | None]]:
    """NaN (accuracy in regression) becomes null: JSON has no NaN."""
    return {k: [v if np.isfinite(v) else None for v in vals] for k, vals in history.items()}


def train(
    spec: TrainSpec, out_dir: Path | str | None = None, *, progress: bool = False, log: Log = lambda s: None
) -> TrainResult:
    """Train as `spec` says and write an artifact to out_dir (default runs/train/<model>)."""
    t_start = time.time()
    torch.manual_seed(spec.seed)
    rng = np.random.default_rng(spec.seed)
    mode = spec.target.mode
    dev = pick_device(spec.device)  # before the data load: a wrong --device fails at once
    io, ss, config, fp = _prepare(spec, log)
    net = registry.family(spec.model).model(config).to(dev)
    train_idx = _train_indices(ss, mode, rng, log)
    val_idx = _labelled(ss, VAL, mode)
    if spec.max_val and len(val_idx) > spec.max_val:  # a fixed subset for the per-epoch loss (CPU time)
        val_idx = np.sort(rng.choice(val_idx, size=spec.max_val, replace=False))
    io.prepare(ss)
    bs = _batch_size(net, ss, dev, spec.batch_size, bool(getattr(config, "use_cnn", False)), log)
    log(f"samples train {len(train_idx)} (balanced) / val {len(val_idx)} / test {len(ss.indices(TEST))}")
    cfg = _fit_config(spec, io, bs, progress)
    history = fit(
        net,
        io.step,
        lambda e: _batches(io, ss, train_idx, bs, dev, rng, cfg.max_train_batches),
        lambda: _batches(io, ss, val_idx, bs, dev),
        cfg,
        dev,
        log,
    )
    metrics, chosen, test_scores = _evaluate(io, net, ss, dev, spec.fee, spec.hold_bars)
    run = {"device": str(dev), "batch_size": bs, "started": t_start, "trend_tau": io.state(), "fingerprint": fp}
    meta = _meta(ss, spec, chosen, metrics, history, train_idx, run)
    out = Path(out_dir) if out_dir else REPO / "runs" / "train" / spec.model
    save_artifact(out, net, spec.model, config.to_dict(), meta)
    _write_report(out, io, net, ss, history, test_scores, dev)
    version = json.loads((out / "artifact.json").read_text())["version"]
    return TrainResult(out, version, metrics, history, meta["samples"])


def evaluate_artifact(
    art_dir: Path | str,
    *,
    data_dirs: Sequence[Path | str] = DEFAULT_DATA,
    symbols: Sequence[str] = DEFAULT_SYMBOLS,
    start: str | None = None,
    end: str | None = None,
    device: str = "auto",
    fee: float | None = None,
    log: Log = lambda s: None,
) -> dict[str, Any]:
    """Test-split report of an existing artifact on this data, with the very splits `train` would
    make, the artifact's own scalers and threshold: champion vs challenger on equal terms."""
    dev = pick_device(device)
    model, meta, spec = load_artifact(art_dir, dev)
    io = registry.family(meta["model"]["name"]).make_io(meta["threshold"]["mode"], spec.trigger)
    target = TargetSpec.from_dict(meta["target"])
    loaded = [
        load_symbol([Path(d) for d in data_dirs], s, spec.inputs, _iso_ms(start), _iso_ms(end), log, spec.trigger)
        for s in symbols
    ]
    per_symbol = [
        (build_symbol_samples(s, series, spec, target, aux_targets=io.aux_targets), series) for s, series in zip(symbols, loaded)
    ]
    ss = assemble(per_symbol, spec, scalers=spec.scalers)
    io.restore(meta["training"].get("trend_tau"))
    report, _ = test_report(
        io, model, ss, dev, float(meta["threshold"]["value"]), meta["threshold"]["fee"] if fee is None else fee, hold_bars(meta)
    )
    return {
        "test": report,
        "validation": {
            "threshold": float(meta["threshold"]["value"]),
            "sharpe": float(meta["threshold"]["validation_sharpe"]),
            "trades": -1,
        },
        "version": meta["version"],
    }

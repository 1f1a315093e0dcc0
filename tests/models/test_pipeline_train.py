"""End to end on tiny tapes: train -> artifact (+ history, plots) -> Predictor; refusals; no look-ahead."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from models import registry
from models.artifacts import ArtifactError, load_artifact
from models.data import load_series
from models.datasets import live_windows
from models.targets import TargetSpec
from pipeline.predictor import InsufficientWindows, Predictor
from pipeline.spec import TrainSpec
from pipeline.train import train
from tests.pipeline_builders import write_market, write_tape

MODELS = ("cnn_lstm_attn", "mtf_transformer")


@pytest.fixture(scope="module")
def market(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_market(tmp_path_factory.mktemp("tape"), n_1m=2500)


@pytest.fixture(scope="module")
def trained(market: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = {}
    for name in MODELS:
        res = train(
            TrainSpec(name, preset="tiny", data_dirs=(str(market),), epochs=2, max_batches=4, seed=3),
            tmp_path_factory.mktemp(name) / "art",
        )
        out[name] = res.artifact_dir
    return out


def _series(market: Path) -> dict[str, np.ndarray]:
    s = {k: load_series([market], "ETH/USDT", k) for k in ("1m", "1h", "1d")}
    s["btc_1m"] = load_series([market], "BTC/USDT", "1m")
    return s


@pytest.mark.parametrize("name", MODELS)
def test_training_writes_artifact_history_and_plots(trained: dict[str, Path], name: str) -> None:
    d = trained[name]
    for f in (
        "model.safetensors",
        "artifact.json",
        "history.json",
        "loss.png",
        "accuracy.png",
        "attention.png",
        "predictions.png",
    ):
        assert (d / f).stat().st_size > 0, f
    meta = json.loads((d / "artifact.json").read_text())
    assert meta["classes"] == {"0": "SHORT", "1": "FLAT", "2": "LONG"}
    assert len(meta["history"]["train_loss"]) == 2 and meta["samples"]["train"] > 0
    assert 0.0 <= meta["metrics"]["test"]["accuracy"] <= 1.0 and len(meta["data"]["fingerprint"]) == 64
    # the threshold was optimized with a holding period of the target horizon, and says so
    assert meta["threshold"]["hold_bars"] == meta["target"]["horizon"] == 15
    # the artifact says how to train it again
    spec = TrainSpec.from_dict(meta["train_spec"])
    assert (spec.model, spec.preset, spec.epochs, spec.max_batches, spec.seed) == (name, "tiny", 2, 4, 3)
    wanted = registry.family(name).make_io("classification").window_keys
    assert meta["features"]["inputs"] == [k for k in wanted if k != "1s"]  # no recorded 1s: masked


@pytest.mark.parametrize("name", MODELS)
def test_round_trip_and_batch_equal_bar_by_bar(trained: dict[str, Path], market: Path, name: str) -> None:
    pred = Predictor.load(trained[name], device="cpu")
    series = _series(market)
    ts = [int(t) for t in series["1m"][-40:, 0]]
    windows = [live_windows(series, t, pred.required_windows) for t in ts]
    one = [pred.predict(w, t) for w, t in zip(windows, ts)]
    many = pred.predict_batch(windows, ts)
    assert [p.side for p in one] == [p.side for p in many]
    np.testing.assert_allclose([p.probs for p in one], [p.probs for p in many], atol=1e-5)
    again = Predictor.load(trained[name], device="cpu")  # a second load gives identical outputs
    assert [again.predict(w, t).probs for w, t in zip(windows[:5], ts[:5])] == [p.probs for p in one[:5]]
    assert one[0].model == name and one[0].version == pred.version and one[0].threshold == pred.threshold
    assert pred.hold_bars == 15 and {p.hold_bars for p in one + many} == {15}


@pytest.mark.parametrize("name", MODELS)
def test_predictions_up_to_t_ignore_every_later_bar(trained: dict[str, Path], market: Path, name: str) -> None:
    pred = Predictor.load(trained[name], device="cpu")
    series = _series(market)
    t_row = len(series["1m"]) - 30
    t_close = series["1m"][t_row, 0] + 60_000
    other = {k: v.copy() for k, v in series.items()}
    rng = np.random.default_rng(1)
    for k, v in other.items():  # shuffle every bar that closes after t
        later = v[:, 0] + (v[1, 0] - v[0, 0]) > t_close
        v[later, 1:] = rng.permutation(v[later, 1:])
    ts = [int(t) for t in series["1m"][t_row - 10 : t_row + 1, 0]]
    a = pred.predict_batch([live_windows(series, t, pred.required_windows) for t in ts], ts)
    b = pred.predict_batch([live_windows(other, t, pred.required_windows) for t in ts], ts)
    assert [p.probs for p in a] == [p.probs for p in b]


def test_too_short_windows_are_refused_clearly(trained: dict[str, Path], market: Path) -> None:
    pred = Predictor.load(trained["cnn_lstm_attn"], device="cpu")
    bars = _series(market)["1m"][-5:]
    with pytest.raises(InsufficientWindows, match="needs"):
        pred.predict({"1m": bars}, int(bars[-1, 0]))


def _copy(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    return dst


def test_corrupt_or_mismatched_artifacts_are_refused(trained: dict[str, Path], tmp_path: Path) -> None:
    src = trained["cnn_lstm_attn"]
    bad = _copy(src, tmp_path / "flipped")
    w = bytearray((bad / "model.safetensors").read_bytes())
    w[-1] ^= 0xFF
    (bad / "model.safetensors").write_bytes(bytes(w))
    with pytest.raises(ArtifactError, match="sha256"):
        load_artifact(bad)
    bad = _copy(src, tmp_path / "json")
    (bad / "artifact.json").write_text((src / "artifact.json").read_text()[:100])
    with pytest.raises(ArtifactError, match="corrupt JSON"):
        load_artifact(bad)
    for edit, why in (
        (lambda m: m["model"]["config"].update(lstm_hidden=16), "wrong shape"),
        (lambda m: m["features"].update(version=99), "feature version"),
        (lambda m: m.update(format_version=2), "format_version"),
    ):
        bad = _copy(src, tmp_path / why.replace(" ", "_"))
        meta = json.loads((src / "artifact.json").read_text())
        edit(meta)
        (bad / "artifact.json").write_text(json.dumps(meta))
        with pytest.raises(ArtifactError, match=why):
            load_artifact(bad)
    bad = _copy(src, tmp_path / "hold")
    meta = json.loads((src / "artifact.json").read_text())
    meta["threshold"]["hold_bars"] = 0
    (bad / "artifact.json").write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match="hold_bars"):
        Predictor.load(bad, device="cpu")


def test_training_is_reproducible_on_cpu(market: Path, tmp_path: Path) -> None:
    spec = TrainSpec("cnn_lstm_attn", preset="tiny", data_dirs=(str(market),), epochs=1, max_batches=2, seed=5)
    runs = [train(spec, tmp_path / str(i)) for i in range(2)]
    assert runs[0].version == runs[1].version  # same weights hash
    model, _, _ = load_artifact(runs[0].artifact_dir)
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_regression_mode_trains_plots_and_predicts(market: Path, tmp_path: Path) -> None:
    res = train(
        TrainSpec(
            "stacked_lstm", preset="tiny", data_dirs=(str(market),), epochs=1, max_batches=2, target=TargetSpec(mode="regression")
        ),
        tmp_path / "reg",
    )
    assert (res.artifact_dir / "predictions.png").exists() and "mse" in res.metrics["test"]
    pred = Predictor.load(res.artifact_dir, device="cpu")
    series = _series(market)
    t = int(series["1m"][-1, 0])
    p = pred.predict(live_windows(series, t, pred.required_windows), t)
    assert p.confidence >= 0 and sum(p.probs) == 1.0 and p.probs[int(p.side)] == 1.0


@pytest.mark.parametrize("name", MODELS)
def test_save_load_round_trip_gives_identical_outputs(trained: dict[str, Path], tmp_path: Path, name: str) -> None:
    from models.artifacts import read_meta, save_artifact

    model, meta, spec = load_artifact(trained[name])
    keep = {k: v for k, v in meta.items() if k not in ("format", "format_version", "model", "classes", "version", "weights")}
    copy = save_artifact(tmp_path / "copy", model, name, meta["model"]["config"], keep)
    again, meta2, _ = load_artifact(copy)
    assert read_meta(copy)["version"] == meta["version"] and meta2["features"] == meta["features"]
    io = registry.family(name).make_io("classification")
    x = io.example(model.config, 4, torch.device("cpu"), torch.Generator().manual_seed(0))
    a, b = io.outputs(model, x), io.outputs(again, x)
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("name", MODELS)
def test_evaluating_an_artifact_reproduces_its_own_test_report(trained: dict[str, Path], market: Path, name: str) -> None:
    from pipeline.train import evaluate_artifact

    stored = json.loads((trained[name] / "artifact.json").read_text())["metrics"]["test"]
    again = evaluate_artifact(trained[name], data_dirs=[market], device="cpu")["test"]
    assert again.keys() == stored.keys()
    for k, v in stored.items():
        assert again[k] == pytest.approx(v, rel=1e-6, abs=1e-9), k


def test_a_failed_save_leaves_the_previous_artifact_intact(trained: dict[str, Path], tmp_path: Path) -> None:
    from models.artifacts import save_artifact

    dst = _copy(trained["cnn_lstm_attn"], tmp_path / "live")
    before = (dst / "artifact.json").read_text()
    model, meta, _ = load_artifact(dst)
    with pytest.raises(ValueError):  # NaN is not JSON: the write fails half way
        save_artifact(dst, model, "cnn_lstm_attn", meta["model"]["config"], {"threshold": float("nan")})
    assert (dst / "artifact.json").read_text() == before and load_artifact(dst)[1]["version"] == meta["version"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["live"]  # no temporary directory left behind


def test_a_timeframe_shorter_than_one_window_is_masked_not_a_crash(tmp_path: Path) -> None:
    # A stored history with only a few 1d bars (a young deployment's nightly retrain) must train
    # with 1d masked everywhere instead of indexing past the few rows it has.
    market = write_market(tmp_path / "tape", n_1m=2500)
    for symbol in ("ETH/USDT", "BTC/USDT"):
        daily = load_series([market], symbol, "1d")
        write_tape(market, symbol, "1d", daily[-3:])
    res = train(
        TrainSpec("mtf_transformer", preset="tiny", data_dirs=(str(market),), epochs=1, max_batches=2, seed=3), tmp_path / "art"
    )
    assert (res.artifact_dir / "model.safetensors").exists()

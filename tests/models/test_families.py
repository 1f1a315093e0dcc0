"""Every registered family, at the level a user meets it: `sigd train`'s code path (tiny, a few
steps), served by the Predictor, round-tripped through its artifact, and blind to later bars."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from models import registry
from models.artifacts import load_artifact, save_artifact
from models.data import load_series
from models.datasets import live_windows
from pipeline.predictor import Predictor
from pipeline.spec import TrainSpec, spec_of_meta
from pipeline.train import train
from tests.conftest import REPO
from tests.pipeline_builders import write_market

FAMILIES = list(registry.FAMILIES)
NEW = ("gru", "tcn", "seq2seq_attention", "tft", "informer", "cnn_lstm")  # the seeds' remaining models


@pytest.fixture(scope="module")
def market(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_market(tmp_path_factory.mktemp("tape"), n_1m=2000)


@pytest.fixture(scope="module")
def trained(market: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("families")
    spec = TrainSpec("gru", preset="tiny", data_dirs=(str(market),), epochs=1, max_batches=2, seed=2, device="cpu")
    return {name: train(spec.replace(model=name), root / name).artifact_dir for name in FAMILIES}


def _series(market: Path) -> dict[str, np.ndarray]:
    s = {k: load_series([market], "ETH/USDT", k) for k in ("1m", "1h", "1d")}
    s["btc_1m"] = load_series([market], "BTC/USDT", "1m")
    return s


def test_the_seeds_families_are_registered() -> None:
    assert set(NEW) <= set(registry.FAMILIES)
    for name in FAMILIES:
        fam = registry.family(name)
        assert fam.name == name
        for preset in ("tiny", "small", "seed"):
            fam.config.preset(preset)  # every family has the three presets


@pytest.mark.parametrize("name", FAMILIES)
def test_each_family_trains_writes_its_plots_and_says_how_it_was_trained(trained: dict[str, Path], name: str) -> None:
    d = trained[name]
    meta = json.loads((d / "artifact.json").read_text())
    assert meta["model"]["name"] == name and len(meta["history"]["train_loss"]) == 1
    spec = spec_of_meta(meta)
    assert (spec.model, spec.preset, spec.max_batches, spec.seed) == (name, "tiny", 2, 2)
    for f in ("history.json", "loss.png", "predictions.png"):
        assert (d / f).stat().st_size > 0, f
    model, _, _ = load_artifact(d)
    io = registry.family(name).make_io("classification")
    attends = io.attention(model, io.example(model.config, 1, torch.device("cpu"))) is not None
    assert (d / "attention.png").exists() == attends


@pytest.mark.parametrize("name", FAMILIES)
def test_each_family_serves_through_the_predictor(trained: dict[str, Path], market: Path, name: str) -> None:
    pred = Predictor.load(trained[name], device="cpu")
    series = _series(market)
    ts = [int(t) for t in series["1m"][-12:, 0]]
    windows = [live_windows(series, t, pred.required_windows) for t in ts]
    one = [pred.predict(w, t) for w, t in zip(windows, ts)]
    many = pred.predict_batch(windows, ts)
    assert [p.side for p in one] == [p.side for p in many]
    np.testing.assert_allclose([p.probs for p in one], [p.probs for p in many], atol=1e-5)
    p = one[-1]
    assert {"p_short", "p_flat", "p_long"} <= set(p.scores) and sum(p.probs) == pytest.approx(1.0, abs=1e-5)
    assert p.model == name and p.version == pred.version


@pytest.mark.parametrize("name", FAMILIES)
def test_each_family_round_trips_through_its_artifact(trained: dict[str, Path], tmp_path: Path, name: str) -> None:
    model, meta, _ = load_artifact(trained[name])
    keep = {k: v for k, v in meta.items() if k not in ("format", "format_version", "model", "classes", "version", "weights")}
    again, meta2, _ = load_artifact(save_artifact(tmp_path / "copy", model, name, meta["model"]["config"], keep))
    assert meta2["version"] == meta["version"] and meta2["train_spec"] == meta["train_spec"]
    io = registry.family(name).make_io("classification")
    x = io.example(model.config, 3, torch.device("cpu"), torch.Generator().manual_seed(0))
    a, b = io.outputs(model, x), io.outputs(again, x)
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("name", FAMILIES)
def test_each_family_is_blind_to_bars_after_t(trained: dict[str, Path], market: Path, name: str) -> None:
    pred = Predictor.load(trained[name], device="cpu")
    series = _series(market)
    t_row = len(series["1m"]) - 20
    t_close = series["1m"][t_row, 0] + 60_000
    other = {k: v.copy() for k, v in series.items()}
    rng = np.random.default_rng(4)
    for v in other.values():  # scramble every bar that closes after t
        later = v[:, 0] + (v[1, 0] - v[0, 0]) > t_close
        v[later, 1:] = rng.permutation(v[later, 1:]) * 1.5
    ts = [int(t) for t in series["1m"][t_row - 5 : t_row + 1, 0]]
    a = pred.predict_batch([live_windows(series, t, pred.required_windows) for t in ts], ts)
    b = pred.predict_batch([live_windows(other, t, pred.required_windows) for t in ts], ts)
    assert [p.scores for p in a] == [p.scores for p in b]
    later = [int(series["1m"][t_row + 5, 0])]  # the scrambled bars do reach a later prediction
    c = pred.predict_batch([live_windows(series, t, pred.required_windows) for t in later], later)
    d = pred.predict_batch([live_windows(other, t, pred.required_windows) for t in later], later)
    assert c[0].scores != d[0].scores


def test_the_hybrid_serves_its_extra_heads_as_scores(trained: dict[str, Path], market: Path) -> None:
    pred = Predictor.load(trained["mtf_transformer"], device="cpu")
    series = _series(market)
    t = int(series["1m"][-1, 0])
    p = pred.predict(live_windows(series, t, pred.required_windows), t)
    assert {"confidence", "price", "volatility", "trend_strength"} <= set(p.scores)
    assert 0.0 < p.scores["confidence"] < 1.0 and p.scores["volatility"] >= 0.0


def test_shipped_artifacts_written_before_train_spec_get_one_from_their_json() -> None:
    from models.artifacts import read_meta

    meta = read_meta(REPO / "models" / "artifacts" / "cnn_lstm_attn")
    assert "train_spec" not in meta
    spec = spec_of_meta(meta)
    assert (spec.model, spec.preset, spec.symbols) == ("cnn_lstm_attn", "small", ("ETH/USDT", "BTC/USDT"))
    assert spec.target.horizon == meta["target"]["horizon"] and spec.hold_bars == meta["threshold"]["hold_bars"]


def test_train_spec_round_trips_and_refuses_bad_fields() -> None:
    spec = TrainSpec("tcn", preset="tiny", data_dirs=["a", "b"], config={"dropout": 0.0}, jitter=0.01)
    assert TrainSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    assert spec.data_dirs == ("a", "b") and spec.hold_bars == spec.target.horizon
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['epoch'\]"):
        TrainSpec.from_dict({"model": "tcn", "epoch": 3})
    with pytest.raises(ValueError, match="TrainSpec.scheduler"):
        TrainSpec("tcn", scheduler="linear")
    with pytest.raises(ValueError, match="TrainSpec.data_dirs"):
        TrainSpec("tcn", data_dirs="one/dir")
    with pytest.raises(ValueError, match="TrainSpec.jitter"):
        TrainSpec("tcn", jitter=-0.1)

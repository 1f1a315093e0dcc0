"""Training features beside the networks: OneCycle, augmentation (training batches only),
and predictions stored with every score (the predictions table keeps no column per class)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
import torch

from daemon.domain import Prediction, Side, class_scores
from daemon.store import Store
from models import registry
from models.augment import augment
from models.fit import FitConfig, fit


def _batches(tag: str, n: int, seed: int) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    return [{"x": torch.randn(8, 12, 6, generator=g), "y": torch.arange(8) % 3, "tag": tag} for _ in range(n)]


def _fit(scheduler: str, epochs: int, seen: list[str] | None = None) -> dict[str, list[float]]:
    torch.manual_seed(0)
    fam = registry.family("gru")
    io = fam.make_io("classification")
    model = fam.build({"n_features": 6}, preset="tiny")
    train, val = _batches("train", 3, 1), _batches("validation", 2, 2)

    def spy(b: dict) -> dict:
        assert seen is not None
        seen.append(b["tag"])
        return augment(b, io, 0.05, 0.05, torch.Generator().manual_seed(len(seen)))

    cfg = FitConfig(
        epochs=epochs, batch_size=8, patience=99, scheduler=scheduler, progress=False, augment=spy if seen is not None else None
    )
    return fit(model, io.step, lambda e: (iter(train), len(train)), lambda: (iter(val), len(val)), cfg, torch.device("cpu"))


def test_onecycle_warms_up_then_anneals_over_every_batch() -> None:
    lr = _fit("onecycle", epochs=8)["lr"]  # the lr at the start of each epoch
    peak = max(lr)
    assert lr[0] == pytest.approx(1e-3 / 25)  # OneCycle's initial lr = max_lr / div_factor
    assert lr.index(peak) not in (0, len(lr) - 1) and lr[-1] < lr[lr.index(peak)]
    assert _fit("cosine", epochs=3)["lr"][0] == pytest.approx(1e-3)  # the other schedules are unchanged


def test_augmentation_sees_training_batches_only() -> None:
    seen: list[str] = []
    _fit("cosine", epochs=2, seen=seen)
    assert seen == ["train"] * 6  # 3 training batches x 2 epochs; validation never augmented


def test_augmentation_is_seeded_shape_preserving_and_off_by_default() -> None:
    io = registry.family("tcn").make_io("classification")
    x = torch.randn(4, 10, 6)
    same = augment({"x": x.clone()}, io, 0.0, 0.0, torch.Generator().manual_seed(0))["x"]
    assert torch.equal(same, x)
    a = augment({"x": x.clone()}, io, 0.1, 0.2, torch.Generator().manual_seed(3))["x"]
    b = augment({"x": x.clone()}, io, 0.1, 0.2, torch.Generator().manual_seed(3))["x"]
    assert torch.equal(a, b) and a.shape == x.shape and not torch.equal(a, x)
    scaled = augment({"x": x.clone()}, io, 0.0, 0.2, torch.Generator().manual_seed(3))["x"]
    ratio = scaled / x  # scaling: one factor per sample, the same at every step and feature
    assert torch.allclose(ratio, ratio[:, :1, :1].expand_as(ratio), atol=1e-5)


def test_predictions_keep_every_score_and_old_databases_are_migrated(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    old = sqlite3.connect(path)  # the predictions table as sigd wrote it before Prediction.scores
    old.execute(
        "CREATE TABLE predictions (id INTEGER PRIMARY KEY, symbol TEXT, bar_ts INTEGER, model TEXT, "
        "version TEXT, p_short FLOAT, p_flat FLOAT, p_long FLOAT, side INTEGER, confidence FLOAT, "
        "threshold FLOAT, inference_ms FLOAT, created_ms INTEGER)"
    )
    old.execute("INSERT INTO predictions VALUES (1, 'ETH/USDT', 60000, 'm', 'v1', 0.1, 0.2, 0.7, 2, 0.7, 0.5, 1.0, 5)")
    old.commit()
    old.close()
    store = Store(path)
    assert "p_short" not in store.db["predictions"].columns_dict
    hybrid = Prediction("mtf", "v2", 120000, {**class_scores((0.5, 0.3, 0.2)), "volatility": 0.01}, Side.SHORT, 0.5, 0.4)
    regression = Prediction("reg", "v3", 120000, {"return": -0.002}, Side.SHORT, 0.002, 0.001)
    store.add_predictions("ETH/USDT", [hybrid, regression], 6)
    assert store.prediction_rows("ETH/USDT") == [
        (60000, "m", "v1", 0.1, 0.2, 0.7, 2, 0.7, 0.5),
        (120000, "mtf", "v2", 0.5, 0.3, 0.2, 0, 0.5, 0.4),
        (120000, "reg", "v3", 1.0, 0.0, 0.0, 0, 0.002, 0.001),  # a regression: its side as the class
    ]
    stored = [json.loads(r["scores"]) for r in store.db.query("SELECT scores FROM predictions ORDER BY id")]
    assert stored[1]["volatility"] == 0.01 and stored[2]["return"] == -0.002
    store.close()
    Store(path).close()  # a second open finds nothing left to migrate

"""Live progress of long commands: the ETA moves while a model trains inside a fold, on the
local runner and on Ray, and the terminal line keeps time between events."""

from __future__ import annotations

import io
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from daemon.retrain.jobs import ArtifactRef
from daemon.retrain.progress import Progress
from daemon.retrain.runners import LocalRunner, RayRunner
from models.fit import FitConfig, fit
from tests.backtest_builders import tape_dir, train_tiny
from tests.retrain.test_ray import _folds_jobs


class Recording(Progress):
    """A real Progress that also keeps every (key, fraction) it was told, in order."""

    def __init__(self, total: int, title: str) -> None:
        super().__init__(total, title, tty=False, every_s=3600.0)
        self.seen: list[tuple[object, float]] = []
        self.finished: list[object] = []

    def advance(self, key: object, fraction: float) -> None:  # type: ignore[override]
        if key in self._partial:
            self.seen.append((key, fraction))
        super().advance(key, fraction)  # type: ignore[arg-type]

    def finish(self, ok: bool, score: float | None = None, key: object = None) -> None:  # type: ignore[override]
        self.finished.append(key)
        super().finish(ok, score, key)  # type: ignore[arg-type]


def test_eta_moves_before_the_first_unit_ends() -> None:
    now = [0.0]
    p = Progress(4, "compare folds", tty=True, stream=io.StringIO(), clock=lambda: now[0], tick_s=0)
    p.start("a"), p.start("b")
    assert p.eta_s() is None  # nothing measured yet
    now[0] = 10.0
    p.advance("a", 0.5)
    p.advance("b", 0.5)  # one unit's worth of work in 10 s: 3 left
    assert p.eta_s() == pytest.approx(30.0)
    assert "1.0/4 done" in p.line() and "ETA 30 s" in p.line()
    now[0] = 20.0
    p.advance("a", 1.0)
    assert p.eta_s() == pytest.approx(20.0 / 1.5 * 2.5)
    p.finish(True, None, "a")
    p.advance("a", 0.2)  # a late report of a finished unit is dropped
    assert p.work_done() == pytest.approx(1.5)


def test_the_terminal_line_keeps_time_between_events() -> None:
    out = io.StringIO()
    p = Progress(2, "walk-forward jobs", tty=True, stream=out, tick_s=0.05)
    p.start(0)
    time.sleep(0.5)  # no event at all: the ticker redraws anyway
    p.finish(True, None, 0)
    p.close()
    assert out.getvalue().count("\r\033[K") >= 5


def _step(model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int, int]:
    time.sleep(float(batch["pause"]))  # on Ray: long enough that the driver polls the fit mid-way
    loss = nn.functional.mse_loss(model(batch["x"]).squeeze(-1), batch["y"])
    return loss, -1, 0


def tiny_fit(item: tuple[int, float]) -> int:
    """A real (small) model fit of 4 epochs x 20 batches, each batch `pause` s longer; the epochs it ran."""
    seed, pause = item
    torch.manual_seed(seed)
    model = nn.Linear(3, 1)
    data = [{"x": torch.randn(8, 3), "y": torch.randn(8), "pause": torch.tensor(pause)} for _ in range(20)]
    hist = fit(
        model,
        _step,
        lambda epoch: (iter(data), len(data)),
        lambda: (iter(data[:2]), 2),
        FitConfig(epochs=4, patience=10, progress=False),
        torch.device("cpu"),
    )
    return len(hist["val_loss"])


def _mid_way(p: Recording, key: object) -> list[float]:
    return [f for k, f in p.seen if k == key and 0.0 < f < 1.0]


def test_local_map_reports_each_fit_as_it_trains() -> None:
    p = Recording(2, "compare folds (local)")
    assert LocalRunner().map(tiny_fit, [(1, 0.0), (2, 0.0)], progress=p) == [4, 4]
    for key in (0, 1):
        fractions = _mid_way(p, key)
        assert len(fractions) >= 40 and fractions == sorted(fractions)  # every batch, in order
    assert p.finished == [0, 1] and p.done == 2 and p.work_done() == 2


@pytest.mark.slow
def test_a_walk_forward_fold_reports_its_training(tmp_path: Path) -> None:
    data = tape_dir(tmp_path / "data", minutes=3 * 1440 + 200, days_before=10, hours_before=0)
    served = train_tiny(data, tmp_path / "served", names=("cnn_lstm_attn",))
    jobs = _folds_jobs(data, {"cnn_lstm_attn": served / "cnn_lstm_attn"}, tmp_path / "work")
    p = Recording(len(jobs), "walk-forward jobs (local)")
    results = LocalRunner().run(jobs, progress=p)
    assert all(isinstance(r, ArtifactRef) for r in results), results
    # Each fold's training reported how far it had got before the fold ended.
    assert {k for k, f in p.seen if 0.0 < f <= 1.0} == set(range(len(jobs)))


@pytest.mark.slow
def test_ray_map_reports_fits_from_the_workers(ray_local: None) -> None:
    p = Recording(2, "compare folds (ray)")
    assert RayRunner(num_cpus=2).map(tiny_fit, [(1, 0.06), (2, 0.06)], progress=p) == [4, 4]
    assert any(_mid_way(p, key) for key in (0, 1)), p.seen
    assert sorted(p.finished) == [0, 1] and p.done == 2

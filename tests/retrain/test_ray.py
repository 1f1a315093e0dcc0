"""Research on Ray in local mode (2 CPUs, tiny data and models): the same jobs give the same
results as the local runner, a tune study finishes and writes its leaderboard, a killed trial
worker is retried and the study still completes."""

from __future__ import annotations

import argparse
import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from daemon import config as config_mod
from daemon.research import replay, walkforward
from daemon.retrain.jobs import ArtifactRef, JobFailed, ScoreJob, Scores
from daemon.retrain.runners import LocalRunner, RayRunner
from daemon.retrain.storage import local_path
from tests.backtest_builders import T0, TEST_CONFIG, set_threshold, tape_dir, train_tiny

ETH_1M = ("ETH/USDT", "1m")
KW = {"preset": "tiny", "epochs": 1, "max_batches": 2, "symbols": ["ETH/USDT"], "device": "cpu", "seed": 5}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Path]]:
    root = tmp_path_factory.mktemp("ray-world")
    data = tape_dir(root / "data", minutes=3 * 1440 + 200, days_before=10, hours_before=0)
    served = train_tiny(data, root / "served", names=("cnn_lstm_attn",))
    set_threshold(served / "cnn_lstm_attn", 0.34)
    return data, {"cnn_lstm_attn": served / "cnn_lstm_attn"}


def _folds_jobs(data: Path, dirs: dict[str, Path], work: Path) -> list:
    tape = replay.load_streams(data, replay.discover(data), ETH_1M)
    folds = walkforward.plan_folds(T0, T0 + 3 * walkforward.DAY_MS, 1, 1)
    return [j for f in folds for j in walkforward.fold_jobs(f, tape, ETH_1M, dirs, work, KW)]


class Killer:
    """Kills (SIGKILL) the first process whose title holds `title`, once it has run `after_s`."""

    def __init__(self, title: bytes, after_s: float = 1.0) -> None:
        self.title, self.after_s, self.killed, self._stop = title, after_s, [], threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> Killer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _loop(self) -> None:
        while not self._stop.is_set() and not self.killed:
            for pid in (p for p in os.listdir("/proc") if p.isdigit() and int(p) != os.getpid()):
                try:
                    title = Path(f"/proc/{pid}/cmdline").read_bytes()
                except OSError:
                    continue
                if title.startswith(self.title):
                    time.sleep(self.after_s)  # mid-job: it has started working
                    os.kill(int(pid), signal.SIGKILL)
                    self.killed.append(int(pid))
                    break
            time.sleep(0.05)


def test_walk_forward_on_ray_equals_the_local_runner_fold_by_fold(ray_local: None, world, tmp_path: Path) -> None:
    data, dirs = world
    local = LocalRunner().run(_folds_jobs(data, dirs, tmp_path / "local"))
    with Killer(b"ray::_remote_job", after_s=2.0) as killer:  # a worker dies mid-job: Ray runs it again
        on_ray = RayRunner(num_cpus=2).run(_folds_jobs(data, dirs, tmp_path / "ray"))
    assert killer.killed, "no job process was found to kill"
    assert len(local) == len(on_ray) == 2
    for a, b in zip(local, on_ray):
        assert isinstance(a, ArtifactRef) and isinstance(b, ArtifactRef), (a, b)
        assert (a.fold, a.family, a.version, a.train_end_ms) == (b.fold, b.family, b.version, b.train_end_ms)
        assert a.metrics == b.metrics  # same seeds, one thread per job: the same numbers
        assert local_path(b.uri).parent.parent == tmp_path / "ray"  # shipped back into the driver's storage
        assert (local_path(b.uri) / "model.safetensors").read_bytes() == (local_path(a.uri) / "model.safetensors").read_bytes()
    # Scoring through Ray, artifacts shipped as object references, keyed by the caller's URIs.
    sj = ScoreJob(
        (local[0].uri, on_ray[1].uri),
        on_ray[0].uri.rsplit("/", 1)[0] + "/data",
        "ETH/USDT",
        T0 + 6 * 3_600_000,
        T0 + 20 * 3_600_000,
    )
    [s_local], [s_ray] = LocalRunner().run([sj]), RayRunner().run([sj])
    assert isinstance(s_ray, Scores) and s_local == s_ray and set(s_ray.by_artifact) == set(sj.artifacts)


def test_a_failing_job_is_its_result_not_an_exception(ray_local: None, tmp_path: Path) -> None:
    sj = ScoreJob(((tmp_path / "nope").as_uri(),), tmp_path.as_uri(), "ETH/USDT", 0)
    [r] = RayRunner().run([sj])
    assert isinstance(r, JobFailed) and "nope" in r.error


def _tune_args(data: Path, out: Path, trials: int) -> argparse.Namespace:
    return argparse.Namespace(
        data=str(data),
        folds="1:1",
        start=None,
        end=None,
        runner=None,
        address=None,
        num_cpus=2,
        families=["cnn_lstm_attn"],
        trials=trials,
        preset="tiny",
        epochs=1,
        max_batches=2,
        out=str(out),
        name="t",
        seed=3,
    )


def _cfg(write_config) -> config_mod.Config:
    return config_mod.load(
        write_config(
            TEST_CONFIG
            + """
[research]
search = { horizon = [3, 8], label_threshold = [0.001, 0.003] }
"""
        )
    )


def test_tune_finishes_and_writes_its_leaderboard_even_when_a_trial_worker_is_killed(
    ray_local: None, world, tmp_path: Path, write_config
) -> None:
    from daemon.research.tune import run_tune

    data, _ = world
    with Killer(b"ray::ImplicitFunc") as killer:  # Tune runs each trial in an actor titled so
        board = run_tune(_cfg(write_config), _tune_args(data, tmp_path / "tune", trials=2))
    assert killer.killed, "no trial process was found to kill"
    assert len(board) == 2 and all(row["folds"] == 1 for row in board)  # every trial finished: the killed one retried
    assert [r["score"] for r in board] == sorted((r["score"] for r in board), reverse=True)
    for row in board:
        assert 3 <= row["horizon"] <= 8 and 0.001 <= row["label_threshold"] <= 0.003
    saved = json.loads((tmp_path / "tune" / "t" / "leaderboard.json").read_text())
    assert saved == json.loads(json.dumps(board, default=str))
    assert (tmp_path / "tune" / "t" / "leaderboard.csv").read_text().startswith("family,score,folds")


async def test_nightly_retrain_on_ray_trains_every_model_and_keeps_uris(
    ray_local: None, tmp_path: Path, write_config, tiny_artifacts: dict[str, Path]
) -> None:
    import shutil

    from daemon.retrain.nightly import Retrainer
    from daemon.store import Store
    from tests.retrain.test_retrain import RecordingSink, _store_from_tape

    cfg = config_mod.load(
        write_config(f"""
        [store]
        path = "{tmp_path / "state.sqlite"}"
        [exchange]
        timeframes = ["1m", "1h"]
        [retrain]
        artifacts_dir = "{tmp_path / "models"}"
        preset = "tiny"
        epochs = 1
        max_batches = 2
        holdout_hours = 6.0
        train_days = 1.0
        min_improvement = -1000.0
        [research]
        runner = "ray"
    """)
    )
    store = Store(cfg.path(cfg.store.path))
    _store_from_tape(store, 1_754_265_600_000 + 5 * 86_400_000, 1_754_956_800_000)  # 2025-08-09 .. 08-12
    dirs = {n: Path(shutil.copytree(tiny_artifacts[n], tmp_path / "serving" / n)) for n in ("cnn_lstm_attn", "mtf_transformer")}
    swapped: list[str] = []

    async def swap(name: str, path: Path) -> None:
        swapped.append(name)

    r = Retrainer(cfg, store, RecordingSink(), swap, lambda: dict(dirs))
    outcomes = await r.run_once()
    assert r.runner.name == "ray"
    # min_improvement = -1000: any scored model is promoted, so both went all the way through Ray
    assert [(o.model, o.status) for o in outcomes] == [("cnn_lstm_attn", "promoted"), ("mtf_transformer", "promoted")], outcomes
    assert swapped == ["cnn_lstm_attn", "mtf_transformer"]
    for o in outcomes:
        row = store.current_model(o.model)
        assert row["path"].startswith("file:///") and local_path(row["path"]) == Path(o.path)
        assert (Path(o.path) / "model.safetensors").is_file()


def test_a_trial_that_fails_by_itself_is_not_retried_and_a_study_of_failures_fails(
    ray_local: None, world, tmp_path: Path, write_config
) -> None:
    # horizon 0 is refused by the target (ValueError) inside every trial: deterministic, so it is
    # the trial's result, not a retry (a retried trial would come back as "worker lost")
    from daemon.research.tune import run_tune

    data, _ = world
    cfg = config_mod.load(write_config(TEST_CONFIG + "\n[research]\nsearch = { horizon = [0, 0] }\n"))
    with pytest.raises(RuntimeError) as err:
        run_tune(cfg, _tune_args(data, tmp_path / "tune", trials=2))
    assert str(err.value) == ("every trial failed (2): cnn_lstm_attn: ValueError: horizon must be >= 1 bar, got 0")
    assert not (tmp_path / "tune" / "t" / "leaderboard.json").exists()


def test_a_board_where_nobody_traded_says_so_plainly() -> None:
    from daemon.research.tune import no_trades_note

    idle = [{"family": "gru", "score": 0.0, "trades": 0}, {"family": "gru", "score": 0.0, "trades": 0}]
    assert no_trades_note(idle).startswith("every trial scored 0 because none traded: no model of the 2 trials")
    assert no_trades_note([*idle, {"family": "gru", "score": 0.4, "trades": 3}]) is None
    assert no_trades_note([]) is None

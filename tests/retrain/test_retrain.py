"""Overnight retraining with real parts: SQLite history, tape export, real subprocesses, the
registry, atomic installs; champion/challenger with tiny artifacts trained by the real code."""

from __future__ import annotations

import asyncio
import csv
import json
from collections.abc import Mapping
from datetime import UTC
from pathlib import Path
from typing import Any

import pytest

from daemon import config as config_mod
from daemon.domain import Bar
from daemon.retrain.nightly import Retrainer, export_tapes, install_artifact, prune_artifacts
from daemon.store import Store


class RecordingSink:
    """An EventSink that keeps what it was given (the outbox's contract, in memory)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def publish(self, type: str, payload: Mapping[str, Any], event_id: str | None = None) -> str:
        self.events.append((type, dict(payload)))
        return event_id or f"e{len(self.events)}"


def _bars(symbol: str, tf: str, start: int, n: int, step: int, price: float = 100.0) -> list[Bar]:
    out = []
    for i in range(n):
        p = price + (i % 7) - 3
        out.append(Bar(symbol, tf, start + i * step, p, p + 1, p - 1, p + 0.5, 10.0 + i % 3))
    return out


@pytest.fixture
def cfg(write_config, tmp_path):
    def make(**retrain: Any) -> config_mod.Config:
        values = {"artifacts_dir": str(tmp_path / "models"), "holdout_hours": 2.0, "train_days": 0.3, **retrain}
        extra = "\n".join(f"{k} = {json.dumps(v)}" for k, v in values.items())
        return config_mod.load(
            write_config(
                f"""
            [store]
            path = "{tmp_path / "state.sqlite"}"
            [exchange]
            timeframes = ["1m", "1h"]
            [models]
            gate_min_trades = 25
            [retrain]
        """
                + extra
            )
        )

    return make


def test_export_writes_only_bars_closed_by_the_cut(cfg, tmp_path: Path) -> None:
    c = cfg()
    store = Store(c.path(c.store.path))
    t0 = 1_754_265_600_000  # 2025-08-04 00:00 UTC
    store.add_bars(_bars("ETH/USDT", "1m", t0, 300, 60_000))
    store.add_bars(_bars("ETH/USDT", "1h", t0, 5, 3_600_000))
    store.add_bars(_bars("BTC/USDT", "1m", t0, 300, 60_000, price=60_000.0))
    cut = t0 + 2 * 3_600_000 + 30_000  # mid-minute: the forming 1m bar and the 2nd hour bar are out
    export_tapes(store.path, c, tmp_path / "tape", end_ms=cut)
    rows = {p.name: list(csv.reader(p.open())) for p in (tmp_path / "tape").iterdir()}
    assert set(rows) == {"ETH_USDT-1m.csv", "ETH_USDT-1h.csv", "BTC_USDT-1m.csv"}
    assert rows["ETH_USDT-1m.csv"][0] == ["timestamp", "open", "high", "low", "close", "volume"]
    assert int(rows["ETH_USDT-1m.csv"][-1][0]) == t0 + 119 * 60_000  # closes exactly at 2h
    assert len(rows["ETH_USDT-1m.csv"]) == 1 + 120 and len(rows["BTC_USDT-1m.csv"]) == 1 + 120
    assert [int(r[0]) for r in rows["ETH_USDT-1h.csv"][1:]] == [t0, t0 + 3_600_000]
    assert float(rows["ETH_USDT-1m.csv"][1][4]) == store.latest_bars("ETH/USDT", "1m", 300)[0].close


def test_install_is_a_rename_and_prune_keeps_current_and_previous(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.sqlite")
    parent = tmp_path / "models" / "m"
    paths = []
    for v in ("v1", "v2", "v3"):
        src = tmp_path / f"src-{v}"
        src.mkdir()
        (src / "artifact.json").write_text(json.dumps({"version": v}))
        dest = install_artifact(src, parent, v)
        assert dest == parent / v and json.loads((dest / "artifact.json").read_text())["version"] == v
        store.record_model("m", v, str(dest), "current", "{}", 0)
        paths.append(dest)
    assert not list(parent.glob(".*.tmp"))
    prune_artifacts(store, parent, "m")
    assert [p.exists() for p in paths] == [False, True, True]  # retired one gone; previous kept for rollback
    assert [r["status"] for r in store.model_rows("m")] == ["current", "previous", "retired"]
    # Installing a version that exists never overwrites the serving directory.
    again = install_artifact(tmp_path / "src-v3", parent, "v3")
    assert again != paths[2] and paths[2].exists()


async def test_a_hung_retrain_is_killed_and_the_current_model_keeps_serving(cfg, tmp_path: Path) -> None:
    c = cfg(timeout_s=0.5)
    store = Store(c.path(c.store.path))
    t0 = 1_754_265_600_000
    store.add_bars(_bars("ETH/USDT", "1m", t0, 600, 60_000))
    current = tmp_path / "shipped" / "m"
    current.mkdir(parents=True)
    (current / "artifact.json").write_text("{}")
    sink, swaps = RecordingSink(), []

    async def swap(name: str, path: Path) -> None:
        swaps.append((name, path))

    # A "python" that never finishes stands in for a training run that hangs.
    hang = tmp_path / "hang.sh"
    hang.write_text("#!/bin/sh\nexec sleep 30\n")
    hang.chmod(0o755)
    r = Retrainer(c, store, sink, swap, lambda: {"m": current}, python=str(hang))
    [outcome] = await asyncio.wait_for(r.run_once(), 10)
    assert outcome.status == "failed" and outcome.reason.startswith("train: out of time")
    assert swaps == [] and store.current_model("m") is None
    assert [t for t, _ in sink.events] == ["error"] and "retrain of m failed" in sink.events[0][1]["message"]
    assert not list((tmp_path / "models" / ".staging").iterdir())  # staging cleaned up


async def test_a_crashing_retrain_alerts_and_changes_nothing(cfg, tmp_path: Path) -> None:
    c = cfg()
    store = Store(c.path(c.store.path))
    store.add_bars(_bars("ETH/USDT", "1m", 1_754_265_600_000, 600, 60_000))
    current = tmp_path / "shipped" / "m"
    current.mkdir(parents=True)
    crash = tmp_path / "crash.sh"
    crash.write_text("#!/bin/sh\necho 'Traceback: boom' >&2\nkill -SEGV $$\n")
    crash.chmod(0o755)
    sink = RecordingSink()

    async def swap(name: str, path: Path) -> None:
        raise AssertionError("a crashed retrain must not swap")

    r = Retrainer(c, store, sink, swap, lambda: {"m": current}, python=str(crash))
    [outcome] = await r.run_once()
    assert outcome.status == "failed" and "exited with -11" in outcome.reason and "boom" in outcome.reason
    assert outcome.reason.startswith("train: job process")
    assert sink.events[0][0] == "error" and store.model_rows("m") == []


async def test_nothing_unseen_means_no_retrain(cfg, tmp_path: Path) -> None:
    c = cfg()
    store = Store(c.path(c.store.path))
    t0 = 1_754_265_600_000
    store.add_bars(_bars("ETH/USDT", "1m", t0, 600, 60_000))
    current = tmp_path / "shipped" / "m"
    current.mkdir(parents=True)
    # The current model trained up to the newest stored bar: no data neither has seen.
    (current / "artifact.json").write_text(json.dumps({"data": {"train_end_ms": t0 + 599 * 60_000}}))
    sink = RecordingSink()

    async def swap(name: str, path: Path) -> None:
        raise AssertionError("no swap expected")

    [outcome] = await Retrainer(c, store, sink, swap, lambda: {"m": current}).run_once()
    assert outcome.status == "failed" and "nothing unseen" in outcome.reason


def _store_from_tape(store: Store, start_ms: int, end_ms: int) -> None:
    """Stored history as the feed would have left it: real 1m bars of both symbols."""
    from models.data import load_series
    from tests.daemon_harness import TAPE

    for symbol in ("ETH/USDT", "BTC/USDT"):
        arr = load_series([TAPE], symbol, "1m", start_ms=start_ms, end_ms=end_ms)
        store.add_bars(Bar(symbol, "1m", int(r[0]), *map(float, r[1:])) for r in arr)


async def test_a_better_model_is_promoted_and_a_worse_one_is_not(cfg, tmp_path: Path, tiny_artifacts: dict[str, Path]) -> None:
    import shutil
    import sys

    from daemon.domain import Side
    from tests.conftest import REPO
    from tests.daemon_harness import make_constant

    c = cfg(preset="tiny", epochs=1, max_batches=3, holdout_hours=6.0, train_days=7.0)
    store = Store(c.path(c.store.path))
    _store_from_tape(store, 1_754_265_600_000, 1_754_956_800_000)  # 2025-08-04 .. 2025-08-12
    # The holdout is the newest 6 hours; the side that lost money over them is the wrong one.
    newest = store.latest_bars("ETH/USDT", "1m", 1)[0]
    first = next(store.iter_bars("ETH/USDT", "1m", newest.ts - 6 * 3_600_000))
    wrong = Side.SHORT if newest.close > first.close else Side.LONG
    # Serving now: a model that always holds the wrong side over the holdout.
    serving = tmp_path / "serving"
    shutil.copytree(tiny_artifacts["cnn_lstm_attn"], serving)
    make_constant(serving, wrong)
    dirs = {"cnn_lstm_attn": serving}
    sink, swaps = RecordingSink(), []

    async def swap(name: str, path: Path) -> None:
        swaps.append((name, path))
        dirs[name] = path

    def shaped(shape: str) -> str:
        # The real training run, then the new model is shaped ("flat" never trades).
        script = tmp_path / f"shaped-{shape}.sh"
        script.write_text(
            f'#!/bin/sh\nshift 2\ncd {REPO}\nexport SIGD_TEST_SHAPE={shape}\nexec {sys.executable} -m tests.shaped_worker "$@"\n'
        )
        script.chmod(0o755)
        return str(script)

    [o] = await Retrainer(c, store, sink, swap, lambda: dict(dirs), python=shaped("flat")).run_once()
    assert o.status == "promoted", o
    assert o.new_score == 0.0 and o.current_score is not None and o.current_score < 0
    promoted = Path(o.path)
    # the gate's verdict on the holdout travels with it: a never-trading model fails it (shadow mode)
    assert json.loads((promoted / "artifact.json").read_text())["validation"]["why"].startswith(
        "0 trades < 25"
    )  # [models] gate_min_trades
    assert swaps == [("cnn_lstm_attn", promoted)] and promoted.parent == tmp_path / "models" / "cnn_lstm_attn"
    assert json.loads((promoted / "artifact.json").read_text())["version"] == o.version
    row = store.current_model("cnn_lstm_attn")
    assert row is not None and row["path"] == promoted.as_uri() and json.loads(row["metrics"])["new"]["score"] == 0.0
    assert serving.exists()  # the previous artifact stays for rollback
    assert sink.events[-1][0] == "retrain" and sink.events[-1][1]["status"] == "promoted"

    # Next night the training produces a model on the wrong side: scored, recorded, not served.
    [w] = await Retrainer(c, store, sink, swap, lambda: dict(dirs), python=shaped(wrong.name.lower())).run_once()
    assert w.status == "rejected" and w.new_score is not None and w.new_score < 0 == w.current_score, w
    assert swaps == [("cnn_lstm_attn", promoted)] and store.current_model("cnn_lstm_attn")["path"] == promoted.as_uri()
    assert [r["status"] for r in store.model_rows("cnn_lstm_attn")] == ["rejected", "current"]
    assert sink.events[-1][1]["status"] == "rejected" and promoted.exists()


async def test_the_job_is_scheduled_from_the_cron_in_utc(cfg, tmp_path: Path) -> None:
    from datetime import datetime

    from apscheduler.schedulers.asyncio import AsyncIOScheduler

    c = cfg(cron="15 3 * * 1-5")
    store = Store(c.path(c.store.path))

    async def swap(name: str, path: Path) -> None:
        raise AssertionError("not run")

    scheduler = AsyncIOScheduler(timezone=UTC)
    Retrainer(c, store, RecordingSink(), swap, dict).schedule(scheduler)
    scheduler.start(paused=True)
    try:
        job = scheduler.get_job("retrain")
        after = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)  # a Saturday
        assert job.trigger.get_next_fire_time(None, after) == datetime(2026, 11, 23, 3, 15, tzinfo=UTC)
        assert job.max_instances == 1 and job.coalesce
    finally:
        scheduler.shutdown(wait=False)


def test_crontab_weekday_numbers_mean_what_crontab_means() -> None:
    from datetime import datetime

    from daemon.retrain.nightly import cron_trigger

    sat = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
    nxt = lambda expr: cron_trigger(expr).get_next_fire_time(None, sat)  # noqa: E731
    assert nxt("0 1 * * 0") == nxt("0 1 * * 7") == datetime(2026, 11, 22, 1, 0, tzinfo=UTC)  # Sunday
    assert nxt("0 1 * * 1,3") == datetime(2026, 11, 23, 1, 0, tzinfo=UTC)  # Monday
    assert nxt("0 1 */2 * *").day == 23 and nxt("30 2 * * *") == datetime(2026, 11, 22, 2, 30, tzinfo=UTC)
    with pytest.raises(ValueError):
        cron_trigger("0 1 * *")


def test_registry_rows_with_machine_paths_become_uris(cfg, tmp_path: Path) -> None:
    from daemon.service.parts import model_dirs

    c = cfg()
    store = Store(c.path(c.store.path))
    art = tmp_path / "models" / "mtf_transformer" / "v1"
    art.mkdir(parents=True)
    store.record_model("mtf_transformer", "v1", str(art), "current", "{}", 0)  # a row from before URIs
    store.record_model("mtf_transformer", "v2", "", "rejected", "{}", 0)

    async def swap(name: str, path: Path) -> None:
        raise AssertionError("not run")

    Retrainer(c, store, RecordingSink(), swap, dict)
    assert [r["path"] for r in store.model_rows("mtf_transformer")] == ["", art.as_uri()]
    assert model_dirs(c, store)["mtf_transformer"] == art  # the daemon serves it from its URI


async def test_a_runner_that_cannot_start_fails_the_retrain_not_the_daemon(cfg, tmp_path: Path) -> None:
    c = cfg()
    store = Store(c.path(c.store.path))
    store.add_bars(_bars("ETH/USDT", "1m", 1_754_265_600_000, 600, 60_000))
    current = tmp_path / "shipped" / "m"
    current.mkdir(parents=True)

    class NoCluster:
        name = "ray"

        def run(self, jobs: Any, **kw: Any) -> Any:
            raise RuntimeError("cannot reach ray://nowhere:10001")

        def cancel(self) -> None:
            pass

    async def swap(name: str, path: Path) -> None:
        raise AssertionError("no swap expected")

    sink = RecordingSink()
    [o] = await Retrainer(c, store, sink, swap, lambda: {"m": current}, runner=NoCluster()).run_once()
    assert o.status == "failed" and o.reason == "train: runner: cannot reach ray://nowhere:10001"
    assert sink.events[-1][0] == "error" and store.model_rows("m") == []

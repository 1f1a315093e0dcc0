"""The trial registry (MLflow on a temporary SQLite file): N counts every run on a data set."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from daemon.research.registry import Registry, dataset_id, trials_count

REPO = Path(__file__).resolve().parents[2]


def _files(tmp_path: Path) -> list[Path]:
    out = []
    for name, body in (("BTC_USDT-1h.csv.gz", b"abc"), ("ETH_USDT-1h.csv.gz", b"defg")):
        p = tmp_path / name
        p.write_bytes(body)
        out.append(p)
    return out


def test_dataset_id_is_what_the_data_is(tmp_path: Path) -> None:
    files = _files(tmp_path)
    kw = {"timeframe": "1h", "symbols": ["BTC/USDT", "ETH/USDT"], "start_ms": 0, "end_ms": 10}
    a = dataset_id(files, **kw)
    assert a == dataset_id(list(reversed(files)), **kw)  # order-free
    assert a != dataset_id(files, **{**kw, "end_ms": 11})
    files[0].write_bytes(b"abcd")  # a file grew: another data set
    assert a != dataset_id(files, **kw)


def test_two_runs_on_one_data_set_both_count(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    first = Registry(uri)
    for k in (1, 2, 3):
        first.record_trial("ds1", {"family": "ridge", "alpha": k}, {"sharpe": 0.1 * k}, group="run-a")
    first.record_trial("other", {"family": "ridge", "alpha": 1}, {"sharpe": 0.0}, group="run-a")
    # the second run: another process, a day later as far as the store knows
    code = (
        f"from daemon.research.registry import Registry; r = Registry({uri!r});"
        "[r.record_trial('ds1', {'family': 'lgbm', 'leaves': k}, {'sharpe': 0.2}, group='run-b') for k in (8, 16)];"
        "r.record_trial('ds1', {'family': 'ridge', 'alpha': 2}, {'sharpe': 0.25}, group='run-b')"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, env={"PYTHONPATH": str(REPO), "HOME": str(tmp_path)})
    assert trials_count("ds1", uri) == 5  # 3 + 2 new; ridge alpha=2 again is the same configuration
    assert trials_count("other", uri) == 1
    trials = Registry(uri).trials("ds1")
    assert len(trials) == 6 and {t.group for t in trials} == {"run-a", "run-b"}
    assert trials[0].metrics["sharpe"] == pytest.approx(0.1)
    assert trials_count("never-seen", uri) == 0

"""The daemon's run path stays lean: no pandas or matplotlib in `sigd run` (~100 MB of RSS
each, counted against the unit's MemoryMax=)."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO

# Everything `sigd run` imports on the shipped config, then the local exchange reading its tape.
PROBE = """
import sys
import daemon.commands.run, daemon.service.app, daemon.service.parts, daemon.service.check, daemon.store, pipeline.predictor
from daemon.localexchange.server import LocalExchange
LocalExchange(None)
print(sorted(m for m in ("pandas", "matplotlib") if m in sys.modules))
"""


def test_run_path_imports_neither_pandas_nor_matplotlib() -> None:
    res = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.strip().splitlines()[-1] == "[]"


def test_store_works_with_pandas_hidden_from_sqlite_utils(tmp_path) -> None:
    probe = f"""
import sys, numpy as np
from daemon.domain import Bar
from daemon.store import Store
store = Store({str(tmp_path / "s.sqlite")!r})
store.add_bars([Bar("ETH/USDT", "1m", 60_000, np.float64(1.0), np.float64(2.0), 0.5, 1.5, 3.0)])
print([b.high for b in store.latest_bars("ETH/USDT", "1m", 5)], "pandas" in sys.modules)
store.close()
"""
    res = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.split() == ["[2.0]", "False"]

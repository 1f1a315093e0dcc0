"""`sigd walk-forward` checks that a fold's training window gives every served family samples in
each split before anything trains (it used to train one family for minutes, then fail with
"no validation samples"); the count it predicts is the count training gets."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from tests.conftest import REPO

TAPE = REPO / "daemon" / "localexchange" / "tape_2021"


def test_a_one_day_fold_is_refused_at_once_naming_folds_and_the_days_needed() -> None:
    started = time.monotonic()
    res = subprocess.run(
        [sys.executable, "-m", "daemon", "walk-forward", "--data", str(TAPE), "--folds", "1:1"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert res.returncode == 1, res.stderr[-2000:]
    (line,) = [line for line in res.stderr.splitlines() if line.startswith("sigd walk-forward:")]
    assert line.startswith("sigd walk-forward: --folds 1:1: a 1-day training window gives cnn_lstm_attn ")
    assert "0 validation" in line and line.endswith("train on at least 2 days, e.g. --folds 2:1")
    assert "fold_trained" not in res.stderr and "Traceback" not in res.stderr
    assert time.monotonic() - started < 60  # nothing was trained


@pytest.mark.parametrize("name", ["cnn_lstm_attn", "mtf_transformer"])
def test_predicted_split_sizes_are_what_training_builds(name: str) -> None:
    from daemon.research.walkforward import DAY_MS, fold_samples
    from models import registry
    from models.artifacts import read_meta
    from models.targets import TargetSpec
    from pipeline.train import build_sampleset

    fam = registry.family(name)
    target = TargetSpec.from_dict(read_meta(REPO / "models" / "artifacts" / name)["target"])
    io = fam.make_io(target.mode)
    seq_len = fam.make_config(dict(io.config_overrides_base()), "small").seq_len
    start = 1_621_209_600_000  # 2021-05-17, where the bundled 2021 tape (3.9 days of 1m bars) begins
    for days in (1, 2):
        window = io.feature_spec(seq_len, days * 1440, ("1m",), lambda _m: None).required_windows["1m"]
        predicted = fold_samples(days * 1440, window, target.span)
        try:
            ss, _ = build_sampleset(io, seq_len, [TAPE], ["ETH/USDT"], start, start + days * DAY_MS, target, lambda _m: None)
        except ValueError:  # too few samples in all: the check refuses these days too
            assert sum(predicted) < 10
            continue
        assert tuple(int(((ss.split == k) & (ss.symbol_id == 0)).sum()) for k in range(3)) == predicted, days

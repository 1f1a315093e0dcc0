"""The shipped config's nightly retrain is either off or able to succeed on the tape it replays.

A retrain trains on `train_days` of stored history before a `holdout_hours` holdout, and the
holdout must be newer than what the current models trained on (daemon/retrain/nightly.py).
On the bundled local exchange the stored history is the tape: a retrain that is enabled must
fit in it, after the shipped models' training end.
"""

from __future__ import annotations

import csv
import gzip
from pathlib import Path

from daemon import config
from daemon.retrain.nightly import _trained_until


def _span_ms(tape: Path, symbol: str, timeframe: str) -> tuple[int, int]:
    """(first, last) bar open time of one tape file."""
    with gzip.open(tape / f"{symbol.replace('/', '_')}-{timeframe}.csv.gz", "rt") as f:
        rows = [int(r[0]) for r in csv.reader(f) if r and r[0].isdigit()]
    return rows[0], rows[-1]


def test_shipped_retrain_is_off_or_fits_its_tape() -> None:
    cfg = config.load(config.DEFAULT_CONFIG)
    if not cfg.retrain.enabled:
        return  # off on purpose: config.toml says why
    assert cfg.exchange.endpoint == "local" and not cfg.local_exchange.url, "only the bundled demo is checked here"
    tape = cfg.path(cfg.local_exchange.tape)
    needed_ms = int((cfg.retrain.train_days * 24 + cfg.retrain.holdout_hours) * 3_600_000)
    for symbol in cfg.exchange.symbols:
        first, last = _span_ms(tape, symbol, "1m")
        assert last - first >= needed_ms, (
            f"{symbol}: the tape holds {(last - first) / 86_400_000:.1f} days of 1m bars; the retrain needs "
            f"{needed_ms / 86_400_000:.1f} (retrain.train_days + retrain.holdout_hours)"
        )
        for name, path in cfg.models.paths.items():
            trained_until = _trained_until(cfg.path(path))
            assert last - trained_until >= 3_600_000, (
                f"{name} trained until {trained_until}, after the tape's end {last}: nothing unseen to compare on"
            )

"""Batched inference for backtests: every trigger bar's prediction computed up front.

A backtest knows all its bars in advance, so it can build, for each trigger bar, exactly the
windows the engine would copy out of its ring buffers at that bar (same streams, same
capacity, same delivery order at equal close instants) and run them through
`Predictor.predict_batch` many at a time. `PrecomputedPredictor` then answers the engine
from that table; everything after the predictions (strategies, risk, broker, store) runs
unchanged in the engine. tests/test_backtest_engine.py holds that the table equals
bar-by-bar inference on the engine's own windows.
"""

from __future__ import annotations

import multiprocessing
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from daemon.domain import Prediction, PredictorLike, Side, class_scores, timeframe_ms
from daemon.research.replay import Stream, Tape
from daemon.trading.inference import fragile  # the live cycles use the same rule

CHUNK = 1024  # trigger bars per predict_batch call (windows of one chunk are held in memory)


def window_key(stream: Stream, primary: str) -> str:
    """The window-convention key of a stream: "1m" for the primary symbol, "btc_1m" for BTC."""
    symbol, timeframe = stream
    return timeframe if symbol == primary else f"{symbol.split('/')[0].lower()}_{timeframe}"


class WindowIndex:
    """Windows at trigger bars as the engine sees them, computed from the tape arrays."""

    def __init__(self, tape: Tape, order: Sequence[Stream], trigger: Stream, capacity: int) -> None:
        self.capacity = capacity
        self.trigger_step = timeframe_ms(trigger[1])
        rank_of = {s: i for i, s in enumerate(order)}
        self.streams: dict[str, tuple[np.ndarray, np.ndarray, str]] = {}
        for stream in order:
            rows = tape.streams.get(stream, np.zeros((0, 6)))
            close = rows[:, 0].astype(np.int64) + timeframe_ms(stream[1])
            # a bar closing at the trigger's instant was delivered before it when its stream comes first
            side = "right" if rank_of[stream] <= rank_of[trigger] else "left"
            self.streams[window_key(stream, trigger[0])] = (rows, close, side)

    def windows(self, bar_ts: int, required: Mapping[str, int]) -> dict[str, np.ndarray]:
        """{key: rows [k, 6]} for the trigger bar opening at bar_ts (keys of unbuffered streams absent)."""
        t_close = bar_ts + self.trigger_step
        out: dict[str, np.ndarray] = {}
        for key, n in required.items():
            if key not in self.streams:
                continue
            rows, close, side = self.streams[key]
            end = int(np.searchsorted(close, t_close, side=side))
            out[key] = rows[max(0, end - min(int(n), self.capacity)) : end]
        return out


def _chunk(predictor: Any, windows: list[dict[str, np.ndarray]], ts: list[int]) -> list[Prediction | Exception]:
    """One chunk through predict_batch; bar by bar when a bar fails or a side is fragile."""
    try:
        preds: list[Prediction | Exception] = list(predictor.predict_batch(windows, ts))
    except ValueError:
        preds = [ValueError("recompute")] * len(ts)
    for i, p in enumerate(preds):
        if isinstance(p, Exception) or fragile(p):
            try:
                preds[i] = predictor.predict(windows[i], ts[i])
            except ValueError as exc:
                preds[i] = exc
    return preds


def precompute(
    predictor: Any, index: WindowIndex, bar_ts: Sequence[int], progress: Callable[[int], None] = lambda n: None
) -> dict[int, Prediction | Exception]:
    """Prediction (or the error predict would raise) for every trigger bar, in chunks.

    A chunk in which some bar cannot be predicted (short window, gap) is redone bar by bar,
    so such a bar gets exactly the exception the live engine would log and skip.
    """
    table: dict[int, Prediction | Exception] = {}
    req = predictor.required_windows
    for i in range(0, len(bar_ts), CHUNK):
        chunk = [int(t) for t in bar_ts[i : i + CHUNK]]
        table.update(zip(chunk, _chunk(predictor, [index.windows(t, req) for t in chunk], chunk)))
        progress(len(chunk))
    return table


def default_workers() -> int:
    """Processes for batched inference: the cores this process may run on (at most 4)."""
    import os

    return max(1, min(4, len(os.sched_getaffinity(0))))


def precompute_parallel(
    predictor: Any,
    index: WindowIndex,
    bar_ts: Sequence[int],
    workers: int,
    chunk: int = CHUNK,
    progress: Callable[[int], None] = lambda n: None,
) -> dict[int, Prediction | Exception]:
    """`precompute` split over forked worker processes (one torch thread each).

    Fork, not spawn: the children inherit the loaded model and the tape arrays, nothing is
    serialized; they write their numbers into a shared memory-mapped array [n, 7]
    (p_short, p_flat, p_long, side, confidence, inference_ms, state: 0 pending, 1 done,
    2 not predictable) that the parent watches for progress and turns back into Predictions.
    A bar a child could not predict is asked again here, bar by bar, so it gets exactly the
    exception bar-by-bar inference raises.
    """
    ts = [int(t) for t in bar_ts]
    if workers <= 1 or len(ts) < 2 * chunk:
        return precompute(predictor, index, ts, progress)
    with tempfile.TemporaryDirectory(prefix="sigd-batch-") as tmp:
        path = Path(tmp) / "predictions.npy"
        np.lib.format.open_memmap(path, mode="w+", dtype=np.float64, shape=(len(ts), 7)).flush()
        ctx = multiprocessing.get_context("fork")
        procs = [
            ctx.Process(target=_worker, args=(predictor, index, ts, w, workers, chunk, path), daemon=True) for w in range(workers)
        ]
        for p in procs:
            p.start()
        _watch(procs, np.load(path, mmap_mode="r"), progress)
        failed = [p.exitcode for p in procs if p.exitcode != 0]
        if failed:
            raise RuntimeError(f"batched inference: {len(failed)} worker(s) failed (exit codes {failed})")
        out = np.load(path)
    table: dict[int, Prediction | Exception] = {}
    for t, row in zip(ts, out):
        if row[6] == 1.0:
            probs = (float(row[0]), float(row[1]), float(row[2]))
            table[t] = Prediction(
                predictor.name,
                predictor.version,
                t,
                class_scores(probs),
                Side(int(row[3])),
                float(row[4]),
                predictor.threshold,
                float(row[5]),
                predictor.hold_bars,
            )
        else:
            try:
                table[t] = predictor.predict(index.windows(t, predictor.required_windows), t)
            except ValueError as exc:
                table[t] = exc
    return table


def _worker(predictor: Any, index: WindowIndex, ts: list[int], w: int, workers: int, chunk: int, path: Path) -> None:
    import torch

    torch.set_num_threads(1)  # one core per worker; OpenMP state is not carried across fork
    out = np.load(path, mmap_mode="r+")
    req = predictor.required_windows
    for start in range(w * chunk, len(ts), workers * chunk):
        part = ts[start : start + chunk]
        for i, p in enumerate(_chunk(predictor, [index.windows(t, req) for t in part], part)):
            if isinstance(p, Prediction):
                out[start + i] = (*p.probs, int(p.side), p.confidence, p.inference_ms, 1.0)
            else:
                out[start + i, 6] = 2.0
    out.flush()


def _watch(procs: list[Any], out: np.ndarray, progress: Callable[[int], None]) -> None:
    """Wait for the workers, reporting finished rows to `progress` as they come."""
    seen = 0
    while any(p.is_alive() for p in procs):
        for p in procs:
            p.join(timeout=0.5)
        done = int(np.count_nonzero(out[:, 6]))
        progress(done - seen)
        seen = done


class PrecomputedPredictor:
    """PredictorLike that answers from a precomputed table; bars outside it go to the real model."""

    def __init__(self, source: PredictorLike, table: Mapping[int, Prediction | Exception]) -> None:
        self.source, self.table = source, table
        self.name, self.version = source.name, source.version
        self.threshold, self.required_windows = source.threshold, source.required_windows

    def predict(self, windows: Mapping[str, Any], bar_ts: int) -> Prediction:
        """The table's prediction for bar_ts (raising the error bar-by-bar inference raised)."""
        return self._answer(self.table, windows, bar_ts)

    def _answer(self, table: Mapping[int, Prediction | Exception], windows: Mapping[str, Any], bar_ts: int) -> Prediction:
        found = table.get(int(bar_ts))
        if found is None:
            return self.source.predict(windows, bar_ts)
        if isinstance(found, Exception):
            raise found
        return found


class PortfolioPredictor(PrecomputedPredictor):
    """A precomputed table per traded symbol; the engine asks `predict_for(symbol, ...)`."""

    def __init__(self, source: PredictorLike, tables: Mapping[str, Mapping[int, Prediction | Exception]]) -> None:
        super().__init__(source, {})
        self.tables = tables

    def predict_for(self, symbol: str, windows: Mapping[str, Any], bar_ts: int) -> Prediction:
        """The symbol's table's prediction for bar_ts (bars outside it go to the real model)."""
        return self._answer(self.tables.get(symbol, {}), windows, bar_ts)

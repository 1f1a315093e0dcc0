"""Inference for a decision cycle: every model runs once over all the cycle's symbols.

An executor per device runs the models that live on it, so inference never blocks the event
loop and two devices work at the same time: a GPU gets one thread that runs its models one
after the other (one stream); on the CPU each model is a lane of its own, run side by side on
up to as many threads as the process has cores (each model's torch work uses `models.threads`),
and a large cycle is cut into one part per free core (`cpu_parts`), so that one model's batch
does not leave the other cores idle. A model with `predict_batch` (pipeline/predictor.py) gets
its cycle (or part) in one forward pass, its features encoded in one vectorized pass;
if the batch raises (one symbol's windows are short, say), the symbols are asked one by one so
that only the bad one is left out. `prewarm` runs the same forward pass on the current windows and
throws the answer away: memory that sat idle for a minute is slow to touch again, and the
next close is predictable.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import sys
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from daemon import log as logging
from daemon.domain import Prediction, PredictorLike
from daemon.metrics import REGISTRY

log = logging.get("inference")
PREDICTOR_ERRORS = REGISTRY.counter("sigd_predictor_errors_total", "Predictors that raised, by model")
INFERENCE_MS = REGISTRY.histogram("sigd_inference_ms", "Inference time per model and bar, ms")
BATCH_MS = REGISTRY.histogram("sigd_inference_batch_ms", "One model's forward pass over a whole cycle, ms")
BATCH_SIZE = REGISTRY.histogram(
    "sigd_inference_batch_size", "Symbols in one model's forward pass", (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)
)
PREWARM_MS = REGISTRY.histogram("sigd_prewarm_ms", "Throwaway forward pass before an expected close, ms")
Windows = Mapping[str, np.ndarray]


def device_of(predictor: PredictorLike) -> str:
    """The device a model runs on ("cpu" for models that do not say)."""
    return str(getattr(predictor, "device", "cpu"))


def own_windows(predictor: PredictorLike, windows: Windows) -> dict[str, np.ndarray]:
    """The predictor's own window keys, cut to the rows it needs."""
    return {k: windows[k][-n:] for k, n in predictor.required_windows.items() if k in windows}


def predict_one_by_one(
    name: str, predictor: PredictorLike, windows: Sequence[Windows], bar_ts: Sequence[int], symbols: Sequence[str] | None = None
) -> list[Prediction | None]:
    """predict() per symbol; one that raises is None (logged, counted).

    A predictor with `predict_for(symbol, windows, bar_ts)` (a backtest's precomputed table,
    daemon/research/batch.py) is asked that way when the symbols are given.
    """
    ask_for = getattr(predictor, "predict_for", None) if symbols is not None else None
    out: list[Prediction | None] = []
    for i, (w, ts) in enumerate(zip(windows, bar_ts)):
        start = time.perf_counter()
        try:
            mine = own_windows(predictor, w)
            prediction = ask_for(symbols[i], mine, ts) if ask_for else predictor.predict(mine, ts)  # type: ignore[index]
        except Exception as exc:
            PREDICTOR_ERRORS.inc(model=name)
            log.error("predictor_failed", model=name, bar_ts=ts, error=repr(exc))
            out.append(None)
            continue
        elapsed = (time.perf_counter() - start) * 1000.0
        INFERENCE_MS.observe(elapsed, model=name)
        out.append(prediction if prediction.inference_ms else _with_ms(prediction, elapsed))
    return out


def _with_ms(prediction: Prediction, ms: float) -> Prediction:
    return dataclasses.replace(prediction, inference_ms=ms)


# A batched forward pass may differ from a batch of one in the last float32 bits (~1e-7):
# predictions this close to a decision boundary are recomputed one by one, so every side (and
# so every signal) is what one-by-one inference gives, whatever else shares the batch (a late
# symbol decided alone live, a backtest's batch of a thousand bars).
MARGIN = 1e-5


def fragile(p: Prediction) -> bool:
    """True when float32 noise could change the side: near the threshold or a near tie of classes."""
    top = sorted(p.probs, reverse=True)
    return abs(p.confidence - p.threshold) < MARGIN or top[0] - top[1] < MARGIN


def predict_many(
    name: str, predictor: PredictorLike, windows: Sequence[Windows], bar_ts: Sequence[int], symbols: Sequence[str] | None = None
) -> list[Prediction | None]:
    """One model over a cycle: one batched forward pass when the model has one."""
    if symbols is not None and hasattr(predictor, "predict_for"):
        return predict_one_by_one(name, predictor, windows, bar_ts, symbols)
    batch = getattr(predictor, "predict_batch", None)
    if batch is None or len(windows) == 1:
        return predict_one_by_one(name, predictor, windows, bar_ts)
    start = time.perf_counter()
    try:
        answers: list[Prediction | None] = list(batch([own_windows(predictor, w) for w in windows], list(bar_ts)))
    except Exception as exc:  # e.g. one symbol's window is short: find it, keep the others
        log.warning("batch_failed_one_by_one", model=name, size=len(windows), error=repr(exc))
        return predict_one_by_one(name, predictor, windows, bar_ts)
    elapsed = (time.perf_counter() - start) * 1000.0
    BATCH_MS.observe(elapsed, model=name)
    BATCH_SIZE.observe(float(len(windows)), model=name)
    for i, answer in enumerate(answers):
        INFERENCE_MS.observe(elapsed / len(answers), model=name)
        if answer is not None and fragile(answer):
            answers[i] = predict_one_by_one(name, predictor, [windows[i]], [bar_ts[i]])[0]
    return answers


def run_models(
    models: Sequence[tuple[str, PredictorLike]],
    windows: Sequence[Windows],
    bar_ts: Sequence[int],
    symbols: Sequence[str] | None = None,
) -> dict[str, list[Prediction | None]]:
    """Every model of one lane over the cycle (runs on that device's thread)."""
    return {name: predict_many(name, p, windows, bar_ts, symbols) for name, p in models}


def lanes(predictors: Mapping[str, PredictorLike]) -> list[tuple[str, list[tuple[str, PredictorLike]]]]:
    """(device, models run one after the other): a lane per CPU model, a lane per GPU."""
    out: dict[str, list[tuple[str, PredictorLike]]] = {}
    for name, p in predictors.items():
        device = device_of(p)
        key = f"{device}/{name}" if device == "cpu" else device
        out.setdefault(key, []).append((name, p))
    return [(key.split("/")[0], models) for key, models in out.items()]


def cpu_threads() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


# A CPU model's cycle is cut into parts of at least this many symbols, one part per free core:
# a part's forward pass has a fixed cost (~1 ms for the small transformer) that a smaller part
# would not win back.
MIN_PART = 8


def model_threads() -> int:
    """The CPU threads one forward pass uses (torch's, set from `models.threads`; 1 without torch)."""
    torch = sys.modules.get("torch")
    return max(1, int(torch.get_num_threads())) if torch is not None else 1


def cpu_parts(n: int) -> list[slice]:
    """How one CPU model's cycle of n symbols is cut: as many contiguous parts as the cores can
    run side by side (each forward pass uses `models.threads` of them), none under MIN_PART."""
    k = max(1, min(cpu_threads() // model_threads(), n // MIN_PART))
    bounds = [round(i * n / k) for i in range(k + 1)]
    return [slice(a, b) for a, b in zip(bounds, bounds[1:])]


def newest_ts(windows: Windows) -> int | None:
    """Open time of the newest 1m bar in a window set (what prewarm predicts at)."""
    w = windows.get("1m")
    return int(w[-1, 0]) if w is not None and len(w) else None


class Inference:
    """The per-device inference threads; `predict` for cycles, `prewarm` before closes."""

    def __init__(self) -> None:
        self._executors: dict[str, ThreadPoolExecutor] = {}

    def _executor(self, device: str) -> ThreadPoolExecutor:
        if device not in self._executors:
            workers = cpu_threads() if device == "cpu" else 1
            self._executors[device] = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"sigd-infer-{device}")
        return self._executors[device]

    def _work(
        self, predictors: Mapping[str, PredictorLike], n: int, symbols: Sequence[str] | None
    ) -> list[tuple[str, list[tuple[str, PredictorLike]], slice, Sequence[str] | None]]:
        """(device, models, part of the cycle, its symbols): what each inference thread gets."""
        out = []
        for dev, models in lanes(predictors):
            split = dev == "cpu" and not any(hasattr(p, "predict_for") for _, p in models)  # not a backtest's table
            for part in cpu_parts(n) if split else [slice(0, n)]:
                out.append((dev, models, part, None if symbols is None else symbols[part]))
        return out

    async def predict(
        self,
        predictors: Mapping[str, PredictorLike],
        windows: Sequence[Windows],
        bar_ts: Sequence[int],
        symbols: Sequence[str] | None = None,
    ) -> list[list[Prediction]]:
        """Per symbol (in the order given), the predictions of every model that answered.

        A CPU model's cycle runs in parts side by side (`cpu_parts`): one model's batch then uses
        every core, not one, while the other models' parts queue for the same threads."""
        loop = asyncio.get_running_loop()
        tasks = [
            (part, loop.run_in_executor(self._executor(dev), run_models, models, windows[part], bar_ts[part], syms))
            for dev, models, part, syms in self._work(predictors, len(windows), symbols)
        ]
        results = await asyncio.gather(*(f for _, f in tasks))
        merged: dict[str, list[Prediction | None]] = {}
        for (part, _), r in zip(tasks, results):
            for name, answers in r.items():
                merged.setdefault(name, [None] * len(windows))[part] = answers
        return [
            [merged[name][i] for name in predictors if merged[name][i] is not None]  # type: ignore[misc]
            for i in range(len(windows))
        ]

    async def prewarm(self, predictors: Mapping[str, PredictorLike], windows: Sequence[Windows]) -> float:
        """One throwaway forward pass per model on these windows; its wall ms (never stored)."""
        usable = [(w, ts) for w in windows if (ts := newest_ts(w)) is not None]
        if not usable or not predictors:
            return 0.0
        start = time.perf_counter()
        loop = asyncio.get_running_loop()
        ws, ts = [w for w, _ in usable], [t for _, t in usable]
        # The very parts, threads and code paths the cycle will take (one symbol: predict(), not a batch of one).
        await asyncio.gather(
            *(
                loop.run_in_executor(self._executor(dev), _quiet, models, ws[part], ts[part])
                for dev, models, part, _ in self._work(predictors, len(ws), None)
            )
        )
        elapsed = (time.perf_counter() - start) * 1000.0
        PREWARM_MS.observe(elapsed)
        return elapsed

    def close(self) -> None:
        """Stop the inference threads (after the running pass)."""
        for executor in self._executors.values():
            executor.shutdown(wait=True)
        self._executors.clear()


def _quiet(models: Sequence[tuple[str, PredictorLike]], windows: Sequence[Windows], bar_ts: Sequence[int]) -> Any:
    """A forward pass whose answers and errors do not count anywhere (prewarm)."""
    for _, p in models:
        batch = getattr(p, "predict_batch", None)
        try:
            if batch is not None and len(windows) > 1:  # the path predict_many takes
                batch([own_windows(p, w) for w in windows], list(bar_ts))
            else:
                for w, ts in zip(windows, bar_ts):
                    p.predict(own_windows(p, w), ts)
        except Exception as exc:
            log.debug("prewarm_failed", model=getattr(p, "name", "?"), error=repr(exc))
    return None

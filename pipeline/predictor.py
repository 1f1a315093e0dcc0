"""A loaded artifact the daemon and the backtest ask: windows in, a Prediction out.

`Predictor.load(dir, device="auto")` rebuilds the model from the artifact (GPU when there is
one), puts it in eval mode and answers under `torch.inference_mode()`. Features come from the
windows through `models.features.encode_windows`, the very code the training used, with the
artifact's scalers; only the timeframes the model was trained with are given to it (others,
e.g. 1s derived live, stay masked as in training). The side comes from
`strategies.threshold.decide` with the artifact's threshold. `predict_batch` encodes each
window set the same way and runs them through the model together: same predictions.
The model's family (models/registry.py) turns windows into inputs and outputs into named
scores; every Prediction carries them all (class probabilities and any extra head).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

import strategies.threshold as thr
from daemon.domain import Prediction, Side
from models import registry
from models.artifacts import hold_bars, load_artifact
from models.features import ClipStats, encode_windows, encode_windows_batch
from models.fit import pick_device
from models.io import WindowIO, decision_scores


def set_inference_threads(n: int) -> None:
    """Torch's CPU threads for this process (the daemon's inference thread uses them)."""
    torch.set_num_threads(n)


CHUNK = 256  # samples per forward pass in predict_batch


class InsufficientWindows(ValueError):
    """The windows cannot feed the model (too short, a gap, or every timeframe missing)."""


class Predictor:
    """Implements daemon.domain.PredictorLike for one artifact."""

    def __init__(self, model: torch.nn.Module, meta: dict[str, Any], spec: Any, device: torch.device) -> None:
        self.model, self.meta, self.spec, self.device = model, meta, spec, device
        self.name: str = meta["model"]["name"]
        self.version: str = meta["version"]
        self.mode: str = str(meta["threshold"].get("mode", "classification"))
        self.threshold: float = float(meta["threshold"]["value"])
        self.hold_bars: int = hold_bars(meta)  # the holding period the threshold was optimized with
        self.required_windows: dict[str, int] = spec.required_windows
        self.io: WindowIO = registry.family(self.name).make_io(self.mode, spec.trigger)
        self.clip_stats = ClipStats()  # share of inputs clipped at +-CLIP since load, per input key

    @classmethod
    def load(cls, art_dir: Path | str, device: str = "auto") -> Predictor:
        """Load an artifact directory onto `device` ('auto' = GPU when available)."""
        dev = pick_device(device)
        model, meta, spec = load_artifact(art_dir, dev)
        return cls(model, meta, spec, dev)

    def _check_newest(self, windows: Mapping[str, Any], bar_ts: int) -> Any:
        """The trigger window (1m, or 1h/4h/1d for a model trained on hourly bars), which must end at `bar_ts`."""
        trigger = self.spec.trigger
        prim = windows.get(trigger)
        if prim is not None and len(prim) and int(prim[-1][0]) != int(bar_ts):
            raise InsufficientWindows(f"{self.name}: newest {trigger} bar opens at {int(prim[-1][0])}, not at bar_ts {bar_ts}")
        return prim

    def _encode(self, windows: Mapping[str, Any], bar_ts: int) -> dict[str, np.ndarray | None]:
        prim = self._check_newest(windows, bar_ts)
        return self._usable(encode_windows(windows, self.spec, self.clip_stats), prim)

    def _usable(self, enc: dict[str, np.ndarray | None], prim: Any) -> dict[str, np.ndarray | None]:
        trigger = self.spec.trigger
        if enc[trigger] is None or all(v is None for v in enc.values()):
            need = self.required_windows[trigger]
            have = 0 if prim is None else len(prim)
            raise InsufficientWindows(f"{self.name}: the {trigger} window needs {need} gap-free bars, got {have}")
        return enc

    def _encode_batch(
        self, windows_list: Sequence[Mapping[str, Any]], bar_ts_list: Sequence[int]
    ) -> list[dict[str, np.ndarray | None]]:
        """_encode over many window sets, each key in one vectorized pass (the same values)."""
        prims = [self._check_newest(windows, bar_ts) for windows, bar_ts in zip(windows_list, bar_ts_list)]
        encoded = encode_windows_batch(windows_list, self.spec, self.clip_stats)
        return [self._usable(enc, prim) for enc, prim in zip(encoded, prims)]

    def _scores(self, encoded: Sequence[dict[str, np.ndarray | None]]) -> dict[str, np.ndarray]:
        out: list[dict[str, np.ndarray]] = []
        with torch.inference_mode():
            for i in range(0, len(encoded), CHUNK):
                out.append(self.io.outputs(self.model, self.io.stack(encoded[i : i + CHUNK], self.spec, self.device)))
        return {k: np.concatenate([o[k] for o in out]) for k in out[0]} if out else {}

    def _prediction(self, named: dict[str, float], bar_ts: int, ms: float) -> Prediction:
        decision = decision_scores(named, self.mode)
        side = Side(int(thr.decide(decision, self.threshold, self.mode)))  # type: ignore[arg-type]
        conf = float(thr.confidence(decision, self.mode))  # type: ignore[arg-type]
        return Prediction(self.name, self.version, int(bar_ts), named, side, conf, self.threshold, ms, self.hold_bars)

    def clip_share(self) -> dict[str, tuple[float, ...]]:
        """Live share of clipped input values per window key and feature (beside the training
        share in `spec.clip_share`): a coin or regime the scalers do not fit shows here."""
        return self.clip_stats.share()

    @staticmethod
    def _row(scores: dict[str, np.ndarray], i: int) -> dict[str, float]:
        return {k: float(v[i]) for k, v in scores.items()}

    def predict(self, windows: Mapping[str, Any], bar_ts: int) -> Prediction:
        """One prediction at the close of the 1m bar that opened at bar_ts."""
        t0 = time.perf_counter()
        scores = self._scores([self._encode(windows, bar_ts)])
        return self._prediction(self._row(scores, 0), bar_ts, (time.perf_counter() - t0) * 1000.0)

    def predict_batch(self, windows_list: Sequence[Mapping[str, Any]], bar_ts_list: Sequence[int]) -> list[Prediction]:
        """Many bars at once (backtests); the same predictions as calling predict bar by bar."""
        if len(windows_list) != len(bar_ts_list):
            raise ValueError(f"{len(windows_list)} window sets but {len(bar_ts_list)} bar timestamps")
        t0 = time.perf_counter()
        scores = self._scores(self._encode_batch(windows_list, bar_ts_list))
        ms = (time.perf_counter() - t0) * 1000.0 / max(len(bar_ts_list), 1)
        return [self._prediction(self._row(scores, i), ts, ms) for i, ts in enumerate(bar_ts_list)]

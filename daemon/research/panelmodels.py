"""Pooled ("global") models over a panel: one model learns from every pair at once.

Inputs are the cross-sectional features of `models.xsfeatures` (normalised per symbol, so one
model reads every coin), targets come from `models.labels`. Two kinds of family:

- "lgbm": LightGBM gradient-boosted trees on the feature row of (t, s): the strong tabular
  baseline every deep model must beat. NaN features are handled natively by the trees.
- any window family of the model registry (gru, tcn, cnn_lstm_attn, ...): the network reads the
  window of the last `seq_len` feature rows of one pair (the "panel-window" adapter), features
  standardised on the training split, NaN as 0 after scaling. Classification targets use the
  network's class head (triple barrier: 3 classes; meta: classes 0/1, renormalised), regressions
  its value head on a standardised target.

`fold_scores` is the research entry point: given CPCV splits (positions into the panel's time
axis) it trains on each split's training decisions and returns the out-of-sample scores of its
test decisions, (len(test), S), ready for the portfolio module. Training rows are a seeded
subsample (`max_train`) so that a grid fits a CPU budget; test rows are all scored.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from daemon import log as logging
from models.labels import LabelSpec, scores

log = logging.get("panelmodels")

TABULAR = ("lgbm",)
LGBM_DEFAULTS: dict[str, Any] = {
    "n_estimators": 150,
    "learning_rate": 0.05,
    "num_leaves": 31,
    "min_child_samples": 200,
    "subsample": 0.7,
    "subsample_freq": 1,
    "colsample_bytree": 0.8,
    "reg_lambda": 1.0,
    "verbose": -1,
}
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class PanelModelSpec:
    """One pooled configuration: family, target, size, training budget."""

    family: str = "lgbm"  # "lgbm" or a registry family name (models/registry.py)
    label: LabelSpec = field(default_factory=LabelSpec)
    preset: str = "tiny"  # deep families: the size preset
    params: Mapping[str, Any] = field(default_factory=dict)  # lgbm parameters / deep config fields
    max_train: int = 150_000  # training rows (decision, pair) sampled per fit
    epochs: int = 2  # deep families
    batch_size: int = 512
    lr: float = 2e-3
    seq_len: int = 16  # deep families: feature rows per window
    seed: int = 0
    threads: int = 1  # more threads lose badly on a shared, oversubscribed CPU (OpenMP spin-waits): 6x slower measured

    def __post_init__(self) -> None:
        if self.family not in TABULAR:
            from models import registry

            registry.family(self.family)  # a clear error naming the known families
        for key in ("max_train", "epochs", "batch_size", "seq_len", "threads"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key}: must be >= 1, got {getattr(self, key)}")
        object.__setattr__(self, "params", dict(self.params))

    @property
    def name(self) -> str:
        """Short configuration name for tables: family/target."""
        return f"{self.family}/{self.label.kind}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the trial's parameters in the registry)."""
        out = dataclasses.asdict(self)
        out["label"] = self.label.to_dict()
        out["params"] = dict(self.params)
        return out


def training_rows(y: np.ndarray, t_rows: np.ndarray, limit: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(t, s) positions with a known label among time rows `t_rows`, at most `limit` (seeded sample)."""
    sub = y[t_rows]
    ti, si = np.nonzero(np.isfinite(sub))
    ti = t_rows[ti]
    if len(ti) > limit:
        pick = np.sort(rng.choice(len(ti), size=limit, replace=False))
        ti, si = ti[pick], si[pick]
    return ti, si


class _LGBM:
    def __init__(self, spec: PanelModelSpec) -> None:
        self.spec = spec

    def fit(self, X: np.ndarray, y: np.ndarray, ti: np.ndarray, si: np.ndarray) -> None:
        import lightgbm as lgb

        params = {**LGBM_DEFAULTS, **self.spec.params, "random_state": self.spec.seed, "n_jobs": self.spec.threads}
        rows, target = X[ti, si], y[ti, si]
        if self.spec.label.classes:
            self.model = lgb.LGBMClassifier(**params)
            self.model.fit(rows, target.astype(np.int64))
        else:
            self.model = lgb.LGBMRegressor(**params)
            self.model.fit(rows, target)

    def predict(self, X: np.ndarray, ti: np.ndarray, si: np.ndarray) -> np.ndarray:
        rows = X[ti, si]
        if self.spec.label.classes:
            p = self.model.predict_proba(rows)
            out = np.zeros((len(rows), self.spec.label.classes))
            out[:, self.model.classes_.astype(np.int64)] = p  # a class absent in training stays 0
            return out
        return self.model.predict(rows)


class _Window:
    """A registry window family reading the last `seq_len` feature rows of one pair."""

    def __init__(self, spec: PanelModelSpec) -> None:
        self.spec = spec

    def _windows(self, X: np.ndarray, ti: np.ndarray, si: np.ndarray) -> np.ndarray:
        L = self.spec.seq_len
        steps = ti[:, None] + np.arange(-L + 1, 1)  # (B, L); before row 0 -> row 0, masked below
        w = X[np.maximum(steps, 0), si[:, None]]  # (B, L, F)
        w = (w - self.center) / self.scale
        w[steps < 0] = np.nan
        return np.nan_to_num(np.clip(w, -5.0, 5.0), nan=0.0).astype(np.float32)

    def fit(self, X: np.ndarray, y: np.ndarray, ti: np.ndarray, si: np.ndarray) -> None:
        import torch

        from models import registry

        spec, label = self.spec, self.spec.label
        torch.manual_seed(spec.seed)
        torch.set_num_threads(spec.threads)
        rows = X[ti, si]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a feature never known in training: centre 0, scale 1
            self.center = np.nan_to_num(np.nanmean(rows, axis=0))
            sd = np.nan_to_num(np.nanstd(rows, axis=0))
        self.scale = np.where(sd > 1e-9, sd, 1.0)
        task = "classification" if label.classes else "regression"
        fam = registry.family(spec.family)
        self.net = fam.build(
            {**spec.params, "n_features": X.shape[-1], "seq_len": spec.seq_len, "task": task}, preset=spec.preset
        )
        target = y[ti, si]
        if not label.classes:
            self.y_center, self.y_scale = float(np.mean(target)), float(np.std(target) or 1.0)
            target = (target - self.y_center) / self.y_scale
        opt = torch.optim.AdamW(self.net.parameters(), lr=spec.lr, weight_decay=1e-4)
        loss_fn = torch.nn.CrossEntropyLoss() if label.classes else torch.nn.HuberLoss()
        rng = np.random.default_rng(spec.seed)
        self.net.train()
        for _ in range(spec.epochs):
            order = rng.permutation(len(ti))
            for b in range(0, len(order), spec.batch_size):
                idx = order[b : b + spec.batch_size]
                x = torch.from_numpy(self._windows(X, ti[idx], si[idx]))
                out = self.net(x)
                if label.classes:
                    loss = loss_fn(out, torch.from_numpy(target[idx].astype(np.int64)))
                else:
                    loss = loss_fn(out[:, 0], torch.from_numpy(target[idx].astype(np.float32)))
                opt.zero_grad()
                loss.backward()
                opt.step()
        self.net.eval()

    def predict(self, X: np.ndarray, ti: np.ndarray, si: np.ndarray) -> np.ndarray:
        import torch

        outs = []
        with torch.no_grad():
            for b in range(0, len(ti), 4096):
                x = torch.from_numpy(self._windows(X, ti[b : b + 4096], si[b : b + 4096]))
                outs.append(self.net(x).float().numpy())
        out = np.concatenate(outs) if outs else np.zeros((0, 3 if self.spec.label.classes else 1))
        k = self.spec.label.classes
        if k:
            logits = out[:, :k]  # meta uses classes 0/1 of the 3-class head: renormalise over them
            e = np.exp(logits - logits.max(axis=1, keepdims=True))
            return e / e.sum(axis=1, keepdims=True)
        return out[:, 0] * self.y_scale + self.y_center


def make_model(spec: PanelModelSpec) -> _LGBM | _Window:
    """The fit/predict object of a spec's family."""
    return _LGBM(spec) if spec.family in TABULAR else _Window(spec)


def fit_predict(
    X: np.ndarray, y: np.ndarray, close: np.ndarray, spec: PanelModelSpec, train_t: np.ndarray, test_t: np.ndarray
) -> np.ndarray:
    """Train on the labelled (t, s) of time rows `train_t`, score every pair at rows `test_t`.

    Returns signed scores (len(test_t), S); NaN where the pair has no bar or no features.
    """
    rng = np.random.default_rng(spec.seed)
    ti, si = training_rows(y, np.asarray(train_t), spec.max_train, rng)
    if len(ti) < 100:
        raise ValueError(f"only {len(ti)} labelled training rows: too few for {spec.name}")
    model = make_model(spec)
    model.fit(X, y, ti, si)
    test_t = np.asarray(test_t)
    S = close.shape[1]
    present = np.isfinite(close[test_t]) & np.isfinite(X[test_t]).any(axis=-1)
    qt, qs = np.nonzero(present)
    pred = model.predict(X, test_t[qt], qs)
    k = spec.label.classes
    full = np.full((len(close), S, k) if k else (len(close), S), np.nan)
    full[test_t[qt], qs] = pred
    out = scores(spec.label, full, close)[test_t]
    return np.where(present, out, np.nan)


def fold_scores(
    X: np.ndarray, y: np.ndarray, close: np.ndarray, spec: PanelModelSpec, splits: Sequence[Any], progress: Progress | None = None
) -> list[np.ndarray]:
    """Out-of-sample scores per split: `splits[i].train_idx` / `.test_idx` are time rows (the
    eval module's `cpcv_splits`); result i is (len(test_idx), S)."""
    out = []
    for i, split in enumerate(splits):
        t0 = time.perf_counter()
        out.append(fit_predict(X, y, close, spec, split.train_idx, split.test_idx))
        log.info("panelmodels.fold", config=spec.name, fold=i, folds=len(splits), seconds=round(time.perf_counter() - t0, 2))
        if progress:
            progress(i + 1, len(splits))
    return out


def with_label(spec: PanelModelSpec, **label_changes: Any) -> PanelModelSpec:
    """A copy with the target's fields changed."""
    return dataclasses.replace(spec, label=dataclasses.replace(spec.label, **label_changes))


def spec_from_dict(d: Mapping[str, Any]) -> PanelModelSpec:
    """Inverse of PanelModelSpec.to_dict."""
    fields = dict(d)
    fields["label"] = LabelSpec.from_dict(fields.get("label", {}))
    return PanelModelSpec(**fields)

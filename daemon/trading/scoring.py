"""How good are a model's calls, in research and live: forecast and trading scores, live
scoring of stored predictions, and shadow mode.

Forecast scores (`forecast_scores`, `calibration`, `confident_share`, `trading_scores`) are
pure functions shared by model selection (daemon/research/leaderboard.py) and the live
scorer, so a model is measured the same way before and after it ships.

Shadow mode: a model whose artifact carries no passing `validation` block (the gate of
daemon/research/stats.py, written by `sigd compare` / the nightly retrain) or that live
scoring demoted still runs, and its predictions are stored and scored, but they do not reach
the strategies. `Shadow.allowed()` is the one filter the engine applies; `Shadow.score()` runs
once per decision cycle. With shadow ledgers, `Shadow.gate` (daemon/trading/verdict.py) also
promotes and demotes models on their ledger's record there.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

import strategies.threshold as thr
from daemon import log as logging
from daemon.domain import Prediction
from daemon.metrics import REGISTRY
from pipeline.evaluate import macro_f1

log = logging.get("scoring")
EPS = 1e-6  # probabilities are clipped here for the log-loss: one certain miss is not infinite


def forecast_scores(y: np.ndarray, probs: np.ndarray) -> dict[str, float | int]:
    """Accuracy and macro-F1 of the arg-max, multi-class Brier and log-loss, over labelled rows."""
    y = np.asarray(y, dtype=np.int64)
    p = np.asarray(probs, dtype=np.float64)
    keep = y >= 0
    y, p = y[keep], p[keep]
    if not len(y):
        return {"labelled": 0, "accuracy": math.nan, "macro_f1": math.nan, "brier": math.nan, "log_loss": math.nan}
    truth = np.eye(3)[y]
    return {
        "labelled": int(len(y)),
        "accuracy": float(np.mean(p.argmax(axis=1) == y)),
        "macro_f1": macro_f1(y, p.argmax(axis=1)),
        "brier": float(np.mean(np.sum((p - truth) ** 2, axis=1))),
        "log_loss": float(-np.mean(np.log(np.clip(p[np.arange(len(y)), y], EPS, 1.0)))),
    }


def calibration(y: np.ndarray, probs: np.ndarray, bins: int = 10) -> list[dict[str, float]]:
    """Arg-max confidence vs how often the arg-max class was right, per confidence bin."""
    y, p = np.asarray(y, dtype=np.int64), np.asarray(probs, dtype=np.float64)
    keep = y >= 0
    conf, hit = p[keep].max(axis=1), (p[keep].argmax(axis=1) == y[keep])
    edges = np.linspace(1 / 3, 1.0, bins + 1)
    which = np.clip(np.searchsorted(edges, conf, side="right") - 1, 0, bins - 1)
    return [
        {
            "confidence": float(conf[which == b].mean()),
            "hit_rate": float(hit[which == b].mean()),
            "count": int((which == b).sum()),
        }
        for b in range(bins)
        if (which == b).any()
    ]


def confident_share(sides: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Share of decisions that are a LONG or a SHORT call (a FLAT is not a call) and how often
    each was right where the label is known."""
    sides, y = np.asarray(sides, dtype=np.int64), np.asarray(y, dtype=np.int64)
    out: dict[str, float] = {}
    for name, side in (("long", 2), ("short", 0)):
        calls = sides == side
        known = calls & (y >= 0)
        out[name] = float(calls.mean()) if len(sides) else 0.0
        out[f"{name}_hit"] = float(np.mean(y[known] == side)) if known.any() else math.nan
    return out


def trading_scores(
    sides: np.ndarray, step_ret: np.ndarray, hold: int, fee: float, bars_per_year: float
) -> tuple[dict[str, float | int | None], np.ndarray]:
    """Trade the sides with unit positions (the same sizing for every rule) held >= `hold`
    decisions; (scores, net return per decision)."""
    pos = thr.positions(np.asarray(sides, dtype=np.int64), hold)
    ret = np.asarray(step_ret, dtype=np.float64)
    net = thr.net_returns(pos, ret, fee)
    gross = float(np.sum(pos * ret))
    fees = float(np.sum(fee * np.abs(np.diff(pos, prepend=0))))
    return {
        "sharpe": thr.sharpe(pos, ret, fee, bars_per_year),
        "total_return": float(np.prod(1.0 + net) - 1.0) if len(net) else 0.0,
        "trades": int(np.count_nonzero(np.diff(pos, prepend=0) * pos)),  # entries and flips
        "turnover": float(np.abs(np.diff(pos, prepend=0)).sum()),  # equity traded, in units of equity
        "time_in_market": float(np.mean(pos != 0)) if len(pos) else 0.0,
        "gross_pnl": gross,
        "fees": fees,
        # fees over the gross PnL they were paid for; None when there was no gross gain
        "fee_share": fees / gross if gross > 0 else None,
    }, net


def sign_sides(ret: np.ndarray, dead_zone: float = 0.0) -> np.ndarray:
    """LONG above +dead_zone, SHORT below -dead_zone, FLAT otherwise (and where unknown)."""
    r = np.nan_to_num(np.asarray(ret, dtype=np.float64), nan=0.0)
    return np.where(r > dead_zone, 2, np.where(r < -dead_zone, 0, 1)).astype(np.int64)


def one_hot(sides: np.ndarray) -> np.ndarray:
    """Certain probabilities [n, 3] of deterministic decisions."""
    return np.eye(3)[np.asarray(sides, dtype=np.int64)]


def label_of(ret: np.ndarray, threshold: float, neutral_zone: float) -> np.ndarray:
    """The training labels' rule (models/targets.py): LONG / SHORT beyond the threshold, FLAT
    inside the neutral zone, -1 (ambiguous or unknown) otherwise."""
    r = np.asarray(ret, dtype=np.float64)
    y = np.full(len(r), -1, dtype=np.int64)
    y[r >= threshold] = 2
    y[r <= -threshold] = 0
    y[np.abs(r) <= neutral_zone] = 1
    return y


# --- live scoring ----------------------------------------------------------------------------

MINUTE_MS = 60_000
MIN_CALLS = 30  # calls in a full window before their net return can demote a model
LIVE = REGISTRY.gauge("sigd_model_live_score", "Rolling live score per model and measure")


@dataclass(frozen=True)
class ModelTarget:
    """What a model's label means (its artifact's target): horizon in 1m bars, thresholds."""

    horizon: int
    threshold: float
    neutral_zone: float

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any]) -> ModelTarget:
        """From an artifact's JSON."""
        t = meta["target"]
        return cls(int(t["horizon"]), float(t["threshold"]), float(t["neutral_zone"]))


class LiveScorer:
    """Scores every stored prediction of every traded symbol against its realized label once
    its horizon has passed.

    Labels, the persistence baseline and returns come from the stored 1m bars of the
    prediction's symbol (time from the data: a prediction at bar t is scored once the bar
    t + horizon of that symbol is stored). Rolling over the last `window` scored predictions
    per model, all symbols together: accuracy, macro-F1, Brier, log-loss beside the always-FLAT
    and persistence baselines' accuracy and macro-F1, the hit rate of the calls at the model's
    own horizon beside its base rate, and the gated Sharpe (mean over std of the net return of
    each LONG/SHORT call over its horizon, per call, round-trip fee); the same figures per
    symbol over that window's rows of the symbol under `by_symbol`.
    """

    def __init__(
        self,
        store: Any,
        symbols: str | Sequence[str],
        targets: Mapping[str, ModelTarget],
        *,
        window: int = 1440,
        fee: float = thr.DEFAULT_FEE,
        lookback_ms: int = 2 * 86_400_000,
        check_every: int = 15,
    ) -> None:
        self.store, self.targets = store, dict(targets)
        self.symbols = (symbols,) if isinstance(symbols, str) else tuple(symbols)
        if not self.symbols:
            raise ValueError("LiveScorer: no symbol to score")
        self.window, self.fee, self.lookback_ms = window, fee, lookback_ms
        # (symbol, bar_ts, probs, side, forward return, trailing return), newest last
        self.scored: dict[str, deque[tuple[Any, ...]]] = {m: deque(maxlen=window) for m in self.targets}
        self.cursor: dict[tuple[str, str], int] = {}  # (model, symbol) -> last bar_ts scored
        # The rolling scores are recomputed (gauges, demotion check) after every `check_every`
        # newly scored predictions, not on every decision: it keeps the bar path cheap.
        self.check_every, self._unchecked = check_every, 0

    def update(self) -> dict[str, str]:
        """Score what matured since the last call; {model: why} for models below a baseline."""
        for symbol in self.symbols:
            newest = self.store.latest_bars(symbol, "1m", 1)
            if newest:
                for model in self.targets:
                    self._score(model, symbol, newest[-1].ts)
        if self._unchecked < self.check_every:
            return {}
        self._unchecked = 0
        return self._below_baselines()

    def _score(self, model: str, symbol: str, now: int) -> None:
        span = self.targets[model].horizon * MINUTE_MS
        after = self.cursor.get((model, symbol), now - self.lookback_ms)
        rows = _stored_predictions(self.store, symbol, model, after, now - span)
        if not rows:
            return
        close = self.store.closes_at(symbol, "1m", {t for r in rows for t in (r[0] - span, r[0], r[0] + span)})
        for bar_ts, probs, side in rows:
            c0, c1, before = close.get(bar_ts), close.get(bar_ts + span), close.get(bar_ts - span)
            if c0 is None or c1 is None:
                continue  # a gap in the record: no label
            trailing = c0 / before - 1.0 if before else math.nan
            self.scored[model].append((symbol, bar_ts, probs, side, c1 / c0 - 1.0, trailing))
            self._unchecked += 1
        self.cursor[(model, symbol)] = rows[-1][0]

    def model_status(self, model: str) -> dict[str, Any]:
        """Rolling scores of one model (and its persistence baseline) over the scored window,
        all symbols together, and per symbol when it trades more than one."""
        rows = list(self.scored[model])
        out = _window_scores(rows, self.targets[model], self.fee)
        if len(self.symbols) > 1 and rows:
            out["by_symbol"] = {
                sym: _window_scores([r for r in rows if r[0] == sym], self.targets[model], self.fee) for sym in self.symbols
            }
        return out

    def status(self) -> dict[str, dict[str, Any]]:
        """Every model's rolling scores (also set as sigd_model_live_score gauges)."""
        out = {m: self.model_status(m) for m in self.targets}
        for model, st in out.items():
            for measure in (
                "accuracy",
                "macro_f1",
                "brier",
                "gated_sharpe",
                "persistence_macro_f1",
                "flat_accuracy",
                "hit_rate",
                "hit_base_rate",
            ):
                if isinstance(st.get(measure), float) and math.isfinite(st[measure]):
                    LIVE.set(st[measure], model=model, measure=measure)
        return out

    def _below_baselines(self) -> dict[str, str]:
        """{model: why} for models worse than a baseline over a full window: persistence (on
        macro-F1: a rule that only repeats the last move), or always-FLAT, which trades nothing
        and so earns 0: calls whose net return per call is negative lose to it."""
        out = {}
        for model, st in self.status().items():
            if st["scored"] < self.window:
                continue
            if st["macro_f1"] < st["persistence_macro_f1"]:
                out[model] = (
                    f"live macro-F1 {st['macro_f1']:.3f} below the persistence baseline's "
                    f"{st['persistence_macro_f1']:.3f} over the last {st['scored']} scored predictions"
                )
            elif st["calls"] >= MIN_CALLS and st["mean_net_per_call"] < 0.0:
                out[model] = (
                    f"live calls lose {-st['mean_net_per_call']:.4%} each after fees over the last "
                    f"{st['calls']} calls (horizon {st['horizon_bars']} bars): worse than always-FLAT, "
                    f"which earns 0"
                )
        return out


def _window_scores(rows: Sequence[tuple[Any, ...]], t: ModelTarget, fee: float) -> dict[str, Any]:
    """The live figures of scored rows (symbol, bar_ts, probs, side, forward, trailing return)."""
    if not rows:
        return {"scored": 0}
    probs = np.array([r[2] for r in rows], dtype=np.float64)
    side = np.array([r[3] for r in rows], dtype=np.int64)
    fwd = np.array([r[4] for r in rows])
    y = label_of(fwd, t.threshold, t.neutral_zone)
    persistence = forecast_scores(y, one_hot(sign_sides(np.array([r[5] for r in rows]), t.neutral_zone)))
    flat = forecast_scores(y, one_hot(np.ones(len(rows), dtype=np.int64)))
    calls = side != 1
    net = (side[calls] - 1) * fwd[calls] - 2 * fee
    # returns that are all the same (a steady trend) have no risk to speak of: no Sharpe
    gated = float(net.mean() / net.std()) if len(net) >= 2 and net.std() > 1e-12 else 0.0
    return {
        "scored": len(rows),
        "last_bar_ts": int(max(r[1] for r in rows)),
        "horizon_bars": t.horizon,
        **forecast_scores(y, probs),
        "calls": int(calls.sum()),
        "gated_sharpe": gated,
        "mean_net_per_call": float(net.mean()) if len(net) else math.nan,
        **hit_rates(side, fwd),
        "flat_accuracy": flat["accuracy"],
        "flat_macro_f1": flat["macro_f1"],
        "persistence_accuracy": persistence["accuracy"],
        "persistence_macro_f1": persistence["macro_f1"],
    }


def hit_rates(side: np.ndarray, fwd: np.ndarray) -> dict[str, float]:
    """How often LONG/SHORT calls moved the called way over the model's own horizon, beside the
    base rate: how often a call of the same mix would have been right by chance over the same
    rows (the share of rises for the LONG calls, of falls for the SHORT calls)."""
    side, fwd = np.asarray(side, dtype=np.int64), np.asarray(fwd, dtype=np.float64)
    longs, shorts = side == 2, side == 0
    n = int(longs.sum() + shorts.sum())
    if n == 0 or not len(fwd):
        return {"hit_rate": math.nan, "hit_base_rate": math.nan}
    hits = int((fwd[longs] > 0).sum() + (fwd[shorts] < 0).sum())
    base = (longs.sum() * float(np.mean(fwd > 0)) + shorts.sum() * float(np.mean(fwd < 0))) / n
    return {"hit_rate": hits / n, "hit_base_rate": float(base)}


def _stored_predictions(store: Any, symbol: str, model: str, after: int, until: int) -> list[tuple[int, tuple, int]]:
    """(bar_ts, (p_short, p_flat, p_long), side) of `model` with after < bar_ts <= until, oldest first."""
    keys = ("p_short", "p_flat", "p_long")
    # a row without class probabilities (none stored) is left out
    return [
        (int(p.bar_ts), tuple(float(p.scores[k]) for k in keys), int(p.side))
        for p in store.model_predictions(symbol, model, after, until)
        if all(p.scores.get(k) is not None for k in keys)
    ]


# --- shadow mode ---------------------------------------------------------------------------

NO_VALIDATION = (
    "its artifact has no validation block: measure it out of sample with "
    "`sigd compare --validate ARTIFACT_DIR --data DIR --from ISO`"
)


def validation_verdict(meta: Mapping[str, Any] | None) -> tuple[bool, str]:
    """(passed, why) from an artifact's `validation` block (written by the gate)."""
    block = (meta or {}).get("validation")
    if not isinstance(block, Mapping):
        return False, NO_VALIDATION
    if block.get("passed") is True:
        return True, f"validated: {block.get('why', '')}"
    return False, f"failed the gate: {block.get('why', 'no reason recorded')}"


class Shadow:
    """Which models may trade. A shadowed model still predicts, is stored and scored."""

    def __init__(self, only_validated: bool = False, sink: Any = None) -> None:
        self.only_validated = only_validated
        self.sink = sink  # an EventSink for the alert (None: log only)
        self.reasons: dict[str, str] = {}  # model -> why it does not trade
        self.kinds: dict[str, str] = {}  # model -> what put it in shadow mode (the alert's kind)
        self.versions: dict[str, str] = {}
        self.scorer: Any = None  # a LiveScorer when the daemon runs one
        self.gate: Any = None  # a verdict.LedgerGate when the daemon keeps shadow ledgers

    def review(self, model: str, version: str, meta: Mapping[str, Any] | None) -> bool:
        """Decide from the artifact (at start-up and at every swap), or from the live gate's
        standing verdict on this very version; True when it may trade."""
        self.versions[model] = version
        standing = None
        if self.gate is not None:
            self.gate.seen(model, version, meta)
            standing = self.gate.standing_verdict(model, version)
        if standing is not None:
            self.apply_verdict(model, standing["verdict"], standing["why"])
            return model not in self.reasons
        passed, why = validation_verdict(meta)
        if passed or not self.only_validated:
            self.reasons.pop(model, None)
            self.kinds.pop(model, None)
            return True
        self._shadow(model, why, "model_not_validated")
        return False

    def apply_verdict(self, model: str, verdict: str, why: str) -> None:
        """The live gate's verdict (committed and alerted by the gate): trade, or shadow mode."""
        if verdict == "promoted":
            self.reasons.pop(model, None)
            self.kinds.pop(model, None)
        else:
            self.reasons[model] = f"demoted by the live gate: {why}"
            self.kinds[model] = "ledger_demoted"

    def demote(self, model: str, why: str) -> None:
        """Live scoring found the model worse than its baseline: stop its trading."""
        if model not in self.reasons:
            self._shadow(model, why, "model_demoted")

    def _shadow(self, model: str, why: str, kind: str) -> None:
        self.reasons[model] = why
        self.kinds[model] = kind
        version = self.versions.get(model, "")
        payload = {
            "kind": kind,
            "model": model,
            "version": version,
            "why": why,
            "message": f"{model} runs in shadow mode (predictions stored and scored, not traded): {why}",
        }
        log.warning("model_shadowed", **payload)
        if self.sink is not None:
            try:  # one alert per model version and reason: the event id is stable across restarts
                self.sink.publish("error", payload, event_id=f"shadow-{kind}-{model}-{version}")
            except Exception as exc:
                log.error("shadow_alert_failed", model=model, error=repr(exc))

    def score(self) -> None:
        """Score the stored predictions whose horizon has passed (every symbol) and demote the
        models that fell below a baseline (persistence or always-FLAT). The engine asks once per decision cycle, before any
        symbol acts, so a demotion applies from this cycle on."""
        if self.scorer is not None:
            try:
                for model, why in self.scorer.update().items():
                    self.demote(model, why)
            except Exception as exc:  # scoring never stops a decision
                log.error("live_scoring_failed", error=repr(exc))
        if self.gate is not None:
            try:  # the ledgers' record as of the last cycle; a verdict applies once committed
                self.gate.review(self)
            except Exception as exc:
                log.error("live_gate_failed", error=repr(exc))

    def allowed(self, predictions: Sequence[Prediction]) -> list[Prediction]:
        """The predictions the strategies may act on: those of models not in shadow mode."""
        return [p for p in predictions if p.model not in self.reasons]

    def tradable(self, predictions: Sequence[Prediction]) -> list[Prediction]:
        """`score()` then `allowed()`: one decision outside a cycle (tests, the scoring bench)."""
        self.score()
        return self.allowed(predictions)

    def summary(self) -> dict[str, str]:
        """One line per scored model for the daily summary: live scores beside persistence, and
        whether it trades."""
        out = {}
        for model, st in (self.scorer.status() if self.scorer is not None else {}).items():
            trades = "SHADOW: " + self.reasons[model] if model in self.reasons else "trades"
            if not st.get("scored"):
                out[model] = f"nothing scored yet; {trades}"
                continue
            out[model] = (
                f"accuracy {st['accuracy']:.3f} (always-FLAT {st['flat_accuracy']:.3f}, persistence "
                f"{st['persistence_accuracy']:.3f}), macro-F1 {st['macro_f1']:.3f} (persistence "
                f"{st['persistence_macro_f1']:.3f}), hit rate {_pct(st['hit_rate'])} at {st['horizon_bars']} "
                f"bars (base rate {_pct(st['hit_base_rate'])}), Brier {st['brier']:.3f}, gated Sharpe "
                f"{st['gated_sharpe']:+.3f} over {st['scored']} scored; {trades}"
            )
        return out

    def status(self) -> dict[str, Any]:
        """For /status: the setting, every shadowed model with the reason, the live scores."""
        return {
            "trade_only_validated": self.only_validated,
            "shadow": dict(self.reasons),
            "live_scores": self.scorer.status() if self.scorer is not None else {},
            "gate": self.gate.status() if self.gate is not None else None,
        }


def _pct(x: float) -> str:
    return "-" if not math.isfinite(x) else f"{x:.3f}"


def shadow_from_config(
    cfg: Any, predictors: Mapping[str, Any], sink: Any = None, store: Any = None, ledgers: Any = None
) -> Shadow:
    """The daemon's Shadow: `[models] trade_only_validated`, each served artifact reviewed, (with
    a store) live scoring of every model whose artifact states its target, and (with the shadow
    ledgers too) the live gate on their record."""
    shadow = Shadow(cfg.models.trade_only_validated, sink)
    if store is not None and ledgers is not None:
        from daemon.trading.verdict import LedgerGate, Rules

        shadow.gate = LedgerGate(ledgers, store, sink, Rules.from_config(cfg.models))
        shadow.gate.load()
    targets = {}
    for name, predictor in predictors.items():
        shadow.review(name, predictor.version, getattr(predictor, "meta", None))
        meta = getattr(predictor, "meta", None)
        if meta and "target" in meta and meta["target"].get("mode", "classification") == "classification":
            targets[name] = ModelTarget.from_meta(meta)  # labels are what a classifier is scored against
    if store is not None and targets:
        shadow.scorer = LiveScorer(store, cfg.exchange.symbols, targets, window=cfg.models.score_window, fee=cfg.broker.fee)
    return shadow

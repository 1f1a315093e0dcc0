"""The live gate: promotion and demotion from the shadow ledgers' record.

Every served model keeps a paper book of what it would have done (daemon/trading/ledgers.py),
next to the always-flat and buy-and-hold books over the same cycles. Once per decision cycle
(`Shadow.score()`, before any symbol acts) the gate reads each model's record: its per-cycle
net returns (after costs) and fills over the last `window` cycles since its current version
started or since its last verdict, whichever is later, beside buy-and-hold's over the same cycles.

- **Not enough record yet**: fewer than `min_cycles` cycles. Nothing changes; `/status` says
  how far along the record is.
- **Promotion** (only with `[models] promote_from_shadow = true`; off by default): a model in
  shadow mode (not validated, or demoted by this gate) trades from the next cycle when, over
  the window, it made at least `min_trades` fills, its Deflated Sharpe Ratio is at least
  `min_dsr` (its per-cycle Sharpe beats 0, what always-flat earns, against the luck of the
  best of N configurations, N = `n_trials` of its artifact's validation block, else 1;
  strategies/sharpe.py, as the research gate), and the PSR of its per-cycle excess return over buy-and-hold is at
  least `min_psr` (it beats holding the universe, not only cash). A model that the live scorer
  demoted (below persistence or always-FLAT on its calls) is not promoted here.
- **Demotion**: a trading model whose book lost money over the window after costs (its
  compounded net return is below 0, always-flat's) goes to shadow mode.

Each verdict is one transaction (a savepoint of the cycle's): the verdict record with its
figures (kv `gate.verdicts`: each model's standing verdict and the last 100), its alert (type
`gate`) in the outbox; the bus event (`gate_verdict`) and the change of who trades follow the
commit. A standing verdict is re-applied at start-up and at a swap to the same model version (a
promotion only while promote_from_shadow is on); a new version starts a new record and is
judged by its artifact again.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from daemon import events
from daemon import log as logging
from daemon.trading.ledgers import HOLD, ShadowLedgers
from strategies import sharpe

log = logging.get("verdict")
KV_VERDICTS = "gate.verdicts"  # the gate's state: standing verdicts, record starts, history
HISTORY_KEPT = 100  # verdicts kept in the state (every one also went out as an alert)
PROMOTED, DEMOTED = "promoted", "demoted"
PROMOTABLE = ("model_not_validated", "ledger_demoted")  # shadow kinds a ledger record may lift


@dataclass(frozen=True)
class Rules:
    """What the gate reads and requires ([models] keys of the same meaning)."""

    promote: bool = False  # promote_from_shadow
    window: int = 720  # ledger_window: cycles of record read (the books keep this many)
    min_cycles: int = 168  # ledger_min_cycles: no verdict on a shorter record
    min_trades: int = 30  # gate_min_trades
    min_psr: float = 0.95  # gate_min_psr
    min_dsr: float = 0.95  # gate_min_dsr

    @classmethod
    def from_config(cls, models: Any) -> Rules:
        """From the typed [models] section."""
        return cls(
            promote=models.promote_from_shadow,
            window=models.ledger_window,
            min_cycles=models.ledger_min_cycles,
            min_trades=models.gate_min_trades,
            min_psr=models.gate_min_psr,
            min_dsr=models.gate_min_dsr,
        )


def n_trials(meta: Mapping[str, Any] | None) -> int:
    """N for the DSR: the configurations tried before the artifact, from its validation block (1 if unknown)."""
    block = (meta or {}).get("validation")
    try:
        return max(1, int(block["n_trials"])) if isinstance(block, Mapping) else 1
    except (KeyError, TypeError, ValueError):
        return 1


def record(model: np.ndarray, hold: np.ndarray, fills: int, trials: int, full: bool = True) -> dict[str, Any]:
    """The figures of one record: per-cycle net returns of the model and of buy-and-hold over the
    same cycles, the fills in them, N. Sharpes are per cycle; returns compounded over the record.
    Without `full`, only what a demotion needs (the bar path pays for the rest only when a
    promotion is in question; /status asks for it)."""
    out: dict[str, Any] = {
        "cycles": len(model),
        "fills": int(fills),
        "net_return": float(np.prod(1.0 + model) - 1.0) if len(model) else 0.0,
        "flat_return": 0.0,
        "hold_return": float(np.prod(1.0 + hold) - 1.0) if len(hold) else 0.0,
        "n_trials": trials,
    }
    if full:
        m = sharpe.moments(model) if len(model) >= 2 else sharpe.Moments(0.0, 0.0, 3.0, len(model))
        excess = model - hold
        e = sharpe.moments(excess) if len(excess) >= 2 else sharpe.Moments(0.0, 0.0, 3.0, len(excess))
        out.update(
            sharpe=m.sharpe,
            hold_sharpe=sharpe.moments(hold).sharpe if len(hold) >= 2 else 0.0,
            dsr=sharpe.dsr(m, trials),
            psr_vs_hold=sharpe.psr(e),
        )
    return out


class LedgerGate:
    """Promotion and demotion from the shadow ledgers (module doc); `Shadow.score()` calls `review`."""

    def __init__(self, ledgers: ShadowLedgers, store: Any, sink: Any, rules: Rules) -> None:
        self.ledgers, self.store, self.sink, self.rules = ledgers, store, sink, rules
        self.trials: dict[str, int] = {}  # model -> N of its artifact
        self.standing: dict[str, dict[str, Any]] = {}  # model -> its last verdict (with version)
        self.since: dict[str, dict[str, Any]] = {}  # model -> {"version", "cycle"}: where its record starts
        self.history: list[dict[str, Any]] = []
        self.latest: dict[str, dict[str, Any]] = {}  # model -> the figures and the state of the last review

    # --- state ------------------------------------------------------------------------------

    def load(self) -> None:
        """The standing verdicts and record starts a previous run kept."""
        text = self.store.get_kv(KV_VERDICTS)
        if text:
            raw = json.loads(text)
            self.standing, self.since, self.history = raw.get("standing", {}), raw.get("since", {}), raw.get("history", [])

    def _save(self) -> None:
        raw = {"standing": self.standing, "since": self.since, "history": self.history[-HISTORY_KEPT:]}
        self.store.set_kv(KV_VERDICTS, json.dumps(raw))

    def standing_verdict(self, model: str, version: str) -> dict[str, Any] | None:
        """The model's last verdict when it was given to this version (None otherwise); a
        promotion stands only while promote_from_shadow is on."""
        v = self.standing.get(model)
        if v is None or v.get("version") != version or (v.get("verdict") == PROMOTED and not self.rules.promote):
            return None
        return v

    def seen(self, model: str, version: str, meta: Mapping[str, Any] | None) -> None:
        """A served model (start-up or swap): its N, and a new record from here for a new version."""
        self.trials[model] = n_trials(meta)
        start = self.since.get(model)
        if start is None or start.get("version") != version:
            # where the new record starts: the book's cycles now, or (at start-up, before the books
            # are loaded) the cycles of the kept books, resolved at the first review
            book = self.ledgers.books.get(model)
            self.since[model] = {"version": version, "cycle": book.cycles if book is not None else None}
            with self.store.transaction():
                self._save()

    # --- the verdicts -----------------------------------------------------------------------

    def _window(self, model: str, persist: bool = False) -> tuple[np.ndarray, np.ndarray, int] | None:
        book, hold = self.ledgers.books.get(model), self.ledgers.books.get(HOLD)
        if book is None or hold is None:
            return None
        since = self.since.setdefault(model, {"version": "", "cycle": None})
        if since.get("cycle") is None:  # a new version seen at start-up: its record starts where the kept books were
            since["cycle"] = self.ledgers.loaded_cycles.get(model, 0)
            if persist:  # the review's, on the decision path; a status read writes nothing
                with self.store.transaction():
                    self._save()
        start = int(since["cycle"])
        if start > book.cycles:  # the books were started afresh (other symbols or balance)
            start = 0
        n = min(book.cycles - start, len(book.returns), len(hold.returns), self.rules.window)
        if n <= 0:
            return np.zeros(0), np.zeros(0), 0
        r = np.fromiter(book.returns, dtype=np.float64)[-n:]
        h = np.fromiter(hold.returns, dtype=np.float64)[-n:]
        fills = int(sum(list(book.trades)[-n:]))
        return r, h, fills

    def review(self, shadow: Any) -> list[dict[str, Any]]:
        """Judge every served model's record (module doc); returns the verdicts given now."""
        given = []
        for model, version in sorted(shadow.versions.items()):
            window = self._window(model, persist=True)
            if window is None:
                continue
            r, h, fills = window
            trading, kind = model not in shadow.reasons, shadow.kinds.get(model, "")
            in_question = not trading and self.rules.promote and kind in PROMOTABLE and len(r) >= self.rules.min_cycles
            figures = record(r, h, fills, self.trials.get(model, 1), full=in_question)
            verdict, why = self._judge(model, figures, trading, kind)
            self.latest[model] = {"state": "trading" if trading else "shadow", "version": version, "why": why}
            if verdict is not None:
                figures = figures if in_question else record(r, h, fills, self.trials.get(model, 1))
                given.append(self._give(shadow, model, version, verdict, why, figures))
        return given

    def figures(self, model: str) -> dict[str, Any]:
        """The full figures of a model's current record (what /status shows)."""
        window = self._window(model)
        if window is None:
            return {}
        return record(*window, self.trials.get(model, 1))

    def _judge(self, model: str, f: Mapping[str, Any], trading: bool, kind: str) -> tuple[str | None, str]:
        rules = self.rules
        if f["cycles"] < rules.min_cycles:
            return None, (
                f"not enough record yet: {f['cycles']} of {rules.min_cycles} cycles, {f['fills']} fills "
                f"(window {rules.window} cycles)"
            )
        if trading:
            if f["net_return"] < 0.0:
                return DEMOTED, (
                    f"its shadow ledger lost {-f['net_return']:.2%} after costs over the last {f['cycles']} cycles: "
                    f"below always-flat (0.00%); buy-and-hold {f['hold_return']:+.2%}"
                )
            return None, f"keeps trading: {f['net_return']:+.2%} after costs over {f['cycles']} cycles (always-flat 0.00%)"
        if not rules.promote:
            return None, "stays in shadow mode: promotion from the ledger is off ([models] promote_from_shadow)"
        if kind not in PROMOTABLE:
            return None, "stays in shadow mode: live scoring demoted it"
        failed = []
        if f["fills"] < rules.min_trades:
            failed.append(f"{f['fills']} fills < {rules.min_trades}")
        if f["dsr"] < rules.min_dsr:
            failed.append(f"DSR {f['dsr']:.3f} < {rules.min_dsr} after {f['n_trials']} configurations")
        if f["psr_vs_hold"] < rules.min_psr:
            failed.append(f"PSR over buy-and-hold {f['psr_vs_hold']:.3f} < {rules.min_psr}")
        figures = (
            f"{f['net_return']:+.2%} after costs over {f['cycles']} cycles (always-flat 0.00%, buy-and-hold "
            f"{f['hold_return']:+.2%}), {f['fills']} fills, DSR {f['dsr']:.3f} after {f['n_trials']} configurations, "
            f"PSR over buy-and-hold {f['psr_vs_hold']:.3f}"
        )
        if failed:
            return None, f"stays in shadow mode: {'; '.join(failed)}"
        return PROMOTED, f"its shadow ledger beat always-flat and buy-and-hold: {figures}"

    def _give(self, shadow: Any, model: str, version: str, verdict: str, why: str, figures: Mapping[str, Any]) -> dict[str, Any]:
        """One verdict, in one transaction: the record, the alert; the event and the change after the commit."""
        book = self.ledgers.books[model]
        last_ts = book.curve[-1][0] if book.curve else 0
        entry = {
            "model": model,
            "version": version,
            "verdict": verdict,
            "why": why,
            "bar_ts": int(last_ts),
            "figures": {k: (round(v, 6) if isinstance(v, float) and math.isfinite(v) else v) for k, v in figures.items()},
        }
        event = events.GateVerdict(model, version, verdict, why, int(last_ts), entry["figures"])
        with self.store.transaction():
            self.standing[model] = entry
            self.since[model] = {"version": version, "cycle": book.cycles}  # the next verdict reads a new record
            self.history.append(entry)
            self._save()
            self.sink.publish(
                "gate",
                {"kind": f"model_{verdict}", **entry},
                event_id=f"gate-{model}-{version}-{verdict}-{last_ts}",
            )
            self.store.after_commit(lambda: self._apply(shadow, entry, event))
        return entry

    @staticmethod
    def _apply(shadow: Any, entry: Mapping[str, Any], event: events.GateVerdict) -> None:
        shadow.apply_verdict(entry["model"], entry["verdict"], entry["why"])
        log.warning("gate_verdict", model=entry["model"], version=entry["version"], verdict=entry["verdict"], why=entry["why"])
        events.publish(event)

    def status(self) -> dict[str, Any]:
        """For /status (`shadow.gate`): the rules, each model's record and state, the recent verdicts."""
        r = self.rules
        return {
            "promote_from_shadow": r.promote,
            "window": r.window,
            "min_cycles": r.min_cycles,
            "min_trades": r.min_trades,
            "min_psr": r.min_psr,
            "min_dsr": r.min_dsr,
            "models": {
                m: {
                    k: (round(v, 6) if isinstance(v, float) and math.isfinite(v) else v)
                    for k, v in {**st, **self.figures(m)}.items()
                }
                for m, st in sorted(self.latest.items())
            },
            "verdicts": self.history[-10:],
        }


def render_gate(status: Mapping[str, Any] | None) -> list[str]:
    """`sigd status` lines: the live gate's rules, each model's record, the last verdicts."""
    if not status:
        return []
    lines = [
        f"live gate (shadow ledgers, {status['window']} cycles, verdict after {status['min_cycles']}; "
        f"promote_from_shadow {'on' if status['promote_from_shadow'] else 'off'}):"
    ]
    for model, st in (status.get("models") or {}).items():
        lines.append(f"  {model:<16} {st['state'].upper():<8} {st['why']}")
    for v in status.get("verdicts") or []:
        lines.append(f"  verdict: {v['model']} {v['version']} {v['verdict'].upper()}: {v['why']}")
    return lines

"""The live gate reads the shadow ledgers: promotion (only when config allows it), demotion,
and "not enough record yet", each verdict one transaction with its figures, an alert in the
real outbox, a bus event, /status and `sigd status` lines; a standing verdict survives a
restart. Real engine, temporary SQLite, the bundled May 2021 tape at 1h (6 symbols).

The models: a planted edge (it knows the sign of the next hour's return) and its mirror image
(always wrong): a record strong or bad enough to judge within a few dozen cycles."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from daemon import config, events
from daemon.alerts.notify import LogChannel
from daemon.alerts.outbox import Outbox
from daemon.commands.status import render_status
from daemon.domain import Bar, Prediction, Side, class_scores
from daemon.market.bars import Buffers
from daemon.store import Store
from daemon.trading.engine import Engine
from daemon.trading.ledgers import ShadowLedgers
from daemon.trading.paper import PaperBroker
from daemon.trading.rebalance import Rebalancer
from daemon.trading.scoring import Shadow, shadow_from_config
from daemon.trading.verdict import KV_VERDICTS, record, render_gate
from tests.engine_parts import ListSink, MomentumPredictor
from tests.trading.test_shadow_ledgers import COST, PPY, SPEC, SYMBOLS, closes_and_bars

N_CYCLES = 40


@dataclass
class Oracle(MomentumPredictor):
    """P(long) from the next hour's return (a planted edge); `wrong` flips its sign."""

    wrong: bool = False
    following: dict[tuple[int, float], float] = field(default_factory=dict)  # (open ts, close) -> next close
    meta: dict[str, Any] | None = None

    def predict(self, windows: Mapping[str, Any], bar_ts: int) -> Prediction:
        last = windows[self.key][-1]
        nxt = self.following.get((int(last[0]), float(last[4])))
        r = 0.0 if nxt is None else nxt / float(last[4]) - 1.0
        r = -r if self.wrong else r
        e = [math.exp(-self.k * r), 1.0, math.exp(self.k * r)]
        probs = tuple(x / sum(e) for x in e)
        side = Side.LONG if r > 0 else Side.SHORT if r < 0 else Side.FLAT
        return Prediction(self.name, self.version, bar_ts, class_scores(probs), side, max(probs), self.threshold)


def oracle(name: str, bars: dict[str, list[Bar]], *, wrong: bool = False, validated: bool = False) -> Oracle:
    following = {(b.ts, b.close): nb.close for s in SYMBOLS for b, nb in zip(bars[s], bars[s][1:])}
    meta = {"validation": {"passed": True, "why": "test", "n_trials": 4}} if validated else None
    return Oracle(name, key="1h", lookback=1, k=300.0, wrong=wrong, following=following, meta=meta)


GATE_CONFIG = """
[exchange]
symbols = [{symbols}]

[models]
promote_from_shadow = {promote}
ledger_window = 48
ledger_min_cycles = {min_cycles}
gate_min_trades = 10
"""


class World:
    """Engine + ledgers + the daemon's Shadow (shadow_from_config) over a temporary SQLite store."""

    def __init__(self, tmp: Path, write_config, predictors: dict[str, Oracle], *, promote: bool, min_cycles: int = 20) -> None:
        text = GATE_CONFIG.format(
            symbols=", ".join(f'"{s}"' for s in SYMBOLS), promote=str(promote).lower(), min_cycles=min_cycles
        )
        self.cfg = config.load(write_config(text))
        self.store = Store(tmp / "gate.sqlite")
        self.outbox = Outbox(self.store, [LogChannel()])
        self.predictors = predictors
        self.rings = Buffers()
        for s in SYMBOLS:
            self.rings.add(s, "1h", 64)
        self.engine = self.build()

    def build(self) -> Engine:
        ledgers = ShadowLedgers(SYMBOLS, SPEC, periods_per_year=PPY, cost_rate=COST, starting_balance=10_000.0)
        engine = Engine(
            store=self.store,
            buffers=self.rings,
            predictors=self.predictors,
            sink=self.outbox,
            broker=PaperBroker(self.store, ListSink(), fee=0.001, slippage=0.0005),
            symbols=SYMBOLS,
            timeframes=("1h",),
            trigger_timeframe="1h",
            wait_for_decision=True,
            rebalancer=Rebalancer(SPEC, timeframe="1h", cost_rate=COST),
            ledgers=ledgers,
        )
        engine.shadow = shadow_from_config(self.cfg, self.predictors, self.outbox, self.store, ledgers)
        return engine

    async def run(self, bars: dict[str, list[Bar]], cycles: range) -> list[int]:
        """Feed the cycles' bars; the decision bar of each cycle."""
        decided = []
        for i in cycles:
            for s in SYMBOLS:
                self.rings.append(bars[s][i])
                await self.engine.on_bar(bars[s][i])
            decided.append(bars[SYMBOLS[0]][i].ts)
        return decided

    def gate_alerts(self) -> list[dict[str, Any]]:
        return [json.loads(r["payload"]) for r in self.store.outbox_rows("log") if r["type"] == "gate"]


def _drain(sub: events.Subscription) -> list[events.Event]:
    out = []
    while not sub.queue.empty():
        e = sub.queue.get_nowait()
        if e is not None:
            out.append(e)
    return out


@pytest.mark.parametrize("promote", [True, False])
async def test_a_shadow_model_whose_ledger_beats_both_baselines_is_promoted_only_when_config_allows(
    tmp_path: Path, write_config, promote: bool
) -> None:
    _, bars = closes_and_bars(N_CYCLES + 2)
    w = World(tmp_path, write_config, {"edge": oracle("edge", bars)}, promote=promote)
    sub = events.BUS.subscribe("test-gate", maxsize=100_000)
    try:
        await w.engine.start()
        assert "edge" in w.engine.shadow.reasons  # no validation block: shadow mode to start with
        decided = await w.run(bars, range(N_CYCLES))
        await asyncio.sleep(0)
        verdicts = [e for e in _drain(sub) if isinstance(e, events.GateVerdict)]
    finally:
        sub.close()
    gate = w.engine.shadow.status()["gate"]
    books = w.engine.ledgers.status()["books"]
    assert books["edge"]["equity"] > books["buy_and_hold"]["equity"] > 0 and books["edge"]["equity"] > 10_000.0
    if not promote:
        assert "edge" in w.engine.shadow.reasons and not w.store.orders() and not w.gate_alerts() and not verdicts
        assert gate["models"]["edge"]["state"] == "shadow"
        assert "promotion from the ledger is off ([models] promote_from_shadow)" in gate["models"]["edge"]["why"]
        await w.engine.close()
        return
    # promoted once, on a record of exactly ledger_min_cycles cycles (judged at the start of the next cycle)
    assert "edge" not in w.engine.shadow.reasons and gate["models"]["edge"]["state"] == "trading"
    [entry] = gate["verdicts"]
    f = entry["figures"]
    book, hold = w.engine.ledgers.books["edge"], w.engine.ledgers.books["buy_and_hold"]
    assert entry["verdict"] == "promoted" and f["cycles"] == 20 and f["n_trials"] == 1
    assert entry["bar_ts"] == book.curve[19][0]  # the 20th cycle of the book's record
    at = decided.index(entry["bar_ts"])
    assert f["dsr"] >= 0.95 and f["psr_vs_hold"] >= 0.95 and f["fills"] >= 10 and f["net_return"] > f["hold_return"]
    assert "beat always-flat and buy-and-hold" in entry["why"]
    # the figures are the ledgers' own record, recomputed here from the book's per-cycle returns
    again = record(np.array(list(book.returns)[:20]), np.array(list(hold.returns)[:20]), sum(list(book.trades)[:20]), 1)
    assert f["dsr"] == pytest.approx(again["dsr"], abs=1e-6) and f["net_return"] == pytest.approx(again["net_return"], abs=1e-6)
    # one alert (the real outbox), one bus event, both with the figures; the record is in the store
    [alert] = w.gate_alerts()
    assert alert["kind"] == "model_promoted" and alert["model"] == "edge" and alert["figures"]["cycles"] == 20
    assert [(v.model, v.verdict, v.bar_ts) for v in verdicts] == [("edge", "promoted", decided[at])]
    assert json.loads(w.store.get_kv(KV_VERDICTS))["standing"]["edge"]["verdict"] == "promoted"
    # it trades from the cycle after the verdict: real paper orders, none before
    orders = w.store.orders()
    assert orders and min(o.bar_ts for o, _ in orders) == decided[at + 2]  # judged in cycle at+1, applied after its commit
    text = "\n".join(render_gate(gate))
    assert "edge" in text and "TRADING" in text and "verdict: edge v1 PROMOTED" in text
    await w.engine.close()

    # a restart on the same state: the standing verdict on the same version still holds
    w.engine = w.build()
    await w.engine.start()
    assert "edge" not in w.engine.shadow.reasons
    await w.engine.close()
    # ... while promote_from_shadow is on: turned off, the model is judged by its artifact again
    w.cfg = dataclasses.replace(w.cfg, models=dataclasses.replace(w.cfg.models, promote_from_shadow=False))
    w.engine = w.build()
    await w.engine.start()
    assert w.engine.shadow.reasons["edge"].startswith("its artifact has no validation block")
    await w.engine.close()


async def test_a_trading_model_whose_ledger_loses_after_costs_is_demoted(tmp_path: Path, write_config) -> None:
    _, bars = closes_and_bars(N_CYCLES + 8)
    w = World(tmp_path, write_config, {"mirror": oracle("mirror", bars, wrong=True, validated=True)}, promote=True)
    await w.engine.start()
    assert "mirror" not in w.engine.shadow.reasons  # validated: it trades
    decided = await w.run(bars, range(N_CYCLES + 6))  # 20 cycles to the demotion, 20 more of new record
    gate = w.engine.shadow.status()["gate"]
    [entry] = gate["verdicts"]
    assert entry["verdict"] == "demoted" and entry["figures"]["net_return"] < 0 and entry["figures"]["cycles"] == 20
    at = decided.index(entry["bar_ts"])
    assert "below always-flat" in entry["why"]
    assert w.engine.shadow.reasons["mirror"].startswith("demoted by the live gate: its shadow ledger lost")
    assert w.engine.shadow.kinds["mirror"] == "ledger_demoted"
    [alert] = w.gate_alerts()
    assert alert["kind"] == "model_demoted" and alert["figures"]["cycles"] == 20
    # from the cycle after the one that committed the demotion: no new exposure (the portfolio's
    # caps may still trim what is held; nothing closes it, as with any model moved to shadow mode)
    held: dict[str, float] = {}
    for o, _ in w.store.orders():
        before = held.get(o.symbol, 0.0)
        held[o.symbol] = before + (o.amount if o.side == "buy" else -o.amount)
        if o.bar_ts > decided[at + 1]:
            assert abs(held[o.symbol]) < abs(before), (o, before)
    assert any(o.bar_ts <= decided[at + 1] for o, _ in w.store.orders())  # it traded before
    # a losing record is not promoted back, even with promotion on: its new record loses too
    mirror = gate["models"]["mirror"]
    assert mirror["state"] == "shadow" and mirror["cycles"] >= 20 and mirror["net_return"] < 0
    assert mirror["why"].startswith("stays in shadow mode: ") and "DSR" in mirror["why"]
    await w.engine.close()


async def test_not_enough_record_yet_gives_no_verdict(tmp_path: Path, write_config) -> None:
    _, bars = closes_and_bars(32)
    models = {"edge": oracle("edge", bars), "mirror": oracle("mirror", bars, wrong=True, validated=True)}
    w = World(tmp_path, write_config, models, promote=True, min_cycles=40)
    await w.engine.start()
    await w.run(bars, range(30))
    gate = w.engine.shadow.status()["gate"]
    assert gate["verdicts"] == [] and not w.gate_alerts()
    for name in models:
        assert gate["models"][name]["why"].startswith("not enough record yet: 29 of 40 cycles"), gate["models"][name]
    assert "edge" in w.engine.shadow.reasons and "mirror" not in w.engine.shadow.reasons
    lines = render_status({"shadow": {"gate": gate}, "healthy": True})
    assert "live gate (shadow ledgers, 48 cycles, verdict after 40; promote_from_shadow on):" in lines
    await w.engine.close()


def test_the_record_starts_again_for_a_new_version(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.sqlite")
    ledgers = ShadowLedgers(SYMBOLS, SPEC, periods_per_year=PPY, cost_rate=COST, starting_balance=10_000.0)
    from daemon.trading.verdict import LedgerGate, Rules

    shadow = Shadow(True, ListSink())
    shadow.gate = LedgerGate(ledgers, store, ListSink(), Rules(window=48, min_cycles=20))
    shadow.review("m", "v1", None)
    book = ledgers._book("m")  # thirty cycles of record under v1
    book.cycles = 30
    book.returns.extend([0.001] * 30)
    ledgers.books["buy_and_hold"].returns.extend([0.0] * 30)
    shadow.gate.review(shadow)
    assert shadow.gate.since["m"] == {"version": "v1", "cycle": 0}  # v1's record: all thirty cycles
    assert shadow.gate.figures("m")["cycles"] == 30
    shadow.review("m", "v2", {"validation": {"passed": True, "n_trials": 7}})
    assert shadow.gate.since["m"] == {"version": "v2", "cycle": 30} and shadow.gate.trials["m"] == 7
    shadow.gate.review(shadow)
    assert shadow.gate.figures("m")["cycles"] == 0 and shadow.gate.latest["m"]["why"].startswith("not enough record yet")
    assert shadow.status()["gate"]["models"]["m"]["version"] == "v2"
    assert "m" not in shadow.reasons


@pytest.mark.parametrize(
    "keys, message",
    [
        ("ledger_window = 5", "models.ledger_window: must be >= 10 decision cycles"),
        ("ledger_window = 48\nledger_min_cycles = 49", "models.ledger_min_cycles: must be within 2..ledger_window (48), got 49"),
        ("promote_from_shadow = 1", "models.promote_from_shadow"),
    ],
)
def test_bad_gate_keys_name_the_key(write_config, keys: str, message: str) -> None:
    with pytest.raises(config.ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        config.load(write_config(f"[models]\n{keys}\n"))

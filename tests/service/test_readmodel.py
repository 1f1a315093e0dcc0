"""The read model's queries over a real SQLite store: live scores, equity curve, markers, why."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

from daemon import config
from daemon.domain import Bar, Fill, Order, OrderStatus, Position, Prediction, Side, Signal
from daemon.service.readmodel import LIVE_FIGURES, ReadModel
from daemon.store import Store
from daemon.trading.scoring import LiveScorer, ModelTarget, Shadow
from daemon.trading.wiring import ledgers_from_config

MIN = 60_000


def _model(tmp_path: Path, write_config) -> tuple[ReadModel, Store]:
    cfg = config.load(write_config("[broker]\nstarting_balance = 1000.0\n"))
    store = Store(tmp_path / "state.sqlite")
    flags = {"paused": False, "halted": True}  # the engine's per-symbol flags, as tests set them
    engine = SimpleNamespace(flags=flags, status=lambda: {"paused": False, "symbols": {"ETH/USDT": flags}})
    # Parts as far as these queries reach: the store and the engine's flags.
    return ReadModel(cfg, SimpleNamespace(store=store, engine=engine), freshness=None), store  # type: ignore[arg-type]


def _prediction(model: str, ts: int, side: Side) -> Prediction:
    return Prediction(model, "v1", ts, {"p_short": 0.2, "p_flat": 0.2, "p_long": 0.6, "return": 0.001}, side, 0.6, 0.5)


def test_models_show_the_live_scorers_figures_at_the_models_horizon(tmp_path: Path, write_config) -> None:
    """The hit rate counts the bar `horizon` bars ahead (not the next one), beside its base rate."""
    read, store = _model(tmp_path, write_config)
    closes = [100, 101, 102, 101, 100, 101, 102]  # 2-bar moves from bars 0..4: up, flat, down, flat, up
    store.add_bars([Bar("ETH/USDT", "1m", i * MIN, c, c, c, c, 1.0) for i, c in enumerate(closes)])
    sides = [Side.LONG, Side.LONG, Side.SHORT, Side.FLAT, Side.SHORT]  # hit, miss, hit, not a call, miss
    for i, side in enumerate(sides):
        store.add_predictions("ETH/USDT", [_prediction("a", i * MIN, side)], 0)
    shadow = Shadow()
    shadow.scorer = LiveScorer(store, "ETH/USDT", {"a": ModelTarget(horizon=2, threshold=0.005, neutral_zone=0.0)})
    shadow.scorer.update()
    read.parts.engine.shadow = shadow
    read.parts.predictors, read.parts.model_dirs = {"a": SimpleNamespace(version="v1", threshold=0.5)}, {}
    [model] = read.models()
    live = model["live"]
    assert set(live) == set(LIVE_FIGURES)
    assert (live["horizon_bars"], live["calls"], live["scored"], live["hit_rate"]) == (2, 4, 5, 0.5)
    # next-bar counting would read 1/4 here (bar 1 rose, bar 2 fell, bar 4 rose)
    assert live["hit_base_rate"] is not None and 0.0 <= live["hit_base_rate"] <= 1.0
    for k in ("accuracy", "flat_accuracy", "persistence_accuracy"):
        assert isinstance(live[k], float) and 0.0 <= live[k] <= 1.0, k
    assert live["flat_accuracy"] == 0.4  # labels at 2 bars and a 0.5 % threshold: up, flat, down, flat, up
    json.dumps(read.models(), allow_nan=False)  # the page parses it: no NaN ever
    unscored = ReadModel(read.cfg, read.parts, freshness=None)  # type: ignore[arg-type]
    read.parts.predictors["b"] = SimpleNamespace(version="v1", threshold=0.5)
    assert unscored.models()[1]["live"] == {**dict.fromkeys(LIVE_FIGURES), "scored": 0, "calls": 0}


def test_equity_curve_markers_and_why(tmp_path: Path, write_config) -> None:
    read, store = _model(tmp_path, write_config)
    for f in (Fill("o1", "ETH/USDT", "buy", 100.0, 1.0, 0.1, 1 * MIN), Fill("o2", "ETH/USDT", "sell", 110.0, 1.0, 0.1, 2 * MIN)):
        store.add_fill(f)
    assert read.equity_curve() == [{"ts": MIN, "equity": 999.9}, {"ts": 2 * MIN, "equity": 1009.8}]
    store.add_predictions("ETH/USDT", [_prediction("a", 3 * MIN, Side.LONG)], 0)
    decision = read.last_decision("ETH/USDT")
    assert decision["why"] == "no signal: drawdown halt (resume to lift it)"
    assert decision["models"]["a"]["probs"] == [0.2, 0.2, 0.6] and decision["models"]["a"]["scores"] == {"return": 0.001}
    store.put_position(Position("ETH/USDT", 0.5, 100.0), 0)
    read.parts.engine.flags["halted"] = False
    assert read.last_decision("ETH/USDT")["why"] == "no signal: a LONG 0.600 vs 0.500; holding LONG 0.5"
    read.parts.engine.shadow = SimpleNamespace(reasons={"a": "no passing validation"})
    assert read.last_decision("ETH/USDT")["why"] == (
        "no signal: every model is in shadow mode; a LONG 0.600 vs 0.500 (shadow mode: not traded); holding LONG 0.5"
    )
    read.parts.engine.shadow.reasons = {}
    signal_id = store.add_signal(Signal("ETH/USDT", 3 * MIN, Side.LONG, 0.6, 105.0, "confidence", ("a LONG",)), 1.0, 0)
    assert read.last_decision("ETH/USDT")["why"] == "signal LONG by confidence: a LONG"
    ids = [m["id"] for m in read.markers("ETH/USDT", 0)]
    assert ids == ["fill-o1", "fill-o2", f"signal-{signal_id}"]


async def test_every_control_channel_refreshes_the_pages_at_once(tmp_path: Path, write_config) -> None:
    # Telegram's /pause calls the same DaemonControls as HTTP and the dashboard: the event that
    # refreshes the pages comes from the control itself, whichever channel called it.
    from daemon import events
    from daemon.events import ControlApplied
    from daemon.service.controls import DaemonControls

    cfg = config.load(write_config('[exchange]\nsymbols = ["ETH/USDT", "SOL/USDT"]\n'))
    calls: list[tuple[str, str | None]] = []

    def pause(symbol: str | None = None) -> None:
        calls.append(("pause", symbol))

    def resume(symbol: str | None = None) -> None:
        calls.append(("resume", symbol))

    engine = SimpleNamespace(pause=pause, resume=resume, status=lambda: {"paused": False, "symbols": {}})
    controls = DaemonControls(cfg, SimpleNamespace(engine=engine, store=Store(tmp_path / "s.sqlite")), None)  # type: ignore[arg-type]
    sub = events.BUS.subscribe("test")
    try:
        controls.pause("SOL/USDT")
        controls.resume()
        got = [sub.queue.get_nowait(), sub.queue.get_nowait()]
    finally:
        events.BUS.unsubscribe(sub)
    assert calls == [("pause", "SOL/USDT"), ("resume", None)]
    assert got == [ControlApplied("pause", "SOL/USDT"), ControlApplied("resume", "all")]


def test_the_book_ledgers_orders_with_reasons_and_an_equity_curve_without_fills(tmp_path: Path, write_config) -> None:
    """What the dashboard's Book panel and equity chart get: every paper ledger beside always-flat
    and buy-and-hold, the newest orders with their signal's reason, an equity point at the newest close."""
    read, store = _model(tmp_path, write_config)
    ledgers = ledgers_from_config(read.cfg)
    for i, (close, side) in enumerate([(100.0, Side.LONG), (110.0, Side.LONG), (99.0, Side.SHORT)]):
        store.add_bars([Bar("ETH/USDT", "1m", i * MIN, close, close, close, close, 1.0)])
        ledgers.on_cycle(i * MIN, {"ETH/USDT": close}, {"ETH/USDT": [_prediction("a", i * MIN, side)]})
    flags = read.parts.engine.flags
    read.parts.engine.status = lambda: {
        "paused": False,
        "symbols": {"ETH/USDT": flags},
        "ledgers": ledgers.status(),
        "rebalance": None,
    }
    read.parts.broker, read.parts.last_close = SimpleNamespace(position=store.get_position), lambda symbol: 99.0
    read.parts.engine.shadow = Shadow()
    # No fill yet: the equity curve is the starting balance at the newest close (was empty).
    assert read.portfolio()["equity_curve"] == [{"ts": 2 * MIN, "equity": 1000.0}]

    signal_id = store.add_signal(Signal("ETH/USDT", MIN, Side.LONG, 0.6, 110.0, "confidence", ("a LONG 0.600 >= 0.500",)), 1.0, 0)
    assert signal_id
    store.put_order(Order("c1", "ETH/USDT", "buy", "market", 0.5, 110.0, MIN), 5)
    store.put_order(Order("c2", "ETH/USDT", "sell", "market", 0.5, 99.0, 2 * MIN), 6)  # a flatten: no signal
    store.set_order_status("c2", OrderStatus.REJECTED, 7, error="insufficient balance")
    book = read.book()
    assert list(book["ledgers"]["books"]) == ["always_flat", "buy_and_hold", "a"]
    a, flat, hold = (book["ledgers"]["books"][n] for n in ("a", "always_flat", "buy_and_hold"))
    assert flat["equity"] == 1000.0 and flat["fills"] == 0
    assert hold["equity"] < 1000.0 and hold["fills"] == 1  # bought once at 100, marked at 99
    assert a["fills"] >= 2 and a["turnover"] > 0 and a["drawdown"] > 0  # long into the fall, then short
    assert [p[0] for p in a["equity_curve"]] == [0, MIN, 2 * MIN]
    assert book["rebalance"] is None
    assert [(o["client_order_id"], o["status"], o["strategy"], o["reasons"], o["error"]) for o in book["orders"]] == [
        ("c2", "rejected", None, [], "insufficient balance"),
        ("c1", "pending", "confidence", ["a LONG 0.600 >= 0.500"], None),
    ]
    json.dumps(book, allow_nan=False)

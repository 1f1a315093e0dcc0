"""The read model's queries over a real SQLite store: live scores, equity curve, markers, why."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from daemon import config
from daemon.domain import Bar, Fill, Position, Prediction, Side, Signal
from daemon.service.readmodel import ReadModel
from daemon.store import Store

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


def test_live_scores_count_calls_in_the_right_direction(tmp_path: Path, write_config) -> None:
    read, store = _model(tmp_path, write_config)
    closes = [100, 101, 100, 99, 100]  # up, down, down, up
    store.add_bars([Bar("ETH/USDT", "1m", i * MIN, c, c, c, c, 1.0) for i, c in enumerate(closes)])
    sides = [Side.LONG, Side.LONG, Side.SHORT, Side.FLAT]  # hit, miss, hit, not a call
    for i, side in enumerate(sides):
        store.add_predictions("ETH/USDT", [_prediction("a", i * MIN, side)], 0)
    store.add_predictions("ETH/USDT", [_prediction("a", 4 * MIN, Side.LONG)], 0)  # no next bar yet: not scored
    assert read.live_scores() == {"a": {"calls": 3, "hit_rate": round(2 / 3, 4)}}


def test_equity_curve_markers_and_why(tmp_path: Path, write_config) -> None:
    read, store = _model(tmp_path, write_config)
    for f in (Fill("o1", "ETH/USDT", "buy", 100.0, 1.0, 0.1, 1 * MIN), Fill("o2", "ETH/USDT", "sell", 110.0, 1.0, 0.1,
                                                                            2 * MIN)):
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
    assert read.last_decision("ETH/USDT")["why"] == ("no signal: every model is in shadow mode; "
                                                     "a LONG 0.600 vs 0.500 (shadow mode: not traded); holding LONG 0.5")
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

    cfg = config.load(write_config("[exchange]\nsymbols = [\"ETH/USDT\", \"SOL/USDT\"]\n"))
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

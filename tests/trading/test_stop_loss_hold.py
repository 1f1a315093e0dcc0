"""The demo's ADA/USDT exit one bar after entry (2021-05-19 11:59 → 12:00, real bundled bars):
a stop-loss, not shared hold state. A risk exit overrides the models' holding period and says
so in its reasons; with the stop off, the same bars keep the position for the hold."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from daemon.domain import Bar, Prediction, Side
from daemon.localexchange import bundled_tape_dir
from daemon.localexchange.tape import read_tape_file
from daemon.store import Store
from daemon.trading.paper import PaperBroker
from strategies.risk import RiskParams
from tests.engine_parts import FixedPredictor, ListSink
from tests.trading.symbol_parts import engine_for, feed_cycles

SYMBOLS = ("ETH/USDT", "ADA/USDT")
ENTRY_TS = 1621425540000  # 2021-05-19T11:59:00Z: the demo's first decision (LONG)
HOLD = 120  # the shipped artifacts' holding period


@dataclass
class LongThenFlat(FixedPredictor):
    """LONG on the entry bar, FLAT before and after it, with the shipped models' 120-bar hold."""

    def predict(self, windows: Mapping[str, Any], bar_ts: int) -> Prediction:
        self.calls.append(bar_ts)
        side = Side.LONG if bar_ts == ENTRY_TS else Side.FLAT
        probs = {Side.SHORT: 0.05, Side.FLAT: 0.05, Side.LONG: 0.05}
        probs[side] = 0.9
        scores = {"p_short": probs[Side.SHORT], "p_flat": probs[Side.FLAT], "p_long": probs[Side.LONG]}
        return Prediction(self.name, self.version, bar_ts, scores, side, 0.9, self.threshold, 0.0, HOLD)


def tape_bars(symbol: str, first: int, count: int) -> list[Bar]:
    """`count` real 1m bars of the bundled 2021 tape from `first` on."""
    path = bundled_tape_dir("2021-05") / f"{symbol.replace('/', '_')}-1m.csv.gz"
    rows = read_tape_file(path, "1m")
    rows = rows[rows[:, 0] >= first][:count]
    return [Bar(symbol, "1m", int(r[0]), *map(float, r[1:6])) for r in rows]


async def run(tmp_path: Path, stop_loss: float) -> list[dict[str, Any]]:
    store, sink = Store(tmp_path / "sigd.sqlite"), ListSink()
    predictors = {"mtf": LongThenFlat("mtf", "m1"), "cnn": LongThenFlat("cnn", "c1")}
    engine, buffers, _ = engine_for(
        tmp_path,
        symbols=SYMBOLS,
        predictors=predictors,
        store=store,
        sink=sink,
        broker=PaperBroker(store, sink, fee=0.001, slippage=0.0005),
        risk_params=RiskParams(stop_loss=stop_loss, take_profit=0.04, cooldown_bars=3),
    )
    await engine.start()
    # Warm-up bars before the entry so the windows are full; the entry bar; then 5 bars of sell-off.
    start = ENTRY_TS - 5 * 60_000
    await feed_cycles(engine, buffers, {s: tape_bars(s, start, 11) for s in SYMBOLS})
    await engine.close()
    return sink.of("signal")


def of(signals: list[dict[str, Any]], symbol: str) -> list[dict[str, Any]]:
    return [s for s in signals if s["symbol"] == symbol]


async def test_the_exit_one_bar_after_entry_is_the_stop_loss(tmp_path: Path) -> None:
    every = await run(tmp_path, stop_loss=0.02)
    signals = of(every, "ADA/USDT")
    assert [(s["bar_ts"], s["side"], s["strategy"]) for s in signals][:2] == [
        (ENTRY_TS, "LONG", "confidence"),
        (ENTRY_TS + 60_000, "FLAT", "risk"),
    ]
    # Entry filled at the next price 1.5943 + 0.05 % slippage; the 12:00 bar's low 1.5565 is 2.42 % under it.
    reasons = signals[1]["reasons"]
    assert reasons[0] == "stop_loss"
    assert reasons[1] == "LONG entry 1.5951, bar low 1.5565: -2.42 % (limit 2.00 %)"
    assert reasons[2] == "risk exit: overrides the holding period"
    # ETH/USDT entered on the same bar with the same models and hold; its 12:00 low stays inside
    # the stop, and ADA's exit (its own trade, its own risk state) does not end ETH's hold.
    assert [(s["bar_ts"], s["side"]) for s in of(every, "ETH/USDT")] == [(ENTRY_TS, "LONG")]


async def test_without_the_stop_the_hold_keeps_the_position(tmp_path: Path) -> None:
    signals = await run(tmp_path, stop_loss=0.0)  # the models say FLAT from 12:00 on; hold is 120 bars
    for symbol in SYMBOLS:
        assert [(s["bar_ts"], s["side"]) for s in of(signals, symbol)] == [(ENTRY_TS, "LONG")], symbol

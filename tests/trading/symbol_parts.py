"""Parts for the multi-symbol engine tests: ring buffers for N symbols, a batch-capable
momentum predictor that records its batch sizes, and a cycle feeder."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from daemon.domain import Bar, Prediction
from daemon.market.bars import Buffers
from daemon.store import Store
from daemon.trading.engine import Engine
from strategies.confidence import ConfidenceStrategy
from strategies.risk import PortfolioLimits, RiskParams
from tests.engine_parts import FixedPredictor, ListSink, MomentumPredictor, series

SYMBOLS = ("ETH/USDT", "SOL/USDT", "XRP/USDT")


def buffers_for(symbols: Sequence[str], capacity: int = 64) -> Buffers:
    """Real ring buffers for every symbol (1m) and the reference (BTC/USDT 1m)."""
    out = Buffers()
    for s in symbols:
        out.add(s, "1m", capacity)
    out.add("BTC/USDT", "1m", capacity)
    return out


class Batched:
    """predict_batch over a predictor's own predict; `batches` records each batch's size."""

    batches: list[int]

    def predict_batch(self, windows_list: Sequence[Mapping[str, Any]], bar_ts_list: Sequence[int]) -> list[Prediction]:
        self.batches.append(len(windows_list))
        return [self.predict(w, ts) for w, ts in zip(windows_list, bar_ts_list)]  # type: ignore[attr-defined]


@dataclass
class BatchMomentum(Batched, MomentumPredictor):
    """MomentumPredictor with predict_batch."""

    batches: list[int] = field(default_factory=list)


@dataclass
class BatchFixed(Batched, FixedPredictor):
    """FixedPredictor with predict_batch."""

    batches: list[int] = field(default_factory=list)


def engine_for(
    tmp_path: Path,
    *,
    symbols: Sequence[str] = SYMBOLS,
    predictors: dict | None = None,
    store: Store | None = None,
    sink: ListSink | None = None,
    broker: Any = None,
    wait: bool = True,
    deadline_ms: int = 250,
    portfolio: PortfolioLimits | None = None,
    risk_params: RiskParams | None = None,
) -> tuple[Engine, Buffers, ListSink]:
    store = store or Store(tmp_path / "sigd.sqlite")
    sink = sink or ListSink()
    buffers = buffers_for(symbols)
    predictors = predictors or {"mtf": BatchMomentum("mtf", "m1"), "cnn": BatchMomentum("cnn", "c1")}
    engine = Engine(
        store=store,
        buffers=buffers,
        predictors=predictors,
        sink=sink,
        symbols=symbols,
        strategies=[ConfidenceStrategy(combine="both", exit_on_flat=False)],
        broker=broker,
        wait_for_decision=wait,
        cycle_deadline_ms=deadline_ms,
        portfolio=portfolio,
        risk_params=risk_params,
        timeframes=("1m",),
    )
    return engine, buffers, sink


def closes_for(symbols: Sequence[str], closes: Sequence[float], start: int) -> dict[str, list[Bar]]:
    """The same close path per symbol, scaled per symbol so that the prices differ."""
    return {s: series([c * (1 + i) for c in closes], start=start, symbol=s) for i, s in enumerate(symbols)}


async def feed_cycles(
    engine: Engine, buffers: Buffers, bars: Mapping[str, list[Bar]], skip: Mapping[str, set[int]] | None = None
) -> None:
    """Bar by bar in time, every symbol at each instant (buffer first, then on_bar), as the feed does."""
    length = max(len(v) for v in bars.values())
    for i in range(length):
        for symbol, rows in bars.items():
            if i < len(rows) and rows[i].ts not in (skip or {}).get(symbol, set()):
                buffers.append(rows[i])
                await engine.on_bar(rows[i])

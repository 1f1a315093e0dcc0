"""A child process for the kill -9 test: a real engine (three symbols, paper broker, the real
outbox) decides three instants of bars on a state file. With `--hold-after N` it stops inside
the cycle's transaction after the N-th signal event is queued, writes `held` next to the state
file and sleeps there until the parent kills it."""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from daemon.alerts.notify import LogChannel
from daemon.alerts.outbox import Outbox
from daemon.store import Store
from daemon.trading.paper import PaperBroker
from strategies.risk import RiskParams
from tests.engine_parts import T0
from tests.trading.symbol_parts import SYMBOLS, BatchFixed, closes_for, engine_for, feed_cycles


class HoldingOutbox(Outbox):
    """The real outbox; the N-th signal event freezes the process inside its transaction."""

    def __init__(self, store: Store, hold_after: int, marker: Path) -> None:
        super().__init__(store, [LogChannel()])
        self.hold_after, self.marker, self.signals = hold_after, marker, 0

    def publish(self, type: str, payload: Mapping[str, Any], event_id: str | None = None) -> str:
        eid = super().publish(type, payload, event_id)
        if type == "signal":
            self.signals += 1
            if self.signals == self.hold_after:
                self.marker.write_text(str(self.store.db.conn.in_transaction))
                time.sleep(60)  # the parent's SIGKILL lands here, mid-cycle
        return eid


async def main(state: Path, hold_after: int) -> None:
    store = Store(state / "sigd.sqlite")
    sink = HoldingOutbox(store, hold_after, state / "held")
    bulls = {"mtf": BatchFixed("mtf"), "cnn": BatchFixed("cnn")}
    engine, buffers, _ = engine_for(
        state,
        store=store,
        sink=sink,
        predictors=bulls,  # type: ignore[arg-type]
        broker=PaperBroker(store, sink, fee=0.0, slippage=0.0),
        risk_params=RiskParams(position_fraction=0.1, max_position=1e9),
    )
    await engine.start()
    await feed_cycles(engine, buffers, closes_for(SYMBOLS, [100.0, 100.0, 100.0], T0))
    await engine.close()
    store.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("state", type=Path)
    parser.add_argument("--hold-after", type=int, default=0)
    args = parser.parse_args()
    asyncio.run(main(args.state, args.hold_after))

"""Every trigger bar gets a decision row: decided ones with their outcome, superseded ones when a
newer bar replaced them, refused ones (SQLite would not take the writes) after bounded retries,
and owed rows once SQLite takes writes again. Real SQLite; failures come from SQLite triggers."""

from __future__ import annotations

import threading
from pathlib import Path

from daemon.health import FAILURES
from daemon.store import Reason, Store
from daemon.trading.engine import COMMIT_ATTEMPTS
from daemon.trading.paper import PaperBroker
from strategies.risk import RiskParams
from tests.engine_parts import ListSink, MomentumPredictor, series
from tests.trading.test_engine import CLOSES, feed, make_engine


def _reasons(engine) -> dict[int, str]:  # type: ignore[no-untyped-def]
    return {r["bar_ts"]: r["reason"] for r in engine.store.decision_rows("ETH/USDT")}


async def test_superseded_and_paused_bars_have_their_rows(tmp_path: Path) -> None:
    gate = threading.Event()
    slow = MomentumPredictor("mtf", "m1", gate=gate)
    engine, buffers, _ = make_engine(tmp_path, predictors={"mtf": slow}, wait=False)
    await engine.start()
    b1, b2, b3, b4, b5 = series([100.0, 101.0, 102.0, 103.0, 104.0])
    await feed(engine, buffers, [b1, b2, b3])  # b1 runs; b2 waits and is replaced by b3
    gate.set()
    await engine.cycles.drain()
    await feed(engine, buffers, [b4])
    await engine.cycles.drain()
    engine.pause()
    await feed(engine, buffers, [b5])
    await engine.close()
    assert slow.calls == [b1.ts, b3.ts, b4.ts, b5.ts]
    assert _reasons(engine) == {
        b1.ts: Reason.DECIDED,
        b2.ts: Reason.SUPERSEDED,
        b3.ts: Reason.DECIDED,
        b4.ts: Reason.DECIDED,
        b5.ts: Reason.PAUSED,
    }
    rows = engine.store.decision_rows("ETH/USDT")
    assert {r["timeframe"] for r in rows} == {"1m"}
    # The key is unique in SQL: a second row for a bar is refused, the first stays.
    assert not engine.store.mark_decided("ETH/USDT", "1m", b2.ts, 0, 0, Reason.DECIDED)
    assert _reasons(engine)[b2.ts] == Reason.SUPERSEDED


async def test_a_refused_decision_is_retried_and_succeeds(tmp_path: Path) -> None:
    engine, buffers, _ = make_engine(tmp_path)
    await engine.start()
    refusals = [1]  # SQLite refuses the first write of the third bar's predictions, then takes it

    def refuse() -> int:
        if refusals[0]:
            refusals[0] -= 1
            return 1
        return 0

    bars = series(CLOSES[:5])
    engine.store.db.conn.create_function("sigd_test_refuse", 0, refuse)
    engine.store.db.conn.execute(
        f"CREATE TEMP TRIGGER flaky BEFORE INSERT ON predictions WHEN NEW.bar_ts = {bars[2].ts} "
        "AND sigd_test_refuse() BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END"
    )
    await feed(engine, buffers, bars)
    await engine.close()
    assert _reasons(engine) == {b.ts: Reason.DECIDED for b in bars}
    assert engine.store.count("predictions", "bar_ts=?", [bars[2].ts]) == 2  # written once, by the retry
    assert engine.decisions == len(bars)


async def test_a_decision_refused_every_time_is_recorded_failed_commit(tmp_path: Path) -> None:
    FAILURES.clear()
    engine, buffers, _ = make_engine(tmp_path)
    await engine.start()
    bars = series(CLOSES[:4])
    await feed(engine, buffers, bars[:1])
    conn = engine.store.db.conn
    # A full disk: neither the decision nor its Reason.FAILED_COMMIT row can be written.
    conn.execute("CREATE TEMP TRIGGER full_p BEFORE INSERT ON predictions BEGIN SELECT RAISE(ABORT, 'disk full'); END")
    conn.execute("CREATE TEMP TRIGGER full_d BEFORE INSERT ON decisions BEGIN SELECT RAISE(ABORT, 'disk full'); END")
    await feed(engine, buffers, bars[1:2])
    assert bars[1].ts not in _reasons(engine) and len(engine.audit.owed) == 1
    assert FAILURES.consecutive["write"] == COMMIT_ATTEMPTS
    assert "failed SQLite" in FAILURES.reason(limit=3) and "disk full" in FAILURES.reason(limit=3)
    # Still full for the next bar's decision, but its row can be written again.
    conn.execute("DROP TRIGGER full_d")
    await feed(engine, buffers, bars[2:3])
    reasons = _reasons(engine)
    assert reasons[bars[1].ts] == Reason.FAILED_COMMIT and reasons[bars[2].ts] == Reason.FAILED_COMMIT and not engine.audit.owed
    row = next(r for r in engine.store.decision_rows("ETH/USDT") if r["bar_ts"] == bars[1].ts)
    assert "disk full" in row["detail"]
    # The disk has room again: the next bar is decided and health is green.
    conn.execute("DROP TRIGGER full_p")
    await feed(engine, buffers, bars[3:])
    await engine.close()
    assert _reasons(engine)[bars[3].ts] == Reason.DECIDED and FAILURES.reason(limit=3) == ""
    assert engine.store.count("predictions", "bar_ts IN (?, ?)", [bars[1].ts, bars[2].ts]) == 0


async def test_a_decision_that_raises_is_recorded_failed_and_not_retried(tmp_path: Path) -> None:
    store = Store(tmp_path / "sigd.sqlite")
    sink = ListSink()

    class BrokenBroker(PaperBroker):
        """A broker with a bug: every order it prepares raises."""

        prepared = 0

        def prepare(self, intent):  # type: ignore[no-untyped-def]
            BrokenBroker.prepared += 1
            raise RuntimeError("bug in prepare")

    engine, buffers, _ = make_engine(tmp_path, store=store, sink=sink, broker=BrokenBroker(store, sink))
    await engine.start()
    bars = series(CLOSES)
    await feed(engine, buffers, bars)
    await engine.close()
    rows = {r["bar_ts"]: r for r in engine.store.decision_rows("ETH/USDT")}
    assert set(rows) == {b.ts for b in bars}  # every trigger bar has its row
    failed = [r for r in rows.values() if r["reason"] == Reason.FAILED]
    assert failed and all("bug in prepare" in r["detail"] for r in failed)
    assert BrokenBroker.prepared == len(failed)  # tried once each: a bug is not retried
    assert {r["reason"] for r in rows.values()} == {Reason.DECIDED, Reason.FAILED}


async def test_bars_that_closed_while_sigd_was_down_are_recorded_missed(tmp_path: Path) -> None:
    store = Store(tmp_path / "sigd.sqlite")
    bars = series(CLOSES[:8])
    engine, buffers, _ = make_engine(tmp_path, store=store)
    await engine.start()
    await feed(engine, buffers, bars[:3])
    await engine.close()
    # Down for four bars: the next start's warm-up stores them, only the bars after reach the engine.
    store.add_bars(bars[3:7])
    again, buffers2, _ = make_engine(tmp_path, store=store)
    await again.start()
    for b in bars[:7]:
        buffers2.append(b)
    await feed(again, buffers2, bars[7:])
    await again.close()
    assert _reasons(again) == {
        **{b.ts: Reason.DECIDED for b in bars[:3]},
        **{b.ts: Reason.MISSED for b in bars[3:7]},
        bars[7].ts: Reason.DECIDED,
    }


async def test_bars_decided_under_a_drawdown_halt_say_so(tmp_path: Path) -> None:
    store = Store(tmp_path / "sigd.sqlite")
    sink = ListSink()
    engine, buffers, _ = make_engine(
        tmp_path,
        store=store,
        sink=sink,
        broker=PaperBroker(store, sink, fee=0.0, slippage=0.0),
        risk_params=RiskParams(position_fraction=0.5, max_drawdown=0.001),
    )
    await engine.start()
    bars = series(CLOSES)
    await feed(engine, buffers, bars)
    await engine.close()
    reasons = [_reasons(engine)[b.ts] for b in bars]
    assert Reason.HALTED in reasons, reasons  # the long position lost more than 0.1 % of equity
    first = reasons.index(Reason.HALTED)
    assert set(reasons[:first]) == {Reason.DECIDED} and set(reasons[first:]) == {Reason.HALTED}

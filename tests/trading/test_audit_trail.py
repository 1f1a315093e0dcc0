"""Every trigger bar gets a decision row: decided ones with their outcome, superseded ones when a
newer bar replaced them, refused ones (SQLite would not take the writes) after bounded retries,
and owed rows once SQLite takes writes again. Real SQLite; failures come from SQLite triggers."""

from __future__ import annotations

import threading
from pathlib import Path

from daemon.health import FAILURES
from daemon.store import DECIDED, FAILED_COMMIT, PAUSED, SUPERSEDED
from daemon.trading.engine import COMMIT_ATTEMPTS
from tests.engine_parts import MomentumPredictor, series
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
    assert _reasons(engine) == {b1.ts: DECIDED, b2.ts: SUPERSEDED, b3.ts: DECIDED, b4.ts: DECIDED, b5.ts: PAUSED}
    rows = engine.store.decision_rows("ETH/USDT")
    assert {r["timeframe"] for r in rows} == {"1m"}
    # The key is unique in SQL: a second row for a bar is refused, the first stays.
    assert not engine.store.mark_decided("ETH/USDT", "1m", b2.ts, 0, 0, DECIDED)
    assert _reasons(engine)[b2.ts] == SUPERSEDED


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
        "AND sigd_test_refuse() BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END")
    await feed(engine, buffers, bars)
    await engine.close()
    assert _reasons(engine) == {b.ts: DECIDED for b in bars}
    assert engine.store.count("predictions", "bar_ts=?", [bars[2].ts]) == 2  # written once, by the retry
    assert engine.decisions == len(bars)


async def test_a_decision_refused_every_time_is_recorded_failed_commit(tmp_path: Path) -> None:
    FAILURES.clear()
    engine, buffers, _ = make_engine(tmp_path)
    await engine.start()
    bars = series(CLOSES[:4])
    await feed(engine, buffers, bars[:1])
    conn = engine.store.db.conn
    # A full disk: neither the decision nor its FAILED_COMMIT row can be written.
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
    assert reasons[bars[1].ts] == FAILED_COMMIT and reasons[bars[2].ts] == FAILED_COMMIT and not engine.audit.owed
    row = next(r for r in engine.store.decision_rows("ETH/USDT") if r["bar_ts"] == bars[1].ts)
    assert "disk full" in row["detail"]
    # The disk has room again: the next bar is decided and health is green.
    conn.execute("DROP TRIGGER full_p")
    await feed(engine, buffers, bars[3:])
    await engine.close()
    assert _reasons(engine)[bars[3].ts] == DECIDED and FAILURES.reason(limit=3) == ""
    assert engine.store.count("predictions", "bar_ts IN (?, ?)", [bars[1].ts, bars[2].ts]) == 0

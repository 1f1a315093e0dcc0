"""The event bus: fan-out after commit, bounded queues, a slow subscriber dropped and counted."""

from __future__ import annotations

import asyncio
import threading

from daemon import events
from daemon.domain import Bar
from daemon.metrics import REGISTRY


def _bar(ts: int) -> events.BarClosed:
    return events.BarClosed.of(Bar("ETH/USDT", "1m", ts, 1.0, 2.0, 0.5, 1.5, 10.0))


async def test_every_subscriber_gets_every_event_in_order() -> None:
    bus = events.Bus()
    a, b = bus.subscribe("a"), bus.subscribe("b")
    for ts in (60_000, 120_000):
        bus.publish(_bar(ts))
    a.close(), b.close()
    got_a = [e.ts async for e in a]
    got_b = [e.to_dict() async for e in b]
    assert got_a == [60_000, 120_000]
    assert got_b[0] == {
        "kind": "bar_closed",
        "symbol": "ETH/USDT",
        "timeframe": "1m",
        "ts": 60_000,
        "open": 1.0,
        "high": 2.0,
        "low": 0.5,
        "close": 1.5,
        "volume": 10.0,
    }


async def test_a_slow_subscriber_is_dropped_and_counted_never_blocking_the_publisher() -> None:
    bus = events.Bus()
    dropped = REGISTRY.counter("sigd_event_subscribers_dropped_total", "").get(subscriber="slow")
    slow, fast = bus.subscribe("slow", maxsize=3), bus.subscribe("fast", maxsize=100)
    for ts in range(10):  # nobody reads `slow`: its queue fills after 3
        bus.publish(_bar(ts))
    assert slow.dropped and bus.subscribers == 1
    assert REGISTRY.counter("sigd_event_subscribers_dropped_total", "").get(subscriber="slow") == dropped + 1
    fast.close()
    assert [e.ts async for e in fast] == list(range(10))
    # The dropped one's iterator ends (it resyncs from the read model on reconnect).
    got = await asyncio.wait_for(_drain(slow), 2)
    assert len(got) <= 3


async def test_publish_from_another_thread_reaches_the_loop() -> None:
    bus = events.Bus()
    sub = bus.subscribe("x")
    t = threading.Thread(target=bus.publish, args=(events.StreamHealth("ETH/USDT 1m", True),))
    t.start(), t.join(2)
    event = await asyncio.wait_for(sub.queue.get(), 2)
    assert event == events.StreamHealth("ETH/USDT 1m", True)


async def _drain(sub: events.Subscription) -> list[events.Event]:
    return [e async for e in sub]


def test_after_commit_runs_after_the_outermost_commit_and_never_after_a_rollback(tmp_path) -> None:
    import pytest

    from daemon.store import Store

    store, ran = Store(tmp_path / "s.sqlite"), []
    store.after_commit(lambda: ran.append("now"))  # no transaction: at once
    with store.transaction():
        store.after_commit(lambda: ran.append("outer"))
        with pytest.raises(RuntimeError), store.transaction():
            store.after_commit(lambda: ran.append("undone"))
            raise RuntimeError("inner block fails")
        with store.transaction():
            store.after_commit(lambda: ran.append("inner"))
        assert ran == ["now"]  # nothing before the commit
    assert ran == ["now", "outer", "inner"]
    with pytest.raises(RuntimeError), store.transaction():
        store.after_commit(lambda: ran.append("rolled back"))
        raise RuntimeError("whole transaction fails")
    assert ran == ["now", "outer", "inner"]
    store.close()

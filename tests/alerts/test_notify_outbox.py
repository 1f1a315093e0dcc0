"""The durable outbox with real webhook receivers on loopback and a temporary SQLite file."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from pathlib import Path

import pytest

from daemon.alerts.notify import Notifier
from daemon.domain import Position, Side
from daemon.metrics import REGISTRY
from daemon.store import Store
from tests.alert_fakes import WebhookReceiver, alerts_config, eventually, signal_payload, webhook

SECRET_A, SECRET_B = "whsec-alpha-0123456789", "whsec-bravo-9876543210"
BAR0 = 1_750_000_020_000


@pytest.fixture
def secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_WH_A", SECRET_A)
    monkeypatch.setenv("TEST_WH_B", SECRET_B)


@pytest.fixture
def store(tmp_path: Path):
    s = Store(tmp_path / "state.sqlite")
    yield s
    s.close()


async def _running(notifier: Notifier) -> asyncio.Task[None]:
    await notifier.start()
    return asyncio.create_task(notifier.run())


async def test_webhook_body_is_signed_and_carries_the_event(secrets: None, store: Store) -> None:
    rx = WebhookReceiver(SECRET_A)
    await rx.start()
    notifier = Notifier(alerts_config(webhooks=(webhook("a", rx.url, "TEST_WH_A"),)), store)
    task = await _running(notifier)
    eid = notifier.publish("signal", signal_payload(BAR0))
    await eventually(lambda: len(rx.received) == 1, what="webhook delivery")
    await notifier.stop(2.0)
    await task
    await rx.stop()
    body = rx.received[0]
    assert rx.bad_signatures == 0
    assert body["id"] == eid and body["type"] == "signal"
    assert (body["symbol"], body["side"], body["bar_ts"], body["price"]) == ("ETH/USDT", "LONG", BAR0, 3120.5)
    assert body["confidence"] == 0.71 and body["model_versions"]["mtf_transformer"] == "v3"
    [row] = store.outbox_rows("webhook:a")
    assert (row["status"], row["attempts"], row["event_id"]) == ("sent", 1, eid)


async def test_signature_is_over_the_exact_body_bytes(secrets: None, store: Store) -> None:
    # A receiver holding the wrong secret rejects the body: the signature really depends on it.
    rx = WebhookReceiver("not-the-secret")
    await rx.start()
    notifier = Notifier(alerts_config(webhooks=(webhook("a", rx.url, "TEST_WH_A"),), max_attempts=2), store)
    task = await _running(notifier)
    notifier.publish("signal", signal_payload(BAR0))
    await eventually(lambda: store.outbox_rows(status="dead"), what="dead letter after 401")
    await notifier.stop(1.0)
    await task
    await rx.stop()
    assert rx.bad_signatures == 1 and rx.received == []  # 401 is permanent: one attempt only


async def test_receiver_down_for_a_while_gets_every_event_once(secrets: None, store: Store) -> None:
    rx = WebhookReceiver(SECRET_A)
    await rx.start()
    await rx.stop()  # keep its port, refuse connections
    notifier = Notifier(alerts_config(webhooks=(webhook("a", rx.url, "TEST_WH_A"),)), store)
    task = await _running(notifier)
    ids = [notifier.publish("signal", signal_payload(BAR0 + i * 60_000)) for i in range(6)]
    await eventually(lambda: store.outbox_rows()[0]["attempts"] >= 3, what="three failed attempts")
    assert not store.outbox_rows(status="dead")
    await rx.start()  # back on the same port
    await eventually(lambda: len(rx.received) >= 6, what="every event after the receiver is back")
    await notifier.stop(2.0)
    await task
    await rx.stop()
    assert rx.ids() == ids  # none lost, no duplicates, ids stable, order kept
    assert [r["bar_ts"] for r in rx.received] == [BAR0 + i * 60_000 for i in range(6)]
    assert {r["status"] for r in store.outbox_rows()} == {"sent"}


async def test_pending_rows_survive_a_restart(secrets: None, tmp_path: Path) -> None:
    rx = WebhookReceiver(SECRET_A)
    await rx.start()
    await rx.stop()
    cfg = alerts_config(webhooks=(webhook("a", rx.url, "TEST_WH_A"),))
    first = Store(tmp_path / "state.sqlite")
    notifier = Notifier(cfg, first)
    ids = [
        notifier.publish("fill", {"symbol": "ETH/USDT", "side": "buy", "price": 3000.0 + i, "amount": 0.1}, event_id=f"fill:{i}")
        for i in range(3)
    ]
    first.close()  # the process dies before any delivery

    await rx.start()
    second = Store(tmp_path / "state.sqlite")
    notifier = Notifier(cfg, second)
    assert notifier.publish("fill", {"symbol": "ETH/USDT"}, event_id="fill:0") == "fill:0"  # idempotent
    task = await _running(notifier)
    await eventually(lambda: len(rx.received) >= 3, what="pending rows after restart")
    await notifier.stop(2.0)
    await task
    await rx.stop()
    assert rx.ids() == ids == ["fill:0", "fill:1", "fill:2"]
    assert rx.received[0]["price"] == 3000.0  # the first publish wins
    second.close()


async def test_failing_channel_never_blocks_the_others(secrets: None, store: Store) -> None:
    down = WebhookReceiver(SECRET_B, status=503)
    hanging = WebhookReceiver(SECRET_B, delay_s=1.0)  # longer than delivery_timeout_s
    good = WebhookReceiver(SECRET_A)
    for rx in (down, hanging, good):
        await rx.start()
    hooks = (
        webhook("down", down.url, "TEST_WH_B"),
        webhook("hang", hanging.url, "TEST_WH_B"),
        webhook("good", good.url, "TEST_WH_A"),
    )
    notifier = Notifier(alerts_config(webhooks=hooks, delivery_timeout_s=0.3), store)
    task = await _running(notifier)
    ids = [notifier.publish("signal", signal_payload(BAR0 + i * 60_000)) for i in range(5)]
    await eventually(lambda: len(good.received) == 5, what="the healthy webhook's deliveries")
    await eventually(lambda: store.outbox_rows("webhook:hang")[0]["last_error"] == "timed out", what="timeout")
    await notifier.stop(0.5)
    await task
    assert good.ids() == ids
    assert all(r["status"] == "pending" for r in store.outbox_rows("webhook:down") + store.outbox_rows("webhook:hang"))
    assert store.outbox_rows("webhook:down")[0]["last_error"] == "webhook:down: HTTP 503"
    for rx in (down, hanging, good):
        await rx.stop()


async def test_dead_letter_after_max_attempts_and_on_permanent_errors(secrets: None, store: Store) -> None:
    flaky = WebhookReceiver(SECRET_A, status=503)
    rejecting = WebhookReceiver(SECRET_B, status=422)
    await flaky.start()
    await rejecting.start()
    hooks = (webhook("flaky", flaky.url, "TEST_WH_A"), webhook("reject", rejecting.url, "TEST_WH_B"))
    notifier = Notifier(alerts_config(webhooks=hooks, max_attempts=3), store)
    dead_before = REGISTRY.counter("sigd_alerts_dead_total", "").get(channel="webhook:flaky")
    task = await _running(notifier)
    notifier.publish("error", {"message": "feed degraded"})
    await eventually(lambda: len(store.outbox_rows(status="dead")) == 2, what="two dead letters")
    await notifier.stop(0.5)
    await task
    await flaky.stop()
    await rejecting.stop()
    assert (flaky.attempts, rejecting.attempts) == (3, 1)
    assert [r["attempts"] for r in store.outbox_rows("webhook:flaky")] == [3]
    assert REGISTRY.counter("sigd_alerts_dead_total", "").get(channel="webhook:flaky") == dead_before + 1
    assert notifier.outbox.depth()["webhook:flaky"] == {"pending": 0, "dead": 1}
    assert 'sigd_outbox_depth{channel="webhook:flaky",status="dead"} 1.0' in REGISTRY.render()


async def test_rate_limited_receiver_gets_retry_after_respected(secrets: None, store: Store) -> None:
    rx = WebhookReceiver(SECRET_A, throttle=1)
    await rx.start()
    notifier = Notifier(alerts_config(webhooks=(webhook("a", rx.url, "TEST_WH_A"),)), store)
    task = await _running(notifier)
    eid = notifier.publish("signal", signal_payload(BAR0))
    await eventually(lambda: rx.received, what="delivery after a 429")
    await notifier.stop(1.0)
    await task
    await rx.stop()
    assert rx.ids() == [eid] and rx.attempts == 2
    assert rx.times[1] - rx.times[0] >= 0.95  # Retry-After: 1 beats the 0.05 s backoff


async def test_type_filters_reserved_keys_and_payload_encoding(secrets: None, store: Store) -> None:
    rx = WebhookReceiver(SECRET_A)
    notifier = Notifier(alerts_config(webhooks=(webhook("a", rx.url, "TEST_WH_A", types=("fill",)),)), store)
    notifier.publish("signal", signal_payload(BAR0))
    assert store.outbox_rows() == []  # the only channel does not take signals
    with pytest.raises(ValueError, match="reserved key"):
        notifier.publish("fill", {"id": 7, "symbol": "ETH/USDT"})
    with pytest.raises(ValueError, match="fill event payload is not JSON data"):
        notifier.publish("fill", {"price": float("nan")})
    position = Position("ETH/USDT", amount=0.5, entry_price=3000.0)
    notifier.publish("fill", {"side": Side.LONG, "position": position, "reasons": ("a", "b")})
    [row] = store.outbox_rows()
    assert json.loads(row["payload"]) == {
        "side": "LONG",
        "reasons": ["a", "b"],
        "position": {"symbol": "ETH/USDT", "amount": 0.5, "entry_price": 3000.0, "realized_pnl": 0.0, "fees": 0.0},
    }


async def test_drain_delivers_what_is_due_then_stops(secrets: None, store: Store) -> None:
    rx = WebhookReceiver(SECRET_A, delay_s=0.05)
    await rx.start()
    notifier = Notifier(alerts_config(webhooks=(webhook("a", rx.url, "TEST_WH_A"),)), store)
    task = await _running(notifier)
    for i in range(4):
        notifier.publish("signal", signal_payload(BAR0 + i * 60_000))
    assert await notifier.stop(5.0) is True
    await asyncio.wait_for(task, 1.0)
    await rx.stop()
    assert len(rx.received) == 4


def test_signature_helper_matches_an_independent_hmac() -> None:
    from daemon.alerts.webhook import sign, verify

    body = json.dumps({"id": "x", "type": "signal"}).encode()
    expected = "sha256=" + hmac.new(b"k3y-value", body, hashlib.sha256).hexdigest()
    assert sign("k3y-value", body) == expected
    assert verify("k3y-value", body, expected) and not verify("k3y-value", body + b" ", expected)


async def test_an_unbounded_retry_after_still_reschedules_the_row(secrets: None, store: Store) -> None:
    # float("1e400") is inf: the row must be rescheduled (within max_age_s), not crash the worker.
    rx = WebhookReceiver(SECRET_A, throttle=1, retry_after="1e400")
    await rx.start()
    notifier = Notifier(alerts_config(webhooks=(webhook("a", rx.url, "TEST_WH_A"),), max_age_s=60.0), store)
    task = await _running(notifier)
    notifier.publish("signal", signal_payload(BAR0))
    await eventually(lambda: store.outbox_rows()[0]["attempts"] == 1, what="the 429 recorded as one attempt")
    [row] = store.outbox_rows()
    await notifier.stop(0.2)
    await task
    await rx.stop()
    assert row["status"] == "pending" and row["last_error"] == "webhook:a: HTTP 429"
    assert row["next_attempt_ms"] - row["created_ms"] <= 61_000

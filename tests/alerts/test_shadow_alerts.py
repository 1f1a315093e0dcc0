"""Shadow signals on the alert channels: a shadow ledger's side changes (daemon/trading/ledgers.py)
reach only the channels that opted in (`shadow = true`), marked as shadow; real signals are
unchanged. Real webhook receivers and a fake Bot API on loopback, a temporary SQLite file; the
daily summary carries every shadow ledger beside the always-flat and buy-and-hold ones."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect

from daemon import events
from daemon.alerts.notify import Notifier
from daemon.alerts.outbox import Event
from daemon.alerts.telegram import format_event
from daemon.config import ConfigError, SignalWsConfig, TelegramConfig
from daemon.domain import Prediction, Side
from daemon.store import Store
from daemon.trading.ledgers import ShadowLedgers, publish_signals
from strategies.portfolio import PortfolioSpec
from tests.alert_fakes import (
    FakeBotApi,
    RecordingControls,
    WebhookReceiver,
    alerts_config,
    eventually,
    signal_payload,
    telegram,
    webhook,
)

SECRET_IN, SECRET_OUT = "whsec-shadow-in-0123456789", "whsec-shadow-out-9876543210"
TOKEN = "424242:AAH-shadow-test-token-value"
CHAT = 5550001
HOUR = 3_600_000
BAR0 = 1_750_000_000_000 // HOUR * HOUR
SYMBOLS = ("ETH/USDT", "SOL/USDT")
PROBS = {Side.LONG: (0.1, 0.1, 0.8), Side.SHORT: (0.8, 0.1, 0.1), Side.FLAT: (0.1, 0.8, 0.1)}


def prediction(model: str, side: Side, ts: int) -> Prediction:
    p = PROBS[side]
    return Prediction(model, "v1", ts, {"p_short": p[0], "p_flat": p[1], "p_long": p[2]}, side, 0.8, 0.5)


def ledgers() -> ShadowLedgers:
    spec = PortfolioSpec(long_short=True, max_weight=0.5, gross_cap=1.0, net_cap=1.0)
    return ShadowLedgers(SYMBOLS, spec, periods_per_year=8760, cost_rate=0.001, starting_balance=1000.0, by_side=True)


# Per cycle: closes, then each model's call per symbol. "alpha" trades, "beta" is in shadow mode.
CYCLES: list[tuple[dict[str, float], dict[str, dict[str, Side]]]] = [
    (
        {"ETH/USDT": 100.0, "SOL/USDT": 10.0},
        {"alpha": {"ETH/USDT": Side.LONG, "SOL/USDT": Side.FLAT}, "beta": {"ETH/USDT": Side.FLAT, "SOL/USDT": Side.SHORT}},
    ),
    (
        {"ETH/USDT": 110.0, "SOL/USDT": 9.0},
        {"alpha": {"ETH/USDT": Side.LONG, "SOL/USDT": Side.FLAT}, "beta": {"ETH/USDT": Side.FLAT, "SOL/USDT": Side.SHORT}},
    ),
    (
        {"ETH/USDT": 104.5, "SOL/USDT": 9.5},
        {"alpha": {"ETH/USDT": Side.SHORT, "SOL/USDT": Side.FLAT}, "beta": {"ETH/USDT": Side.FLAT, "SOL/USDT": Side.FLAT}},
    ),
]
# The side changes those calls make: (model, symbol, cycle, side).
EXPECTED = [
    ("alpha", "ETH/USDT", 0, "LONG"),
    ("beta", "SOL/USDT", 0, "SHORT"),
    ("alpha", "ETH/USDT", 2, "SHORT"),
    ("beta", "SOL/USDT", 2, "FLAT"),
]


def run_cycles(books: ShadowLedgers, notifier: Notifier, store: Store) -> None:
    """What the engine does per cycle: advance the books, save them and queue their signals in one commit."""
    for i, (closes, calls) in enumerate(CYCLES):
        ts = BAR0 + i * HOUR
        preds = {s: [prediction(m, calls[m][s], ts) for m in sorted(calls)] for s in SYMBOLS}
        signals = books.on_cycle(ts, closes, preds)
        with store.transaction():
            books.save(store)
            publish_signals(notifier, store, signals, shadowed={"beta": "failed the gate"})


@pytest.fixture
def store(tmp_path: Path):
    s = Store(tmp_path / "state.sqlite")
    yield s
    s.close()


@pytest.fixture
def secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_WH_IN", SECRET_IN)
    monkeypatch.setenv("TEST_WH_OUT", SECRET_OUT)
    monkeypatch.setenv("TEST_TG_TOKEN", TOKEN)


async def test_only_opted_in_channels_get_shadow_signals_marked_as_shadow(secrets: None, store: Store) -> None:
    opted, plain = WebhookReceiver(SECRET_IN), WebhookReceiver(SECRET_OUT)
    bot = FakeBotApi(TOKEN)
    for server in (opted, plain, bot):
        await server.start()
    cfg = alerts_config(
        webhooks=(replace(webhook("opted", opted.url, "TEST_WH_IN"), shadow=True), webhook("plain", plain.url, "TEST_WH_OUT")),
        telegram=replace(telegram(bot.base_url, CHAT, ()), shadow=True),
    )
    notifier = Notifier(cfg, store)
    await notifier.start()
    task = asyncio.create_task(notifier.run())
    real = notifier.publish("signal", signal_payload(BAR0), event_id=f"signal-{BAR0}")
    run_cycles(ledgers(), notifier, store)
    await eventually(lambda: len(opted.received) == 1 + len(EXPECTED), what="the opted-in webhook's deliveries")
    await eventually(lambda: len(bot.replies_to(CHAT)) == 1 + len(EXPECTED), what="the Telegram messages")
    await eventually(lambda: len(plain.received) == 1, what="the plain webhook's real signal")
    await notifier.stop(2.0)
    await task
    for server in (opted, plain, bot):
        await server.stop()

    assert opted.bad_signatures == plain.bad_signatures == 0
    # The real signal is the same body on both webhooks, with no shadow marker.
    [plain_body] = plain.received
    assert plain_body == opted.received[0] and plain_body["id"] == real and "shadow" not in plain_body
    assert store.outbox_rows("webhook:plain")[0]["type"] == "signal" and len(store.outbox_rows("webhook:plain")) == 1
    shadow = opted.received[1:]
    assert {b["type"] for b in shadow} == {"shadow_signal"} and all(b["shadow"] is True for b in shadow)
    got = [(b["model"], b["symbol"], (b["bar_ts"] - BAR0) // HOUR, b["side"]) for b in shadow]
    assert sorted(got) == sorted(EXPECTED)
    states = {b["model"]: b["state"] for b in shadow}
    assert states == {"alpha": "trading", "beta": "shadow"}
    reversal = next(b for b in shadow if b["model"] == "alpha" and b["side"] == "SHORT")
    assert reversal["weight"] == pytest.approx(-0.5) and reversal["prev_weight"] > 0 and reversal["price"] == 104.5
    assert reversal["id"] == f"shadow_signal-alpha-ETH/USDT-{BAR0 + 2 * HOUR}"
    texts = bot.replies_to(CHAT)
    assert texts[0].startswith("sigd LONG ETH/USDT @ 3120.5")  # the real signal: unchanged text
    assert all(t.startswith("SHADOW sigd ") for t in texts[1:])
    assert any(t.startswith("SHADOW sigd alpha would go SHORT ETH/USDT @ 104.5 (paper weight") for t in texts)


async def test_shadow_signals_are_idempotent_and_pushed_on_the_bus(store: Store) -> None:
    notifier = Notifier(replace(alerts_config(), log=True), store)  # the log channel never takes them
    sub = events.BUS.subscribe("test")
    try:
        run_cycles(ledgers(), notifier, store)
        await asyncio.sleep(0.05)
        seen = []
        while not sub.queue.empty():
            e = sub.queue.get_nowait()
            if isinstance(e, events.ShadowSignal):
                seen.append((e.model, e.symbol, e.side))
    finally:
        sub.close()
    assert sorted(seen) == sorted((m, s, side) for m, s, _, side in EXPECTED)
    assert store.outbox_rows("log") == []
    ev = events.ShadowSignal("alpha", "trading", "ETH/USDT", BAR0, "LONG", 0.5, 0.0, 100.0)
    assert notifier.publish(ev.kind, ev.payload(), ev.event_id) == notifier.publish(ev.kind, ev.payload(), ev.event_id)


async def test_signal_websocket_streams_shadow_signals_only_when_opted_in(store: Store) -> None:
    for opted_in in (True, False):
        cfg = alerts_config(signal_ws=SignalWsConfig(enabled=True, port=0, shadow=opted_in))
        notifier = Notifier(cfg, store)
        await notifier.start()
        task = asyncio.create_task(notifier.run())
        ws = notifier.channel("signal_ws")
        async with connect(ws.url) as client:
            await eventually(lambda n=notifier: n.status()["signal_ws_clients"] == 1, what="client")
            ev = events.ShadowSignal("beta", "shadow", "SOL/USDT", BAR0 + (0 if opted_in else HOUR), "SHORT", -0.5, 0.0, 10.0)
            notifier.publish(ev.kind, ev.payload(), ev.event_id)
            real = notifier.publish("signal", signal_payload(BAR0 + (0 if opted_in else HOUR)))
            got = [json.loads(await asyncio.wait_for(client.recv(), 5)) for _ in range(2 if opted_in else 1)]
        await notifier.stop(1.0)
        await task
        if opted_in:
            assert [g["type"] for g in got] == ["shadow_signal", "signal"] and got[0]["shadow"] is True
        else:
            assert [g["id"] for g in got] == [real]


def test_telegram_text_of_a_shadow_signal() -> None:
    ev = events.ShadowSignal("beta", "shadow", "SOL/USDT", BAR0, "SHORT", -0.5, 0.0, 10.25)
    text = format_event(Event(ev.event_id, ev.kind, ev.payload(), 0))
    assert text.splitlines()[0] == "SHADOW sigd beta would go SHORT SOL/USDT @ 10.25 (paper weight 0 -> -0.5)"
    assert "state: shadow" in text and "shadow: True" not in text


@pytest.mark.parametrize(
    "toml, key",
    [
        ('[alerts.signal_ws]\nshadow = "yes"\n', "alerts.signal_ws.shadow"),
        ('[alerts.telegram]\ntypes = ["signal", "shadow_signal"]\n', "alerts.telegram.types"),
        ('[[alerts.webhooks]]\nurl = "http://127.0.0.1:9/h"\ntypes = ["shadow_signal"]\n', "alerts.webhooks"),
    ],
)
def test_bad_shadow_keys_name_the_key(write_config, toml: str, key: str) -> None:
    from daemon import config

    with pytest.raises(ConfigError, match=key.replace(".", r"\.").replace("[", r"\[")):
        config.load(write_config(toml))


def test_shadow_keys_load_from_toml(write_config) -> None:
    from daemon import config

    cfg = config.load(
        write_config(
            "[alerts.telegram]\nshadow = true\n[alerts.signal_ws]\nshadow = true\n"
            '[[alerts.webhooks]]\nname = "ops"\nurl = "http://127.0.0.1:9/h"\nshadow = true\n'
            '[[alerts.webhooks]]\nname = "quiet"\nurl = "http://127.0.0.1:9/q"\n'
        )
    )
    assert cfg.alerts.telegram.shadow and cfg.alerts.signal_ws.shadow
    assert [w.shadow for w in cfg.alerts.webhooks] == [True, False]
    assert TelegramConfig().shadow is False and SignalWsConfig().shadow is False


class LedgerControls(RecordingControls):
    """RecordingControls whose status carries the shadow ledgers as /status does."""

    def __init__(self, books: ShadowLedgers) -> None:
        super().__init__()
        self.books = books

    def status(self) -> Mapping[str, Any]:
        return {**super().status(), "ledgers": self.books.status()}


async def test_daily_summary_shows_each_shadow_ledger_beside_the_baselines(store: Store) -> None:
    books = ledgers()
    notifier = Notifier(replace(alerts_config(), log=True), store)
    run_cycles(books, notifier, store)
    await notifier.start(LedgerControls(books))
    notifier.publish_daily_summary(dt.date(2025, 6, 15))
    [row] = store.outbox_rows("log")
    payload = json.loads(row["payload"])
    expected = books.status()["books"]
    assert set(payload["ledgers"]) == {"alpha", "beta", "always_flat", "buy_and_hold"}
    for name, figures in payload["ledgers"].items():
        for key in ("equity", "pnl", "drawdown", "max_drawdown"):
            assert figures[key] == pytest.approx(expected[name][key])
    # alpha: half its equity long ETH 100 -> 110 -> 104.5 (+50, then about -27), less costs.
    assert 15 < payload["ledgers"]["alpha"]["pnl"] < 30 and payload["ledgers"]["always_flat"]["pnl"] == 0
    assert payload["realized"] == 12.5  # the real PnL stays beside them

    text = format_event(Event(row["event_id"], "daily_summary", payload, 0))
    lines = text.splitlines()
    start = lines.index("shadow ledgers (paper; what each model would have done):")
    names = [line.split(":")[0].strip() for line in lines[start + 1 : start + 5]]
    assert names == ["alpha", "beta", "always_flat", "buy_and_hold"]
    alpha = lines[start + 1]
    assert f"equity {expected['alpha']['equity']:.2f}" in alpha and f"pnl {expected['alpha']['pnl']:+.2f}" in alpha
    assert "drawdown" in alpha and "(max " in alpha
    await notifier.stop(0.1)


async def test_engine_cycles_reach_only_the_opted_in_webhook(secrets: None, tmp_path: Path) -> None:
    """The whole path: the engine's decision cycles on the bundled May 2021 tape (6 symbols, 1h),
    one model in shadow mode, the real Notifier as its sink, two webhook receivers on loopback."""
    from daemon.market.bars import Buffers
    from daemon.trading.engine import Engine
    from daemon.trading.paper import PaperBroker
    from daemon.trading.rebalance import YEAR_MS, Rebalancer
    from daemon.trading.scoring import Shadow
    from tests.engine_parts import MomentumPredictor
    from tests.trading.test_shadow_ledgers import SPEC, closes_and_bars
    from tests.trading.test_shadow_ledgers import SYMBOLS as TAPE_SYMBOLS

    warm, n = 6, 24
    _, bars = closes_and_bars(n)
    opted, plain = WebhookReceiver(SECRET_IN), WebhookReceiver(SECRET_OUT)
    for server in (opted, plain):
        await server.start()
    store = Store(tmp_path / "engine.sqlite")
    notifier = Notifier(
        alerts_config(
            webhooks=(replace(webhook("opted", opted.url, "TEST_WH_IN"), shadow=True), webhook("plain", plain.url, "TEST_WH_OUT"))
        ),
        store,
    )
    await notifier.start()
    task = asyncio.create_task(notifier.run())
    rings = Buffers()
    for s in TAPE_SYMBOLS:
        rings.add(s, "1h", 64)
    books = ShadowLedgers(TAPE_SYMBOLS, SPEC, periods_per_year=YEAR_MS / HOUR, cost_rate=0.0015, starting_balance=10_000.0)
    engine = Engine(
        store=store,
        buffers=rings,
        predictors={"fast": MomentumPredictor("fast", key="1h", lookback=2, k=80.0)},
        sink=notifier,
        broker=PaperBroker(store, notifier),
        symbols=TAPE_SYMBOLS,
        timeframes=("1h",),
        trigger_timeframe="1h",
        wait_for_decision=True,
        rebalancer=Rebalancer(SPEC, timeframe="1h", cost_rate=0.0015),
        ledgers=books,
    )
    engine.shadow = Shadow()
    engine.shadow.demote("fast", "test: in shadow mode")
    await engine.start()
    for i in range(n):
        for s in TAPE_SYMBOLS:
            rings.append(bars[s][i])
            if i >= warm:
                await engine.on_bar(bars[s][i])
    queued = [r for r in store.outbox_rows("webhook:opted") if r["type"] == "shadow_signal"]
    assert queued, "the momentum model changed no side in 18 hours"
    await eventually(
        lambda: sum(b["type"] == "shadow_signal" for b in opted.received) == len(queued),
        what="every shadow signal at the opted-in webhook",
    )
    await engine.close()
    await notifier.stop(2.0)
    await task
    for server in (opted, plain):
        await server.stop()
    shadow = [b for b in opted.received if b["type"] == "shadow_signal"]
    assert all(b["shadow"] is True and b["model"] == "fast" and b["state"] == "shadow" for b in shadow)
    assert not any(b["type"] == "shadow_signal" or "shadow" in b for b in plain.received)
    assert not store.outbox_rows("webhook:plain") or all(r["type"] != "shadow_signal" for r in store.outbox_rows("webhook:plain"))
    # Each symbol's last shadow side is the side of the paper weight the model's book holds now.
    last = {b["symbol"]: b["side"] for b in sorted(shadow, key=lambda b: b["bar_ts"])}
    weights = dict(zip(TAPE_SYMBOLS, books.books["fast"].weights.tolist(), strict=True))
    for symbol, w in weights.items():
        assert last.get(symbol, "FLAT") == ("LONG" if w > 0 else "SHORT" if w < 0 else "FLAT"), symbol
    store.close()

"""Telegram against a fake Bot API on loopback: alerts, commands, allow-list, token hygiene."""

from __future__ import annotations

import asyncio
import io
import traceback
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from daemon import log
from daemon.alerts.notify import Notifier
from daemon.alerts.telegram import TelegramApi, TelegramError
from daemon.alerts.telegram_bot import OFFSET_KEY
from daemon.log import MASK
from daemon.store import Store
from tests.alert_fakes import FakeBotApi, RecordingControls, alerts_config, eventually, signal_payload, telegram

TOKEN = "424242:AAH-planted-telegram-token-value"
OWNER, STRANGER = 5550001, 6660002


@pytest.fixture
def logbuf() -> io.StringIO:
    buf = io.StringIO()
    log.setup("debug", "json", stream=buf)
    return buf


@pytest.fixture
async def bot(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeBotApi]:
    monkeypatch.setenv("TEST_TG_TOKEN", TOKEN)
    api = FakeBotApi(TOKEN)
    await api.start()
    yield api
    await api.stop()


@pytest.fixture
async def running(bot: FakeBotApi, tmp_path: Path) -> AsyncIterator[tuple[Notifier, RecordingControls, Store]]:
    store = Store(tmp_path / "state.sqlite")
    notifier = Notifier(alerts_config(telegram=telegram(bot.base_url, OWNER, (OWNER,))), store)
    controls = RecordingControls()
    await notifier.start(controls)
    task = asyncio.create_task(notifier.run())
    yield notifier, controls, store
    await notifier.stop(1.0)
    await task
    store.close()


async def _ask(bot: FakeBotApi, user: int, text: str, replies_before: int) -> str:
    bot.message(user, text)
    await eventually(lambda: len(bot.replies_to(user)) > replies_before, what=f"reply to {text!r}")
    return bot.replies_to(user)[-1]


async def test_signal_alert_becomes_a_message(bot: FakeBotApi, running: tuple[Notifier, RecordingControls, Store]) -> None:
    notifier, _, store = running
    notifier.publish("signal", signal_payload(1_750_000_020_000))
    await eventually(lambda: bot.replies_to(OWNER), what="alert message")
    text = bot.replies_to(OWNER)[0]
    assert text.startswith("sigd LONG ETH/USDT @ 3120.5 (confidence 0.71)")
    assert "bar_ts: 2025-06-15 15:07:00 UTC" in text and "mtf_transformer" in text
    await eventually(lambda: store.outbox_rows("telegram", "sent"), what="row marked sent")


async def test_commands_from_the_allowed_id(bot: FakeBotApi, running: tuple[Notifier, RecordingControls, Store]) -> None:
    _, controls, store = running
    assert "mode: paper" in await _ask(bot, OWNER, "/status", 0)
    assert "paused" in await _ask(bot, OWNER, "/pause", 1) and controls.paused
    assert await _ask(bot, OWNER, "/resume", 2) == "resumed" and not controls.paused
    assert "realized: 12.5" in await _ask(bot, OWNER, "/pnl", 3)
    assert "entry_price: 3100" in await _ask(bot, OWNER, "/positions", 4)
    assert (await _ask(bot, OWNER, "/signals 2", 5)).count("symbol: ETH/USDT") == 2
    assert "/flat confirm within 60 s" in await _ask(bot, OWNER, "/flat", 6)
    assert controls.flat_calls == 0  # not before the confirmation
    assert "flat: done" in await _ask(bot, OWNER, "/flat@sigd_bot confirm", 7)
    assert controls.flat_calls == 1
    assert "no /flat pending" in await _ask(bot, OWNER, "/flat confirm", 8)  # one confirmation, one flat
    assert controls.flat_calls == 1
    assert store.get_kv(OFFSET_KEY) == str(bot.last_update_id + 1)  # stored before acting


async def test_a_restart_resumes_after_the_stored_offset(bot: FakeBotApi, tmp_path: Path) -> None:
    store = Store(tmp_path / "state.sqlite")
    store.set_kv(OFFSET_KEY, "777")  # what a previous run confirmed
    notifier = Notifier(alerts_config(telegram=telegram(bot.base_url, OWNER, (OWNER,))), store)
    await notifier.start(RecordingControls())
    task = asyncio.create_task(notifier.run())
    await eventually(lambda: bot.offsets_seen, what="a getUpdates call")
    await notifier.stop(1.0)
    await task
    store.close()
    assert bot.offsets_seen[0] == 777


async def test_other_ids_are_ignored_and_logged_without_text(
    bot: FakeBotApi, running: tuple[Notifier, RecordingControls, Store], logbuf: io.StringIO
) -> None:
    _, controls, _ = running
    bot.message(STRANGER, "/pause hush-STRANGER-TEXT")
    bot.message(STRANGER, "/flat")
    bot.message(STRANGER, "/flat confirm")
    bot.message(OWNER, "/status", chat_id=-100123)  # an allowed user in a group still counts
    await eventually(lambda: bot.replies_to(-100123), what="the owner's reply")
    assert not controls.paused and controls.flat_calls == 0
    assert bot.replies_to(STRANGER) == []
    lines = logbuf.getvalue()
    assert lines.count('"telegram_message_ignored"') == 3 and str(STRANGER) in lines
    assert "hush-STRANGER-TEXT" not in lines


async def test_token_never_in_logs_errors_or_rows(bot: FakeBotApi, tmp_path: Path, logbuf: io.StringIO) -> None:
    # 429 with retry_after, then a 500, then success; a second notifier points at a dead port.
    bot.send_failures = [
        (
            429,
            {"ok": False, "error_code": 429, "description": "Too Many Requests: retry after 1", "parameters": {"retry_after": 1}},
        ),
        (500, {"ok": False, "error_code": 500, "description": f"Internal error for bot{TOKEN}"}),
    ]
    store = Store(tmp_path / "state.sqlite")
    cfg = alerts_config(telegram=telegram(bot.base_url, OWNER, (OWNER,)))
    dead_port = alerts_config(telegram=telegram("http://127.0.0.1:9", OWNER, (OWNER,)), max_attempts=2)
    notifiers = [Notifier(cfg, store), Notifier(dead_port, Store(tmp_path / "other.sqlite"))]
    tasks = []
    for n in notifiers:
        await n.start(RecordingControls())
        tasks.append(asyncio.create_task(n.run()))
        n.publish("error", {"message": "feed degraded"})
    await eventually(lambda: bot.replies_to(OWNER), what="delivery after 429 and 500")
    await eventually(lambda: notifiers[1].store.outbox_rows(status="dead"), what="dead letter on a dead port")
    for n, t in zip(notifiers, tasks):
        await n.stop(1.0)
        await t
        n.store.close()
    assert len(bot.send_times) == 3
    assert bot.send_times[1] - bot.send_times[0] >= 0.95  # retry_after honoured
    text = logbuf.getvalue()
    assert "alert_retry" in text and "alert_dead_letter" in text and "telegram_poll_failed" in text
    assert TOKEN not in text
    for name in ("state.sqlite", "state.sqlite-wal", "other.sqlite", "other.sqlite-wal"):
        p = tmp_path / name
        assert not p.exists() or TOKEN.encode() not in p.read_bytes(), name


async def test_api_errors_never_carry_the_token() -> None:
    # aiohttp puts the whole URL (token included) into its invalid-URL error message.
    api = TelegramApi("relative-not-a-url", TOKEN)
    with pytest.raises(TelegramError) as info:
        await api.call("getMe", {})
    await api.close()
    text = "".join(traceback.format_exception(info.value))
    assert "InvalidUrl" in text and MASK in text
    assert TOKEN not in text and info.value.__cause__ is None and info.value.__suppress_context__


async def test_flat_confirmation_expires(bot: FakeBotApi, tmp_path: Path) -> None:
    store = Store(tmp_path / "state.sqlite")
    tg = replace(telegram(bot.base_url, OWNER, (OWNER,)), confirm_s=0.2)
    notifier = Notifier(alerts_config(telegram=tg), store)
    controls = RecordingControls()
    await notifier.start(controls)
    task = asyncio.create_task(notifier.run())
    assert "within 0.2 s" in await _ask(bot, OWNER, "/flat", 0)
    await asyncio.sleep(0.3)
    assert "expired" in await _ask(bot, OWNER, "/flat confirm", 1)
    await notifier.stop(1.0)
    await task
    store.close()
    assert controls.flat_calls == 0


async def test_pause_resume_and_flat_take_a_symbol(bot: FakeBotApi, running) -> None:
    _, controls, _ = running
    assert "paused LTC/USDT" in await _ask(bot, OWNER, "/pause LTC/USDT", 0)
    assert "resumed LTC/USDT" in await _ask(bot, OWNER, "/resume LTC/USDT", 1)
    assert "closes the LTC/USDT position" in await _ask(bot, OWNER, "/flat LTC/USDT", 2)
    assert "flat: done" in await _ask(bot, OWNER, "/flat confirm", 3)
    assert "paused:" in await _ask(bot, OWNER, "/pause", 4)
    assert controls.symbols == [("pause", "LTC/USDT"), ("resume", "LTC/USDT"), ("flat", "LTC/USDT"), ("pause", None)]

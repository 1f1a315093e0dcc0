"""The signal websocket, the log channel, message text, [alerts] config and `sigd check` items."""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import json
from dataclasses import replace
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

from daemon import config, log
from daemon.alerts.notify import Notifier
from daemon.alerts.outbox import Event
from daemon.alerts.telegram import format_event
from daemon.config import ConfigError, SignalWsConfig
from daemon.service.check import run_checks
from daemon.store import Store
from tests.alert_fakes import alerts_config, eventually, signal_payload

BAR0 = 1_750_000_020_000


async def test_signal_websocket_streams_signals_to_connected_clients(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.sqlite")
    cfg = alerts_config(signal_ws=SignalWsConfig(enabled=True, port=0, types=("signal",)))
    notifier = Notifier(cfg, store)
    await notifier.start()
    task = asyncio.create_task(notifier.run())
    ws = notifier.channel("signal_ws")
    notifier.publish("signal", signal_payload(BAR0))  # nobody listening yet: nothing is kept
    await asyncio.sleep(0.1)
    async with connect(ws.url) as a, connect(ws.url) as b:  # type: ignore[attr-defined]
        await eventually(lambda: notifier.status()["signal_ws_clients"] == 2, what="two clients")
        notifier.publish("fill", {"symbol": "ETH/USDT"})  # not a type this channel takes
        eid = notifier.publish("signal", signal_payload(BAR0 + 60_000, side="SHORT"))
        got = [json.loads(await asyncio.wait_for(c.recv(), 5)) for c in (a, b)]
    await notifier.stop(1.0)
    await task
    assert [g["id"] for g in got] == [eid, eid]
    assert got[0]["side"] == "SHORT" and got[0]["bar_ts"] == BAR0 + 60_000 and got[0]["type"] == "signal"
    assert store.outbox_rows("signal_ws") == []  # a live stream: no rows, retries or dead letters
    store.close()


async def test_log_channel_writes_one_line_per_event(tmp_path: Path) -> None:
    buf = io.StringIO()
    log.setup("debug", "json", stream=buf)
    store = Store(tmp_path / "state.sqlite")
    notifier = Notifier(replace(alerts_config(), log=True), store)
    await notifier.start()
    task = asyncio.create_task(notifier.run())
    eid = notifier.publish("signal", signal_payload(BAR0), event_id=f"signal:ETH/USDT:{BAR0}")
    await eventually(lambda: '"alert"' in buf.getvalue(), what="alert log line")
    await notifier.stop(1.0)
    await task
    store.close()
    [line] = [json.loads(x) for x in buf.getvalue().splitlines() if '"alert"' in x]
    assert (line["event_id"], line["type"], line["side"], line["bar_ts"]) == (eid, "signal", "LONG", BAR0)


def test_message_text_for_known_and_unknown_types() -> None:
    fill = format_event(
        Event("f1", "fill", {"side": "buy", "amount": 0.1, "symbol": "ETH/USDT", "price": 3000.25, "fee": 0.3}, 0)
    )
    assert fill == "sigd fill: buy 0.1 ETH/USDT @ 3000.25\nfee: 0.3"
    other = format_event(Event("x", "heartbeat", {"uptime_s": 12}, 0))
    assert other == "sigd heartbeat\nuptime_s: 12"
    partial = format_event(Event("s", "signal", {"side": "LONG"}, 0))
    assert partial.startswith("sigd LONG ? @ ?")  # a missing field shows, it does not raise


def test_alerts_config_from_toml(write_config) -> None:
    path = write_config(
        """
        [alerts]
        max_attempts = 5
        [alerts.telegram]
        enabled = true
        chat_id = 123
        allowed_user_ids = [123, 456]
        [[alerts.webhooks]]
        name = "ops"
        url = "https://hooks.example.com/sigd"
        secret_env = "OPS_SECRET"
        [[alerts.webhooks]]
        name = "backup"
        url = "http://127.0.0.1:9000/hook"
        secret_env = "BACKUP_SECRET"
        types = ["fill"]
        """
    )
    cfg = config.load(path).alerts
    assert cfg.max_attempts == 5 and cfg.telegram.allowed_user_ids == (123, 456)
    assert [w.name for w in cfg.webhooks] == ["ops", "backup"] and cfg.webhooks[1].types == ("fill",)
    assert cfg.signal_ws.enabled and cfg.log  # the defaults: log + signal websocket


@pytest.mark.parametrize(
    ("toml", "key"),
    [
        ("[alerts.telegram]\nenabled = true\n", "alerts.telegram.chat_id"),
        ('[alerts.telegram]\nbase_url = "http://api.telegram.org"\n', "alerts.telegram.base_url"),
        ("[alerts.telegram]\nallowed_user_ids = [-5]\n", "alerts.telegram.allowed_user_ids"),
        ('[[alerts.webhooks]]\nurl = "ftp://x"\n', "alerts.webhooks[0].url"),
        ('[alerts.signal_ws]\nhost = "0.0.0.0"\n', "alerts.signal_ws.host"),
        ("[alerts]\nbackoff_base_s = 0\n", "alerts.backoff_base_s"),
        ('[alerts]\ndaily_summary_utc = "25:00"\n', "alerts.daily_summary_utc"),
        ("[alerts]\nretries = 3\n", "alerts.retries"),
    ],
)
def test_bad_alerts_config_names_the_key(write_config, toml: str, key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace("[", r"\[").replace("]", r"\]")):
        config.load(write_config(toml))


def test_check_reports_missing_alert_secrets(write_config, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("OPS_SECRET", raising=False)
    monkeypatch.delenv("SIGD_TELEGRAM_TOKEN", raising=False)
    path = write_config(
        f"""
        [store]
        path = "{tmp_path / "state.sqlite"}"
        [alerts.telegram]
        enabled = true
        chat_id = 1
        [[alerts.webhooks]]
        name = "ops"
        url = "https://hooks.example.com/sigd"
        secret_env = "OPS_SECRET"
        """
    )
    problems = run_checks(config.load(path))
    assert "alerts.webhooks[ops].secret_env: environment variable OPS_SECRET is not set" in problems
    assert "alerts.telegram.token_env: environment variable SIGD_TELEGRAM_TOKEN is not set" in problems
    monkeypatch.setenv("OPS_SECRET", "s3cret-value")
    monkeypatch.setenv("SIGD_TELEGRAM_TOKEN", "1:abc-token")
    assert run_checks(config.load(path)) == []


async def test_signal_websocket_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    first = Notifier(alerts_config(signal_ws=SignalWsConfig(enabled=True, port=0)), Store(tmp_path / "a.sqlite"))
    await first.start()
    port = first.channel("signal_ws").port
    second = Notifier(alerts_config(signal_ws=SignalWsConfig(enabled=True, port=port)), Store(tmp_path / "b.sqlite"))
    # One line naming the key and, as /proc tells, the process holding the port (this one).
    with pytest.raises(ConfigError, match=rf"alerts.signal_ws.port = {port}: 127.0.0.1:{port} is already in use"):
        await second.start()
    await first.stop(0.1)


async def test_daily_summary_is_published_once_per_day(tmp_path: Path) -> None:
    from daemon.alerts.notify import seconds_until
    from tests.alert_fakes import RecordingControls

    store = Store(tmp_path / "state.sqlite")
    notifier = Notifier(replace(alerts_config(), log=True), store)
    await notifier.start(RecordingControls())
    day = dt.date(2025, 6, 15)
    assert notifier.publish_daily_summary(day) == notifier.publish_daily_summary(day) == "daily_summary:2025-06-15"
    [row] = store.outbox_rows("log")
    assert json.loads(row["payload"]) == {"date": "2025-06-15", "realized": 12.5, "unrealized": -1.25, "fees": 0.75, "trades": 3}
    now = dt.datetime(2025, 6, 15, 23, 30, tzinfo=dt.UTC)
    assert seconds_until("00:00", now) == 1800 and seconds_until("23:30", now) == 86_400
    await notifier.stop(0.5)
    store.close()

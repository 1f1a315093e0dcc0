"""The local exchange, part 2: kline streams through the real ccxt websocket client, and faults."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import ccxt.pro as ccxtpro
import numpy as np
import pytest

from daemon.localexchange import LocalExchange
from daemon.localexchange.seconds import derive_minute
from tests.conftest import REPO
from tests.localexchange.test_localexchange import DAY, HOUR, MINUTE, LocalBinance, tape_rows

START = 1754352000000  # the default start: 2025-08-05T00:00Z


async def watch(ex: LocalBinance, pairs: list[list[str]], stop: asyncio.Event) -> None:
    """Keep ccxt's watch loop going (reconnecting like a daemon would) until `stop`."""
    while not stop.is_set():
        try:
            await asyncio.wait_for(ex.watch_ohlcv_for_symbols(pairs), timeout=0.5)
        except (TimeoutError, ccxtpro.NetworkError):
            continue


async def replay(
    lx: LocalExchange, pairs: list[list[str]], until: Callable[[LocalBinance], bool], **config: object
) -> LocalBinance:
    """Subscribe `pairs` with the clock paused, let it run until `until(ex)`; the client."""
    ex = LocalBinance(lx, **config)
    await ex.load_markets()
    stop = asyncio.Event()
    task = asyncio.create_task(watch(ex, pairs, stop))
    await lx.wait_subscribed(len(pairs))
    lx.resume_clock()
    try:
        async with asyncio.timeout(20):
            while not until(ex):
                await asyncio.sleep(0.01)
    finally:
        lx.pause_clock()
        stop.set()
        await task
        await ex.close()
    return ex


def closes(ex: LocalBinance, symbol: str, tf: str) -> np.ndarray:
    """Closing updates received for (symbol, tf), [n, 6]."""
    return np.array([row for s, i, row in ex.closed_frames if (s, i) == (symbol, tf)]).reshape(-1, 6)


def count(n: int, symbol: str, tf: str) -> Callable[[LocalBinance], bool]:
    """A stop condition: at least `n` closing updates of (symbol, tf) received."""
    return lambda ex: len(closes(ex, symbol, tf)) >= n


async def test_max_speed_1s_1m_closes_equal_the_tape() -> None:
    async with LocalExchange(speed=0, paused=True) as lx:
        pairs = [["ETH/USDT", "1s"], ["ETH/USDT", "1m"], ["BTC/USDT", "1m"]]
        sent: list[tuple[str, int, float]] = []
        lx.pump.close_listeners.append(lambda name, ts, at: sent.append((name, ts, at)))
        ex = await replay(lx, pairs, count(3, "BTCUSDT", "1m"))
        btc_sent = [ts for name, ts, _ in sent if name == "btcusdt@kline_1m"]
        assert btc_sent[:3] == [START, START + MINUTE, START + 2 * MINUTE]  # the close listeners saw them
        eth = lx.markets["ETHUSDT"]
        seconds = closes(ex, "ETHUSDT", "1s")
        assert len(seconds) >= 180 and seconds[0, 0] == START
        assert np.array_equal(np.diff(seconds[:, 0]), np.full(len(seconds) - 1, 1000.0))  # every second, in order
        for row in seconds:
            assert np.allclose(row, eth.closed_bar("1s", int(row[0])), rtol=0, atol=1e-9)
        for sym in ("ETHUSDT", "BTCUSDT"):
            got = closes(ex, sym, "1m")
            want = tape_rows(sym, "1m")
            assert np.array_equal(got, want[np.searchsorted(want[:, 0], START) :][: len(got)])
        minute = seconds[:60]  # the derived seconds of the first minute aggregate to the recorded minute
        rec = tape_rows("ETHUSDT", "1m")[np.searchsorted(tape_rows("ETHUSDT", "1m")[:, 0], START)]
        assert (minute[0, 1], minute[:, 2].max(), minute[:, 3].min(), minute[-1, 4]) == tuple(rec[1:5])
        assert ex.forming_frames > 0


async def test_max_speed_1h_1d_closes_are_aggregated_and_equal_the_recorded_rows() -> None:
    async with LocalExchange(speed=0, paused=True) as lx:
        ex = await replay(lx, [["BTC/USDT", "1h"], ["BTC/USDT", "1d"]], count(2, "BTCUSDT", "1d"))
        for tf, step in (("1h", HOUR), ("1d", DAY)):
            got = closes(ex, "BTCUSDT", tf)
            rec = tape_rows("BTCUSDT", tf)
            assert len(got) >= (48 if tf == "1h" else 2) and got[0, 0] == START
            assert np.allclose(got, rec[np.searchsorted(rec[:, 0], START) :][: len(got)], rtol=0, atol=1e-9)


async def test_real_time_closing_update_comes_at_the_close() -> None:
    async with LocalExchange(speed=1.0, start_ms=START + 5 * MINUTE - 1500, paused=True) as lx:
        arrivals: list[tuple[int, int]] = []

        class Timed(LocalBinance):
            def handle_ohlcv(self, client: object, message: dict) -> None:
                if message["k"]["x"]:
                    arrivals.append((message["E"], lx.now_ms()))
                return super().handle_ohlcv(client, message)

        ex = Timed(lx)
        await ex.load_markets()
        task = asyncio.create_task(ex.watch_ohlcv("BTC/USDT", "1m"))
        await lx.wait_subscribed(1)
        lx.resume_clock()
        await task
        async with asyncio.timeout(10):
            while not arrivals:
                await ex.watch_ohlcv("BTC/USDT", "1m")
        await ex.close()
        event_ms, seen_at = arrivals[0]
        assert event_ms == START + 5 * MINUTE and seen_at >= event_ms  # sent at the close, not before
        assert closes(ex, "BTCUSDT", "1m")[0, 0] == START + 4 * MINUTE


async def test_drop_and_stall_faults() -> None:
    # 3000x (a 1m bar every 20 ms): at max speed a stalled replay would race to the tape's end
    async with LocalExchange(speed=3000, paused=True) as lx:
        ex = LocalBinance(lx)
        await ex.load_markets()
        task = asyncio.create_task(ex.watch_ohlcv("ETH/USDT", "1m"))
        await lx.wait_subscribed(1)
        lx.faults.stall(stream="ethusdt@kline_1m")
        lx.resume_clock()
        with pytest.raises(asyncio.TimeoutError):  # socket open, no frames
            await asyncio.wait_for(asyncio.shield(task), timeout=0.5)
        assert lx.status()["sockets"] == 1 and lx.now_ms() > START + 10 * MINUTE
        lx.faults.resume()
        await asyncio.wait_for(task, timeout=5)
        lx.faults.stall(seconds=0.2)  # a stall for a duration ends by itself
        assert lx.faults.stalled("ethusdt@kline_1m")
        await asyncio.sleep(0.25)
        assert not lx.faults.stalled("ethusdt@kline_1m") and lx.faults.stalls == {}
        lx.faults.drop_websockets()
        with pytest.raises(ccxtpro.NetworkError):
            async with asyncio.timeout(5):
                while True:
                    await ex.watch_ohlcv("ETH/USDT", "1m")
        before = len(ex.closed_frames)
        async with asyncio.timeout(5):  # the next watch reconnects and resubscribes
            while len(ex.closed_frames) == before:
                await ex.watch_ohlcv("ETH/USDT", "1m")
        await ex.close()


async def test_malformed_bad_ohlc_and_skipped_bars() -> None:
    async with LocalExchange(speed=0, paused=True) as lx:
        lx.faults.malformed(count=2, stream="btcusdt@kline_1m", kind="json")
        lx.faults.bad_ohlc(count=1, stream="btcusdt@kline_1m")
        lx.faults.skip_bars(count=3, stream="ethusdt@kline_1m")
        pairs = [["BTC/USDT", "1m"], ["ETH/USDT", "1m"]]
        ex = await replay(lx, pairs, count(10, "ETHUSDT", "1m"))
        btc = closes(ex, "BTCUSDT", "1m")
        garbage = [r for r in btc if np.isnan(r[1:]).any()]
        assert len(garbage) == 2  # the malformed frames (prices "abc", "NaN") arrived as sent
        valid = np.array([r for r in btc if not np.isnan(r[1:]).any()])
        bad = valid[valid[:, 2] < valid[:, 3]]
        assert len(bad) == 1 and bad[0, 0] == START  # the first closing update broke high >= low
        rec = tape_rows("BTCUSDT", "1m")
        good = valid[valid[:, 2] >= valid[:, 3]]
        assert np.array_equal(good, rec[np.isin(rec[:, 0], good[:, 0])]) and good[0, 0] == START + MINUTE
        eth = closes(ex, "ETHUSDT", "1m")
        assert eth[0, 0] == START + 3 * MINUTE  # a gap of three bars...
        client = LocalBinance(lx)
        rest = await client.fetch_ohlcv("ETH/USDT", "1m", since=START, limit=3)  # ...that REST still has
        await client.close()
        assert [r[0] for r in rest] == [START, START + MINUTE, START + 2 * MINUTE]
        assert lx.faults.snapshot()["skip_bars"] == {} and lx.faults.snapshot()["bad_ohlc"] == {}


async def test_subscribe_errors_and_unsubscribe_ack() -> None:
    async with LocalExchange(speed=0, paused=True) as lx:
        ex = LocalBinance(lx)
        await ex.load_markets()
        with pytest.raises(ccxtpro.ExchangeError):
            await asyncio.wait_for(ex.watch_ohlcv("BTC/USDT", "7m"), timeout=5)
        await ex.close()
        ex = LocalBinance(lx)
        await ex.load_markets()
        task = asyncio.create_task(ex.watch_ohlcv("BTC/USDT", "1m"))
        await lx.wait_subscribed(1)
        lx.resume_clock()
        await asyncio.wait_for(task, timeout=5)
        assert await asyncio.wait_for(ex.un_watch_ohlcv("BTC/USDT", "1m"), timeout=5) is True
        assert lx.pump.subscriptions() == []
        await ex.close()


def test_cli_prints_the_url_and_stops_on_sigterm(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), "LX_KEY": "k-123456", "LX_SECRET": "s-very-secret"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "daemon",
            "local-exchange",
            "--port",
            "0",
            "--speed",
            "0",
            "--paused",
            "--api-key-env",
            "LX_KEY",
            "--api-secret-env",
            "LX_SECRET",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO,
    )
    try:
        lines = [proc.stdout.readline() for _ in range(3)]
        assert lines[0].startswith("local exchange listening on http://127.0.0.1:"), lines
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0 and "api key: env LX_KEY/LX_SECRET" in lines[2]
    out = "".join(lines) + out
    assert "s-very-secret" not in out + err
    bad = subprocess.run(
        [sys.executable, "-m", "daemon", "local-exchange", "--tape", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=30,
    )
    assert bad.returncode == 2 and str(tmp_path) in bad.stderr


@pytest.mark.parametrize(
    "flags, says",
    [
        (["--port", "-5"], "--port -5: must be within 0..65535"),
        (["--port", "70000"], "--port 70000: must be within 0..65535"),
        (["--start", "notadate"], "--start 'notadate': not an ISO 8601 instant"),
        (["--balances", "notjson"], "--balances 'notjson': not JSON"),
        (["--speed", "nan"], "speed must be a finite number >= 0"),
        (["--speed", "inf"], "speed must be a finite number >= 0"),
        (["--fault", '{"count": 3}'], '--fault \'{"count": 3}\': expected a JSON object with an "action"'),
        (["--fault", "[1]"], "expected a JSON object"),
    ],
)
def test_cli_bad_flag_is_one_line_naming_it(flags: list[str], says: str) -> None:
    res = subprocess.run(
        [sys.executable, "-m", "daemon", "local-exchange", *flags], capture_output=True, text=True, cwd=REPO, timeout=30
    )
    assert res.returncode == 2 and says in res.stderr and "Traceback" not in res.stderr, res.stderr[-2000:]


async def test_truncated_frame_kills_ccxts_receive_loop_but_not_the_server() -> None:
    # ccxt 4.5.90 raises inside its receive callback on a truncated JSON frame and stops reading
    # that socket: its watch then hangs like a stall. The feed must treat it as one.
    # 600x, not max speed: a hung reader must not let the replay race to the end of the tape.
    async with LocalExchange(speed=600, paused=True) as lx:
        lx.faults.malformed(count=1, stream="btcusdt@kline_1m", kind="text")
        ex = LocalBinance(lx)
        await ex.load_markets()
        task = asyncio.create_task(ex.watch_ohlcv("BTC/USDT", "1m"))
        await lx.wait_subscribed(1)
        lx.resume_clock()
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(task, timeout=1.0)
        # Hold the clock until the fresh client has subscribed.
        lx.pause_clock()
        await ex.close()
        fresh = LocalBinance(lx)
        watch = asyncio.create_task(fresh.watch_ohlcv("BTC/USDT", "1m"))
        await lx.wait_subscribed(1)
        lx.resume_clock()
        rows = await asyncio.wait_for(watch, timeout=5)
        assert rows and lx.faults.snapshot()["applied"]["malformed"] == 1
        await fresh.close()


def write_rows(path: Path, rows: np.ndarray) -> None:
    """A tape file from rows [n, 6]."""
    lines = ["timestamp,open,high,low,close,volume"]
    lines += [f"{int(r[0])},{r[1]:.2f},{r[2]:.2f},{r[3]:.2f},{r[4]:.2f},{r[5]:.8f}" for r in rows]
    path.write_text("\n".join(lines) + "\n")


async def test_a_real_1s_tape_is_used_instead_of_derived_bars(tmp_path: Path) -> None:
    m1 = tape_rows("ETHUSDT", "1m")[:10]
    recorded_1s = np.vstack([derive_minute(row, seed=99, symbol="ETHUSDT") for row in m1])  # "recorded" path
    write_rows(tmp_path / "ETH_USDT-1m.csv", m1)
    write_rows(tmp_path / "ETH_USDT-1s.csv", recorded_1s)
    start = int(m1[0, 0]) + 5 * MINUTE
    async with LocalExchange(tmp_path, start_ms=start, speed=0, paused=True, seed=7) as lx:
        assert not lx.markets["ETHUSDT"].derived_1s
        ex = await replay(lx, [["ETH/USDT", "1s"]], count(30, "ETHUSDT", "1s"))
        got = closes(ex, "ETHUSDT", "1s")
        want = recorded_1s[np.searchsorted(recorded_1s[:, 0], start) :][: len(got)]
        assert np.allclose(got, want, rtol=0, atol=1e-9)
        client = LocalBinance(lx)
        rest = np.array(await client.fetch_ohlcv("ETH/USDT", "1s", since=start - 10_000, limit=10))
        await client.close()
        assert np.allclose(rest, recorded_1s[np.isin(recorded_1s[:, 0], rest[:, 0])], rtol=0, atol=1e-9)

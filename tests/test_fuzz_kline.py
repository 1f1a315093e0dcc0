"""Property-based fuzzing (hypothesis) of the kline frame parser: the ccxt websocket client's
message entry point as sigd guards it (`_Binance.client(...).handle_text_or_binary_message`).
No frame may raise out of it or stop it: every frame ends as a closed bar, a counted bad frame,
or nothing (an update that is not a closing one), and a good frame after any garbage still
parses exactly."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from daemon.config import ExchangeConfig
from daemon.domain import Bar
from daemon.market.exchange import make_client

WS = "ws://127.0.0.1:9/stream/ws"  # never dialled: frames are handed to the client directly
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=12,
)
SYMBOL = "ETHUSDT"  # what a market id maps to before markets are loaded
NUMBER_TEXT = st.floats(min_value=1e-6, max_value=1e7, allow_nan=False).map(lambda f: f"{f:.8f}")


class Listener:
    def __init__(self) -> None:
        self.closed: list[Bar] = []
        self.bad: list[str] = []

    def closed_bar(self, bar: Bar, event_ms: int | None) -> None:
        self.closed.append(bar)

    def bad_frame(self, symbol: str | None, timeframe: str | None, reason: str) -> None:
        self.bad.append(reason)


def kline(t: int, o: str, h: str, l: str, c: str, v: str, closed: bool, s: str = "ETHUSDT", i: str = "1m") -> dict:
    return {
        "e": "kline",
        "E": t + 60_000,
        "s": s,
        "k": {
            "t": t,
            "T": t + 59_999,
            "s": s,
            "i": i,
            "o": o,
            "h": h,
            "l": l,
            "c": c,
            "v": v,
            "x": closed,
            "n": 10,
            "q": "1.0",
            "V": "0.5",
            "Q": "0.5",
            "B": "0",
        },
    }


@st.composite
def mutated_kline(draw: st.DrawFn) -> Any:
    """A kline frame with some fields replaced, removed or retyped."""
    frame = kline(
        draw(st.integers(0, 2**41)) // 60_000 * 60_000,
        *(draw(NUMBER_TEXT) for _ in range(5)),
        closed=draw(st.booleans()),
        s=draw(st.sampled_from(["ETHUSDT", "BTCUSDT", "XYZ", ""])),
        i=draw(st.sampled_from(["1m", "1s", "1h", "1d", "7x", ""])),
    )
    for _ in range(draw(st.integers(0, 3))):
        where = frame["k"] if isinstance(frame.get("k"), dict) and draw(st.booleans()) else frame
        if not where:
            break
        key = draw(st.sampled_from(sorted(where)))
        if draw(st.booleans()):
            del where[key]
        else:
            where[key] = draw(JSON)
    return frame


def _encode(frame: Any, how: str) -> str | bytes:
    text = json.dumps(frame, allow_nan=True)
    return {"text": text, "bytes": text.encode(), "cut": text[: len(text) // 2]}[how]


FRAMES = st.one_of(
    st.binary(max_size=200),
    st.text(max_size=200),
    JSON.map(lambda j: json.dumps(j)),
    st.tuples(mutated_kline(), st.sampled_from(["text", "bytes", "cut"])).map(lambda fh: _encode(*fh)),
)


async def _client() -> tuple[Any, Any, Listener]:
    cfg = ExchangeConfig(enable_rate_limit=False)
    ex_client = make_client(cfg, rest_url="http://127.0.0.1:9/api/v3", ws_url=WS, api_key="k", api_secret="s")
    ex = ex_client.ex
    # Markets are not loaded (no exchange to ask): the parser names a stream by its id then.
    listener = Listener()
    ex.sigd_listener = listener
    return ex_client, ex.client(WS), listener


def test_no_frame_escapes_the_parser_and_good_frames_still_parse() -> None:
    async def main() -> None:
        ex_client, ws, listener = await _client()
        good_t = [0]

        @settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(FRAMES)
        def fuzz(data: str | bytes) -> None:
            closed, bad = len(listener.closed), len(listener.bad)
            ws.handle_text_or_binary_message(data)  # must not raise
            assert len(listener.closed) - closed <= 1 and len(listener.bad) - bad <= 1
            # ...and the parser is still whole: a good closing frame comes out exactly
            good_t[0] += 60_000
            before = len(listener.closed)
            ws.handle_text_or_binary_message(json.dumps(kline(good_t[0], "1.5", "2.5", "1.0", "2.0", "3.25", True)))
            assert listener.closed[before:] == [Bar(SYMBOL, "1m", good_t[0], 1.5, 2.5, 1.0, 2.0, 3.25)]

        fuzz()
        assert listener.bad, "garbage was never reported as a bad frame"
        await ex_client.close()

    asyncio.run(asyncio.wait_for(main(), 60))

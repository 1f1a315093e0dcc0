"""A seeded fault-injection TCP proxy for websocket traffic (tests only).

It sits between the real ccxt client and the local exchange on 127.0.0.1. REST requests pass
through untouched; after a websocket upgrade (a 101 answer, on a fresh or a kept-alive
connection) it parses the server's frames (RFC 6455) and,
with probability `rate` per data frame, does one of:

- `drop`        close both sockets at once
- `half`        send the first half of the frame's bytes, then close both sockets
- `blackhole`   swallow everything in both directions from now on, sockets left open
- `corrupt`     flip bytes inside the payload (invalid JSON or, compressed, an inflate error)
- `truncate`    cut the payload and fix the length header: a well-formed frame of bad JSON
- `skip_frame`  leave one frame out: with permessage-deflate and context takeover, the
                client's inflater loses its shared history (compression-state damage)
- `stall`       hold the server's frames for `stall_s` seconds, then deliver them all

Every decision comes from `random.Random(seed)`, so a failing run repeats. `armed` turns the
faults on and off; `counts` says what was done. Connections end with their sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import struct
from dataclasses import dataclass, field

FAULTS = ("drop", "half", "blackhole", "corrupt", "truncate", "skip_frame", "stall")


@dataclass(eq=False)  # kept in a set: hashed by identity
class _Conn:
    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter
    blackholed: bool = False


@dataclass
class FaultProxy:
    """Listen on an ephemeral loopback port; forward to `target_port`."""

    target_port: int
    seed: int = 0
    rate: float = 0.02
    faults: tuple[str, ...] = FAULTS
    stall_s: float = 2.0
    armed: bool = False
    port: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    compressed_frames: int = 0
    _rng: random.Random = field(init=False)
    _server: asyncio.AbstractServer | None = field(default=None, init=False)
    _conns: set[_Conn] = field(default_factory=set, init=False)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set, init=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    async def start(self) -> FaultProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for conn in list(self._conns):
            _close(conn)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    def url(self, url: str, real_port: int) -> str:
        """`url` of the local exchange, pointed at the proxy instead."""
        return url.replace(f":{real_port}", f":{self.port}", 1)

    # --- connections ----------------------------------------------------------------------------

    async def _accept(self, c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            u_reader, u_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            c_writer.close()
            self._tasks.discard(task)
            return
        conn = _Conn(c_writer, u_writer)
        self._conns.add(conn)
        try:
            up = asyncio.ensure_future(self._pipe(c_reader, conn, to_upstream=True))
            down = asyncio.ensure_future(self._down(u_reader, conn))
            await asyncio.wait([up, down], return_when=asyncio.FIRST_COMPLETED)
            up.cancel()
            down.cancel()
            await asyncio.gather(up, down, return_exceptions=True)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            _close(conn)
            self._conns.discard(conn)
            self._tasks.discard(task)

    async def _pipe(self, reader: asyncio.StreamReader, conn: _Conn, *, to_upstream: bool) -> None:
        writer = conn.upstream if to_upstream else conn.client
        while data := await reader.read(65536):
            if not conn.blackholed:
                writer.write(data)
                await writer.drain()

    async def _down(self, reader: asyncio.StreamReader, conn: _Conn) -> None:
        """Server -> client: HTTP responses as they are until a 101 (the client's HTTP pool may
        upgrade a connection that served REST calls before), then frame by frame, with faults."""
        while data := await reader.read(65536):
            if data.startswith(b"HTTP/1.1 101"):
                while b"\r\n\r\n" not in data:
                    data += await reader.read(65536)
                end = data.index(b"\r\n\r\n") + 4
                conn.client.write(data[:end])
                frames = asyncio.StreamReader()
                frames.feed_data(data[end:])
                feeder = asyncio.ensure_future(_feed(reader, frames))
                try:
                    await self._websocket_down(frames, conn)
                finally:
                    feeder.cancel()
                return
            conn.client.write(data)
            await conn.client.drain()

    async def _websocket_down(self, reader: asyncio.StreamReader, conn: _Conn) -> None:
        while True:
            frame, rsv1, opcode, header_len = await _read_frame(reader)
            self.compressed_frames += rsv1
            fault = self._pick() if opcode in (1, 2) or (opcode == 0 and rsv1) else None
            if conn.blackholed:
                continue
            if fault is None:
                conn.client.write(frame)
            elif fault in ("drop", "half"):
                if fault == "half":
                    conn.client.write(frame[: max(1, len(frame) // 2)])
                    await conn.client.drain()
                _close(conn)
                return
            elif fault == "blackhole":
                conn.blackholed = True
            elif fault == "corrupt":
                conn.client.write(_corrupt(frame, header_len, self._rng))
            elif fault == "truncate":
                conn.client.write(_truncated(frame, header_len, self._rng))
            elif fault == "stall":
                await asyncio.sleep(self.stall_s)
                conn.client.write(frame)
            # skip_frame: nothing is written
            await conn.client.drain()

    def _pick(self) -> str | None:
        if not self.armed or self._rng.random() >= self.rate:
            return None
        fault = self._rng.choice(self.faults)
        self.counts[fault] = self.counts.get(fault, 0) + 1
        return fault


async def _feed(src: asyncio.StreamReader, dst: asyncio.StreamReader) -> None:
    while data := await src.read(65536):
        dst.feed_data(data)
    dst.feed_eof()


async def _read_frame(reader: asyncio.StreamReader) -> tuple[bytes, int, int, int]:
    """One whole frame: (bytes, rsv1 bit, opcode, header length)."""
    head = await reader.readexactly(2)
    rsv1, opcode, masked, n = (head[0] >> 6) & 1, head[0] & 0x0F, head[1] >> 7, head[1] & 0x7F
    ext = b""
    if n == 126:
        ext = await reader.readexactly(2)
        n = struct.unpack(">H", ext)[0]
    elif n == 127:
        ext = await reader.readexactly(8)
        n = struct.unpack(">Q", ext)[0]
    mask = await reader.readexactly(4) if masked else b""
    payload = await reader.readexactly(n)
    return head + ext + mask + payload, rsv1, opcode, 2 + len(ext) + len(mask)


def _corrupt(frame: bytes, header_len: int, rng: random.Random) -> bytes:
    data = bytearray(frame)
    for _ in range(max(1, (len(data) - header_len) // 16)):
        if len(data) > header_len:
            data[rng.randrange(header_len, len(data))] ^= 0xFF
    return bytes(data)


def _truncated(frame: bytes, header_len: int, rng: random.Random) -> bytes:
    """The same frame with a shorter payload and a length header that says so (server frames are unmasked)."""
    payload = frame[header_len:]
    cut = payload[: rng.randrange(0, max(1, len(payload)))]
    n = len(cut)
    length = bytes([n]) if n < 126 else bytes([126]) + struct.pack(">H", n) if n < 65536 else bytes([127]) + struct.pack(">Q", n)
    return bytes([frame[0]]) + length + cut


def _close(conn: _Conn) -> None:
    for w in (conn.client, conn.upstream):
        with contextlib.suppress(Exception):
            w.close()

"""The link between the daemon and its HTTP server process: framed messages over a socket pair.

A frame is a 4-byte big-endian payload length, one byte naming its kind, then the payload:
- EVENT (daemon → server): domain events as JSON texts, one per line, in the order the bus
  published them (the daemon sends them in batches, after the running decision cycle);
- CALL (server → daemon): JSON {"id", "call", "args"} asking for a read or an action;
- REPLY (daemon → server): JSON {"id", "status"}, a newline, then the body (JSON text, or the
  Prometheus text for "metrics"), passed on to the HTTP client as is;
- CONTROL (both ways): JSON, e.g. {"settings": ...}, {"ready": url}, {"resync": true},
  {"counts": ...}.
Events and replies travel on one ordered stream: a reply computed after an event was
published reaches the server after that event, whatever the server does with either.
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
from typing import Any

FRAME = struct.Struct(">IB")
EVENT, CALL, REPLY, CONTROL = b"ECRX"
MAX_FRAME = 512 * 1024 * 1024


class LinkClosed(Exception):
    """The other side went away."""


class Link:
    """One end of the socket pair, on the running loop."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, sock: socket.socket) -> Link:
        """A Link over a connected AF_UNIX stream socket."""
        reader, writer = await asyncio.open_unix_connection(sock=sock, limit=1 << 20)
        return cls(reader, writer)

    def send(self, kind: int, payload: bytes) -> None:
        """Queue one frame (never waits; `buffered` says how much is not yet written)."""
        if self.writer.is_closing():
            raise LinkClosed("the link is closed")
        self.writer.write(FRAME.pack(len(payload), kind))
        self.writer.write(payload)

    def send_json(self, kind: int, obj: Any) -> None:
        """One frame whose payload is `obj` as JSON."""
        self.send(kind, json.dumps(obj, separators=(",", ":"), default=str).encode())

    @property
    def buffered(self) -> int:
        """Bytes queued but not yet taken by the other side."""
        transport = self.writer.transport
        return transport.get_write_buffer_size() if transport is not None and not transport.is_closing() else 0

    async def receive(self) -> tuple[int, bytes]:
        """The next frame's kind and payload; LinkClosed at the end."""
        try:
            n, kind = FRAME.unpack(await self.reader.readexactly(FRAME.size))
            if n > MAX_FRAME:
                raise LinkClosed(f"frame of {n} bytes")
            return kind, await self.reader.readexactly(n)
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            raise LinkClosed(str(exc)) from None

    def close(self) -> None:
        """Close this end."""
        self.writer.close()


def events_payload(texts: list[str]) -> bytes:
    """An EVENT payload: the events' JSON texts, one per line (compact JSON has no raw newline)."""
    return "\n".join(texts).encode()


def split_events(payload: bytes) -> list[str]:
    """The JSON texts of an EVENT payload."""
    return payload.decode().split("\n") if payload else []


def reply(call_id: int, status: int, body: bytes) -> bytes:
    """A REPLY payload."""
    return json.dumps({"id": call_id, "status": status}).encode() + b"\n" + body


def parse_reply(payload: bytes) -> tuple[int, int, bytes]:
    """(id, status, body) of a REPLY payload."""
    head, _, body = payload.partition(b"\n")
    meta = json.loads(head)
    return int(meta["id"]), int(meta["status"]), body

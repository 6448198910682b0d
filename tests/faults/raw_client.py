"""A raw asyncio HTTP/1.1 client for hostile readers: it reads SSE frames as slowly as
asked (with a small receive buffer, so the server's socket fills up instead of the
client's memory), and drops its connection wherever the test says — before, inside or
after the request, with a FIN or a reset.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from typing import Any

import orjson

from tests.support.sse import Frame

SLOW_READ = 2048  # bytes per read for a client with a small receive buffer
FAST_READ = 65536


class RawClient:
    """One connection to a Tether server; `frames` are the event frames read so far."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, read_size: int
    ) -> None:
        self._reader, self._writer = reader, writer
        self._read_size = read_size
        self._raw = bytearray()  # bytes read, not yet de-chunked
        self._body = bytearray()  # de-chunked body, not yet split into frames
        self._ended = False
        self.status = 0
        self.frames: list[Frame] = []
        self.done = False  # saw `data: [DONE]`

    @classmethod
    async def connect(cls, port: int, *, receive_buffer: int | None = None) -> RawClient:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if receive_buffer is not None:  # before connecting, so the window starts small
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        # The stream reader stops reading the socket at 2 x limit.
        size = FAST_READ if receive_buffer is None else SLOW_READ
        reader, writer = await asyncio.open_connection(sock=sock, limit=size)
        return cls(reader, writer, size)

    @staticmethod
    def request(method: str, path: str, body: dict[str, Any] | None = None) -> bytes:
        data = b"" if body is None else orjson.dumps(body)
        head = f"{method} {path} HTTP/1.1\r\nhost: 127.0.0.1\r\n"
        if body is not None:
            head += f"content-type: application/json\r\ncontent-length: {len(data)}\r\n"
        return (head + "\r\n").encode() + data

    async def send(self, data: bytes) -> None:
        self._writer.write(data)
        await self._writer.drain()

    async def read_head(self) -> int:
        """Read the status line and headers; answers the status."""
        while (end := self._raw.find(b"\r\n\r\n")) < 0:
            if not await self._read():
                raise ConnectionError("connection closed before the response head")
        head = bytes(self._raw[:end])
        del self._raw[: end + 4]
        self.status = int(head.split(b" ", 2)[1])
        assert b"transfer-encoding: chunked" in head.lower(), head
        return self.status

    async def next_frame(self) -> Frame | None:
        """The next event frame (keepalive comments skipped); None at `[DONE]` or the end."""
        while not self.done:
            end = self._body.find(b"\n\n")
            if end >= 0:
                block = bytes(self._body[:end])
                del self._body[: end + 2]  # cheap: a bytearray drops its front in place
                if block.startswith(b":"):
                    continue
                if block == b"data: [DONE]":
                    self.done = True
                    return None
                name, data = block.split(b"\n")
                assert name.startswith(b"event: ") and data.startswith(b"data: "), block
                frame = Frame(name[7:].decode(), data[6:])
                self.frames.append(frame)
                return frame
            if self._ended or not await self._fill():
                return None
        return None

    async def read_all(self) -> list[Frame]:
        while await self.next_frame() is not None:
            pass
        return self.frames

    def bytes_read(self) -> int:
        return sum(len(f.data) for f in self.frames)

    def close(self) -> None:
        self._writer.close()

    def reset(self) -> None:
        """Drop the connection with a RST, as a crashed client or a middlebox does."""
        sock = self._writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self._writer.transport.abort()

    async def _read(self) -> bool:
        data = await self._reader.read(self._read_size)
        self._raw += data
        return bool(data)

    async def _fill(self) -> bool:
        """Read and de-chunk until the body grew; False at the end of the body."""
        while True:
            line_end = self._raw.find(b"\r\n")
            if line_end >= 0:
                size = int(self._raw[:line_end], 16)
                if size == 0:
                    self._ended = True
                    return False
                start = line_end + 2
                if len(self._raw) >= start + size + 2:
                    self._body += self._raw[start : start + size]
                    del self._raw[: start + size + 2]
                    return True
            if not await self._read():
                return False

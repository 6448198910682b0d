"""A minimal HTTP/1.1 SSE client for load generation: one connection per stream.

`open_stream(url, body)` sends one request (POST with a JSON body, or GET) with
`Connection: close`, reads the status line and headers, then the body — chunked,
`Content-Length` or close-delimited — and counts SSE frames without parsing them:
frames are split on `\\n\\n` with `bytes.count` over every complete run of frames, so
the per-event cost is a few nanoseconds of C. `: keepalive` comments and
`data: [DONE]` are not events. Times are `time.perf_counter()` seconds:

- `start`: just before connecting; `first`: arrival of the read holding the first
  event frame; `end`: arrival of the end of the body.

It is an `asyncio.Protocol` rather than a pair of streams: one callback per network
read and no `await` per chunk, which keeps the generator far from being the bottleneck.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from typing import cast
from urllib.parse import urlsplit

import orjson

KEEPALIVE = b": keepalive\n\n"
DONE = b"data: [DONE]\n\n"
_ERROR_BODY_LIMIT = 4096


@dataclass(slots=True)
class StreamResult:
    start: float
    status: int = 0
    first: float | None = None
    end: float | None = None
    events: int = 0
    keepalives: int = 0
    done_marker: bool = False
    completed: bool = False
    received: int = 0
    error: str | None = None

    @property
    def ok(self) -> bool:
        """Served to the end: HTTP 200, no error, and a `response.completed` event."""
        return (
            self.status == 200 and self.error is None and self.end is not None and (self.completed)
        )

    @property
    def ttfe(self) -> float | None:
        return None if self.first is None else self.first - self.start

    @property
    def total(self) -> float | None:
        return None if self.end is None else self.end - self.start


@dataclass(frozen=True, slots=True)
class Target:
    """Where streams go: host, port and the request bytes (built once, sent many times)."""

    host: str
    port: int
    request: bytes

    @classmethod
    def build(
        cls,
        url: str,
        body: object | None = None,
        *,
        method: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Target:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"only plain http:// URLs are supported, not {url!r}")
        port = parts.port or 80
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        payload = b"" if body is None else orjson.dumps(body)
        verb = method or ("GET" if body is None else "POST")
        lines = [
            f"{verb} {path} HTTP/1.1",
            f"Host: {parts.hostname}:{port}",
            "User-Agent: tether-bench",
            "Accept: text/event-stream",
            "Connection: close",
        ]
        lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
        if body is not None:
            lines += ["Content-Type: application/json", f"Content-Length: {len(payload)}"]
        head = ("\r\n".join(lines) + "\r\n\r\n").encode()
        return cls(parts.hostname, port, head + payload)


class _SSEProtocol(asyncio.Protocol):
    """Reads one response; resolves `finished` when the body ended or the connection did."""

    def __init__(self, request: bytes, result: StreamResult, finished: asyncio.Future[None]):
        self._request = request
        self._result = result
        self._finished = finished
        self._transport: asyncio.Transport | None = None
        self._head = b""
        self._in_body = False
        self._chunked = False
        self._remaining = -1  # Content-Length left; -1 = close-delimited
        self._chunk_left = 0  # bytes of the current chunk (0 = expecting a size line)
        self._pending = b""  # undecoded chunked-transfer bytes
        self._sse = b""  # incomplete SSE frame
        self._error_body = b""

    # asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        self._transport.write(self._request)

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        self._result.received += len(data)
        if not self._in_body:
            self._head += data
            split = self._head.find(b"\r\n\r\n")
            if split < 0:
                return
            data = self._head[split + 4 :]
            self._parse_head(self._head[:split])
            self._head = b""
            self._in_body = True
            if self._remaining == 0:
                self._finish(now)
                return
        if self._chunked:
            self._dechunk(data, now)
        else:
            if self._remaining > 0:
                data = data[: self._remaining]
                self._remaining -= len(data)
            self._body(data, now)
            if self._remaining == 0:
                self._finish(now)

    def eof_received(self) -> bool | None:
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        now = time.perf_counter()
        if self._finished.done():
            return
        if self._in_body and not self._chunked and self._remaining < 0:
            self._finish(now)  # close-delimited body: the close is its end
            return
        self._fail(f"connection closed early ({exc or 'EOF'})")

    # parsing

    def _parse_head(self, head: bytes) -> None:
        lines = head.split(b"\r\n")
        status_line = lines[0].split(b" ", 2)
        self._result.status = int(status_line[1]) if len(status_line) > 1 else 0
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name, value = name.strip().lower(), value.strip().lower()
            if name == b"transfer-encoding" and b"chunked" in value:
                self._chunked = True
            elif name == b"content-length":
                self._remaining = int(value)

    def _dechunk(self, data: bytes, now: float) -> None:
        buf = self._pending + data if self._pending else data
        pos, size = 0, len(buf)
        while pos < size:
            if self._chunk_left > 0:
                take = min(self._chunk_left, size - pos)
                self._body(buf[pos : pos + take], now)
                pos += take
                self._chunk_left -= take
                if self._chunk_left == 0:
                    self._chunk_left = -2  # the CRLF after the chunk data
                continue
            if self._chunk_left == -2:
                if size - pos < 2:
                    break
                pos += 2
                self._chunk_left = 0
                continue
            eol = buf.find(b"\r\n", pos)
            if eol < 0:
                break
            length = int(buf[pos:eol].split(b";", 1)[0], 16)
            pos = eol + 2
            if length == 0:
                self._finish(now)  # trailers, if any, are not read
                return
            self._chunk_left = length
        self._pending = buf[pos:]

    def _body(self, data: bytes, now: float) -> None:
        result = self._result
        if result.status != 200:
            if len(self._error_body) < _ERROR_BODY_LIMIT:
                self._error_body += data
            return
        buf = self._sse + data if self._sse else data
        end = buf.rfind(b"\n\n")
        if end < 0:
            self._sse = buf
            return
        complete, self._sse = buf[: end + 2], buf[end + 2 :]
        frames = complete.count(b"\n\n")
        keepalives = complete.count(KEEPALIVE)
        done = complete.count(DONE)
        events = frames - keepalives - done
        if events and result.first is None:
            result.first = now
        result.events += events
        result.keepalives += keepalives
        result.done_marker = result.done_marker or done > 0
        result.completed = result.completed or b"event: response.completed\n" in complete

    def _finish(self, now: float) -> None:
        result = self._result
        result.end = now
        if result.status == 200 and not result.completed and result.error is None:
            result.error = "the stream ended without response.completed"
        if result.status != 200:
            text = self._error_body[:300].decode("utf-8", "replace")
            result.error = f"HTTP {result.status}: {text}"
        if not self._finished.done():
            self._finished.set_result(None)
        if self._transport is not None:
            self._transport.close()

    def _fail(self, message: str) -> None:
        self._result.error = message
        if not self._finished.done():
            self._finished.set_result(None)
        if self._transport is not None:
            self._transport.close()


async def open_stream(target: Target, timeout: float = 120.0) -> StreamResult:
    """Send `target`'s request and read the whole SSE answer. Never raises for I/O errors."""
    loop = asyncio.get_running_loop()
    result = StreamResult(start=time.perf_counter())
    finished: asyncio.Future[None] = loop.create_future()
    transport: asyncio.BaseTransport | None = None
    try:
        async with asyncio.timeout(timeout):
            transport, _ = await loop.create_connection(
                lambda: _SSEProtocol(target.request, result, finished), target.host, target.port
            )
            await finished
    except TimeoutError:
        result.error = f"timed out after {timeout:g} s"
    except OSError as exc:
        result.error = f"connect failed: {exc}"
    finally:
        if transport is not None:
            with contextlib.suppress(Exception):
                transport.close()
    return result


async def fetch_json(url: str, body: object | None = None, timeout: float = 600.0) -> object:
    """One plain JSON request (e.g. a blocking create); raises RuntimeError on a non-200."""
    target = Target.build(url, body)
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(target.host, target.port), timeout
    )
    try:
        writer.write(target.request)
        raw = await asyncio.wait_for(reader.read(), timeout)  # Connection: close
    finally:
        writer.close()
    head, _, payload = raw.partition(b"\r\n\r\n")
    if b"transfer-encoding: chunked" in head.lower():
        payload = _dechunk_all(payload)
    status = int(head.split(b" ", 2)[1])
    if status != 200:
        raise RuntimeError(f"{url}: HTTP {status}: {payload[:300]!r}")
    return orjson.loads(payload)


def _dechunk_all(data: bytes) -> bytes:
    out, pos = [], 0
    while True:
        eol = data.index(b"\r\n", pos)
        size = int(data[pos:eol].split(b";", 1)[0], 16)
        if size == 0:
            return b"".join(out)
        out.append(data[eol + 2 : eol + 2 + size])
        pos = eol + 2 + size + 2

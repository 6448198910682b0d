"""A lean HTTP/1.1 client for streaming upstream responses: one POST, its body read
as it arrives, connections kept alive in a small pool.

Why not httpx: an upstream stream is read once per token, and httpx spends tens of
microseconds per read in anyio cancel scopes and h11's state machine — more than all
the rest of Tether's per-token work. This client is an `asyncio.Protocol` fed to
httptools' C parser: a read costs a callback and, when the reader is waiting, one
future; the read timeout is one timer handle per wait, with no cancel scopes.

A request may carry a deadline (a loop time): the answer's headers and its body must
come by then, whatever arrives meanwhile, until the reader moves or clears
`StreamingResponse.deadline`; without one, each wait is bounded by `read_timeout`.
(The providers use the deadline for the first token, then the read timeout.)

Errors (all `UpstreamHTTPError`): `ConnectFailed` (could not connect or TLS failed),
`ReadTimedOut` (no byte for `read_timeout` seconds, or the deadline passed),
`ConnectionDropped` (closed or broken before the body ended). Plain `http://` and
`https://`; no proxies.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections import deque
from collections.abc import AsyncIterator, Mapping
from types import TracebackType
from typing import cast
from urllib.parse import urlsplit

import httptools

MAX_IDLE = 64  # idle keep-alive connections kept per client
PAUSE_AT = 64  # unread body chunks before the socket stops being read
LINGER_SECONDS = 1.0  # how long a released connection may take to finish its body


class UpstreamHTTPError(Exception):
    pass


class ConnectFailed(UpstreamHTTPError):
    pass


class ReadTimedOut(UpstreamHTTPError):
    pass


class ConnectionDropped(UpstreamHTTPError):
    pass


class _Connection(asyncio.Protocol):
    """One TCP connection; parses one response at a time into status, headers, chunks."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.chunks: deque[bytes] = deque()
        self.complete = False
        self.lost: BaseException | None = None
        self.closed = False
        self._headers_done: asyncio.Future[None] | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._paused = False
        self._until_close = False
        self._reusable = False
        self.last_read = 0.0

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not subclasses of asyncio.Transport: no isinstance here.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.last_read = self._loop.time()
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(ConnectionDropped(f"malformed HTTP response ({exc})"))
            if self.transport is not None:
                self.transport.close()

    def eof_received(self) -> bool | None:
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if exc is None and self._until_close:
            self.on_message_complete()  # a body without length ends with the connection
        if not self.complete:
            self._fail(ConnectionDropped(str(exc) if exc else "connection closed"))

    # httptools callbacks
    def on_status(self, status: bytes) -> None:
        self.status = self._parser.get_status_code()

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        self.status = self._parser.get_status_code()
        names = {name for name, _ in self.headers}
        self._until_close = b"content-length" not in names and b"transfer-encoding" not in names
        if self._headers_done is not None and not self._headers_done.done():
            self._headers_done.set_result(None)

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)
        if len(self.chunks) >= PAUSE_AT and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        # httptools answers should_keep_alive() only while parsing the message.
        self._reusable = self._parser.should_keep_alive()
        self.complete = True
        self._wake()

    # the reading side
    def start(self, request: bytes) -> asyncio.Future[None]:
        self.status, self.headers, self.complete, self.lost = 0, [], False, None
        self._reusable = False
        self.chunks.clear()
        self._parser = httptools.HttpResponseParser(self)
        self._headers_done = self._loop.create_future()
        self.last_read = self._loop.time()
        assert self.transport is not None
        self.transport.write(request)
        return self._headers_done

    def take(self) -> bytes | None:
        """The next body chunk, or None if none has arrived yet."""
        if not self.chunks:
            return None
        chunk = self.chunks.popleft()
        if self._paused and len(self.chunks) < PAUSE_AT // 2 and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()
        return chunk

    def waiter(self) -> asyncio.Future[None]:
        self._waiter = self._loop.create_future()
        return self._waiter

    def keep_alive(self) -> bool:
        return self.complete and not self.closed and self._reusable

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def _fail(self, error: BaseException) -> None:
        self.lost = error
        if self._headers_done is not None and not self._headers_done.done():
            self._headers_done.set_exception(error)
        self._wake()


class StreamingResponse:
    """An upstream response being read: `status`, `headers`, then `chunks()`.

    `deadline` (a loop time, or None) is the request's deadline; while it is set, no
    chunk is given after it and waits end at it instead of after `read_timeout`. The
    reader may move or clear it between chunks."""

    def __init__(
        self,
        client: HTTPClient,
        connection: _Connection,
        read_timeout: float,
        deadline: float | None = None,
    ) -> None:
        self._client = client
        self._connection = connection
        self._read_timeout = read_timeout
        self.deadline = deadline
        self.status = connection.status
        self.headers = connection.headers

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body, chunk by chunk (chunked encoding already removed)."""
        connection = self._connection
        loop = asyncio.get_running_loop()
        while True:
            chunk = connection.take()
            if chunk is not None:
                if self.deadline is not None and loop.time() >= self.deadline:
                    raise ReadTimedOut("the deadline passed")
                yield chunk
                continue
            if connection.complete:
                return
            if connection.lost is not None:
                raise connection.lost
            waiter = connection.waiter()
            deadline = self.deadline
            at = connection.last_read + self._read_timeout if deadline is None else deadline
            timer = loop.call_at(at, _expire, waiter)
            try:
                await waiter
            finally:
                timer.cancel()
            if not connection.chunks and not connection.complete and connection.lost is None:
                # The timer fired: no byte for read_timeout seconds, or the deadline passed.
                if deadline is not None:
                    raise ReadTimedOut("the deadline passed")
                raise ReadTimedOut(f"no data for {self._read_timeout:g} seconds")

    async def read(self, limit: int) -> bytes:
        body = b""
        async for chunk in self.chunks():
            body += chunk
            if len(body) >= limit:
                break
        return body[:limit]

    def release(self, *, linger: bool = True) -> None:
        self._client.release(self._connection, linger=linger)


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class _Request:
    def __init__(self, client: HTTPClient, path: str, body: bytes, deadline: float | None) -> None:
        self._client, self._path, self._body = client, path, body
        self._deadline = deadline
        self._response: StreamingResponse | None = None

    async def __aenter__(self) -> StreamingResponse:
        self._response = await self._client.send(self._path, self._body, deadline=self._deadline)
        return self._response

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._response is not None:
            # Left by an exception (a cancel, a closed generator): the caller wants no
            # more of this body, and the upstream should stop generating at once.
            self._response.release(linger=exc_type is None)


class HTTPClient:
    """POSTs to one origin (`base_url`), streaming the answers; keeps connections alive."""

    def __init__(
        self,
        base_url: str,
        headers: Mapping[str, str],
        *,
        connect_timeout: float,
        read_timeout: float,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        self._host = parts.hostname
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self._ssl = ssl.create_default_context() if parts.scheme == "https" else None
        self._prefix = parts.path.rstrip("/")
        host_header = parts.hostname if parts.port is None else f"{parts.hostname}:{parts.port}"
        self._head = "".join(f"{k}: {v}\r\n" for k, v in {"host": host_header, **headers}.items())
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._idle: list[_Connection] = []
        self._lingering: set[asyncio.Task[None]] = set()

    def __repr__(self) -> str:
        return f"<HTTPClient {self._host}:{self._port} idle={len(self._idle)}>"

    def post(self, path: str, body: bytes, *, deadline: float | None = None) -> _Request:
        """`async with client.post(path, body) as response:` — status and headers are read;
        the body is read with `response.chunks()`; leaving the block releases the
        connection (kept alive only if the body was read to its end). With a `deadline`
        (loop time), headers and body must come by then (see `StreamingResponse`)."""
        return _Request(self, path, body, deadline)

    async def send(
        self, path: str, body: bytes, *, deadline: float | None = None
    ) -> StreamingResponse:
        request = (
            f"POST {self._prefix}{path} HTTP/1.1\r\n{self._head}content-length: {len(body)}\r\n\r\n"
        ).encode("latin-1") + body
        connection = self._reuse()
        reused = connection is not None
        if connection is None:
            connection = await self._connect()
        loop = asyncio.get_running_loop()
        timeout = self._read_timeout if deadline is None else max(0.0, deadline - loop.time())
        try:
            await asyncio.wait_for(connection.start(request), timeout)
        except ConnectionDropped:
            if not reused:
                raise
            # A kept-alive connection the server had closed: one retry on a new one.
            connection = await self._connect()
            if deadline is not None:
                timeout = max(0.0, deadline - loop.time())
            try:
                await asyncio.wait_for(connection.start(request), timeout)
            except TimeoutError:
                self._close(connection)
                raise ReadTimedOut(f"no answer within {timeout:g} seconds") from None
        except TimeoutError:
            self._close(connection)
            raise ReadTimedOut(f"no answer within {timeout:g} seconds") from None
        return StreamingResponse(self, connection, self._read_timeout, deadline)

    def release(self, connection: _Connection, *, linger: bool = True) -> None:
        """Keep the connection for the next request if its response ended cleanly. A
        reader that stopped at the stream's own end marker (`[DONE]`) usually left only
        the body's terminator unread: give it a moment to arrive instead of closing.
        Without `linger` an unfinished body closes the connection at once."""
        if connection.keep_alive():
            self._keep(connection)
        elif (
            linger and not connection.complete and connection.lost is None and not connection.closed
        ):
            task = asyncio.get_running_loop().create_task(self._linger(connection))
            self._lingering.add(task)
            task.add_done_callback(self._lingering.discard)
        else:
            self._close(connection)

    async def _linger(self, connection: _Connection) -> None:
        deadline = asyncio.get_running_loop().time() + LINGER_SECONDS
        while not connection.complete and connection.lost is None:
            connection.chunks.clear()
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                break
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await connection.waiter()
        connection.chunks.clear()
        if connection.keep_alive():
            self._keep(connection)
        else:
            self._close(connection)

    def _keep(self, connection: _Connection) -> None:
        if len(self._idle) < MAX_IDLE:
            self._idle.append(connection)
        else:
            self._close(connection)

    async def aclose(self) -> None:
        for task in list(self._lingering):
            task.cancel()
        for connection in self._idle:
            self._close(connection)
        self._idle.clear()

    def _reuse(self) -> _Connection | None:
        while self._idle:
            connection = self._idle.pop()
            if not connection.closed:
                return connection
        return None

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            _, connection = await asyncio.wait_for(
                loop.create_connection(
                    lambda: _Connection(loop),
                    self._host,
                    self._port,
                    ssl=self._ssl,
                    server_hostname=self._host if self._ssl else None,
                ),
                self._connect_timeout,
            )
        except TimeoutError:
            raise ConnectFailed(
                f"connection timed out after {self._connect_timeout:g} seconds"
            ) from None
        except (OSError, ssl.SSLError) as exc:
            raise ConnectFailed(str(exc) or type(exc).__name__) from None
        return connection

    @staticmethod
    def _close(connection: _Connection) -> None:
        if connection.transport is not None:
            with contextlib.suppress(Exception):
                connection.transport.close()

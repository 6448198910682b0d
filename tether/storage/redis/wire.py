"""`Wire`: every command of one process over one multiplexed Redis connection.

Commands queued during one event-loop step leave in one write, and replies are
matched to them in order by one reader task, so many runners appending at once
cost one round trip together. Measured with redis-py on this path: 93-108 µs of
CPU per command when each awaits its own reply (the loop wakes per command; a
`gather` over a connection pool is no better), 16-20 µs per command when 64 share a
write. Nothing here blocks on the server (tails wait through pub/sub, `wake.py`), so
one connection is never held up by a slow command of another caller.

A command's `decode` runs in the reader task as soon as its reply arrives, before
its future resolves and even if the caller was cancelled: this is where commits
wake the in-process tailers. A script refused with NOSCRIPT (SCRIPT FLUSH, a
restarted server) is loaded again and resent with the same future.

Errors: a refused command fails its future with `StorageError`; a lost connection
fails every command in flight with `StoreUnavailableError` (their outcome is unknown)
and the next command connects again. A connection that stops answering while commands wait
is dropped after `STALL_SECONDS`.

Sections: calling · sending · receiving · failures and closing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from redis.asyncio.connection import AbstractConnection
from redis.exceptions import NoScriptError, RedisError, ResponseError

from tether.errors import StorageError, StoreUnavailableError
from tether.storage.redis.scripts import Script

logger = logging.getLogger(__name__)

STALL_SECONDS = 15.0  # a reply awaited this long (twice at most) drops the connection
RELOADS = 3  # times a command is resent after NOSCRIPT before it fails


def _keep(reply: Any) -> Any:
    return reply


def pack(commands: list[tuple[Any, ...]]) -> bytes:
    """The RESP request for `commands` (arguments: bytes, str, int or float).

    redis-py's `pack_commands` checks every argument against every type it knows and
    cost a third of the CPU of an append; ours are few and known."""
    parts: list[bytes] = []
    add = parts.append
    for args in commands:
        add(b"*%d\r\n" % len(args))
        for arg in args:
            if isinstance(arg, bytes):
                value = arg
            elif isinstance(arg, str):
                value = arg.encode()
            elif isinstance(arg, int):
                value = b"%d" % arg
            elif isinstance(arg, float):
                value = repr(arg).encode()
            else:
                raise TypeError(f"cannot send {type(arg).__name__} to Redis")
            add(b"$%d\r\n" % len(value))
            add(value)
            add(b"\r\n")
    return b"".join(parts)


@dataclass(slots=True)
class _Command:
    args: tuple[Any, ...]
    future: asyncio.Future[Any]
    decode: Callable[[Any], Any]
    script: Script | None = None
    reloads: int = 0


class _Link:
    """One open connection and the commands written to it, awaiting replies."""

    def __init__(self, conn: AbstractConnection) -> None:
        self.conn = conn
        self.pending: deque[_Command] = deque()
        self.replies = 0
        self.dead = False
        self.reader: asyncio.Task[None] | None = None


class Wire:
    def __init__(self, connect: Callable[[], AbstractConnection], where: str) -> None:
        self._connect = connect
        self.where = where
        self._outbox: list[_Command] = []
        self._wanted = asyncio.Event()
        self._link: _Link | None = None
        self._sender: asyncio.Task[None] | None = None
        self._watchdog: asyncio.TimerHandle | None = None
        self._reloading: dict[str, list[_Command]] = {}
        self._background: set[asyncio.Future[None]] = set()
        self._closed = False
        self.writes = 0
        self.commands = 0

    def __repr__(self) -> str:
        in_flight = len(self._link.pending) if self._link is not None else 0
        return (
            f"<Wire {self.where} commands={self.commands} writes={self.writes} "
            f"in_flight={in_flight} connected={self._link is not None and not self._link.dead}>"
        )

    # --- calling ---

    def call(self, *args: Any, decode: Callable[[Any], Any] = _keep) -> asyncio.Future[Any]:
        """Queue one command; the future holds `decode(reply)` (or what it raised)."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue(_Command(args, future, decode))
        return future

    def run(
        self,
        script: Script,
        keys: list[str],
        args: list[Any],
        decode: Callable[[Any], Any] = _keep,
    ) -> asyncio.Future[Any]:
        """Queue one EVALSHA of `script`."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        command = ("EVALSHA", script.sha, len(keys), *keys, *args)
        self._queue(_Command(command, future, decode, script))
        return future

    def _queue(self, command: _Command) -> None:
        if self._closed:
            command.future.set_exception(StorageError(f"the Redis store {self.where} is closed"))
            return
        if self._sender is None:
            self._sender = asyncio.create_task(self._send_loop(), name="tether-redis-send")
        self._outbox.append(command)
        self._wanted.set()

    # --- sending ---

    async def _send_loop(self) -> None:
        while True:
            await self._wanted.wait()
            self._wanted.clear()
            batch, self._outbox = self._outbox, []
            if batch:
                await self._send(batch)

    async def _send(self, batch: list[_Command]) -> None:
        link = self._link
        try:
            if link is None or link.dead:
                link = await self._open()
            link.pending.extend(batch)
            await link.conn.send_packed_command(pack([c.args for c in batch]), check_health=False)
        except (RedisError, OSError) as exc:
            error = StoreUnavailableError(f"Redis at {self.where} is unreachable: {exc}")
            if link is not None and not link.dead:
                self._fail(link, error)
            for command in batch:
                if not command.future.done():
                    command.future.set_exception(error)
            return
        self.writes += 1
        self.commands += len(batch)

    async def _open(self) -> _Link:
        conn = self._connect()
        await conn.connect()  # type: ignore[no-untyped-call]
        link = self._link = _Link(conn)
        link.reader = asyncio.create_task(self._read_loop(link), name="tether-redis-read")
        if self._watchdog is None:
            self._watchdog = asyncio.get_running_loop().call_later(
                STALL_SECONDS, self._check_stall, None, -1
            )
        return link

    # --- receiving ---

    async def _read_loop(self, link: _Link) -> None:
        conn = link.conn
        while True:
            error: ResponseError | None = None
            try:
                reply = await conn.read_response(disconnect_on_error=False)
            except ResponseError as exc:
                reply, error = None, exc
            except (RedisError, OSError) as exc:
                lost = f"lost the connection to Redis at {self.where}: {exc}"
                self._fail(link, StoreUnavailableError(lost))
                return
            if not link.pending:
                self._fail(link, StorageError(f"Redis at {self.where} sent an unexpected reply"))
                return
            command = link.pending.popleft()
            link.replies += 1
            if error is None:
                self._deliver(command, reply)
            elif isinstance(error, NoScriptError) and command.script is not None:
                self._reload(command)
            elif not command.future.done():
                command.future.set_exception(StorageError(f"Redis refused a command: {error}"))

    @staticmethod
    def _deliver(command: _Command, reply: Any) -> None:
        try:
            result = command.decode(reply)
        except Exception as exc:
            if not command.future.done():
                command.future.set_exception(exc)
            return
        if not command.future.done():
            command.future.set_result(result)

    def _reload(self, command: _Command) -> None:
        """Load the script again (once for every command refused meanwhile), then resend."""
        assert command.script is not None
        command.reloads += 1
        if command.reloads > RELOADS:
            if not command.future.done():
                command.future.set_exception(
                    StorageError(f"Redis keeps forgetting the script {command.script.name!r}")
                )
            return
        sha = command.script.sha
        waiting = self._reloading.get(sha)
        if waiting is None:
            waiting = self._reloading[sha] = []
            loaded = self.call("SCRIPT", "LOAD", command.script.source)
            loaded.add_done_callback(lambda done: self._reloaded(sha, done))
        waiting.append(command)

    def _reloaded(self, sha: str, loaded: asyncio.Future[Any]) -> None:
        waiting = self._reloading.pop(sha, [])
        error = loaded.exception() if not loaded.cancelled() else StorageError("closed")
        for command in waiting:
            if error is None:
                self._queue(command)
            elif not command.future.done():
                command.future.set_exception(error)

    # --- failures and closing ---

    def _fail(self, link: _Link, error: Exception) -> None:
        if link.dead:
            return
        link.dead = True
        if self._link is link:
            self._link = None
        while link.pending:
            command = link.pending.popleft()
            if not command.future.done():
                command.future.set_exception(error)
        if link.reader is not None and link.reader is not asyncio.current_task():
            link.reader.cancel()
        closing = asyncio.ensure_future(link.conn.disconnect(nowait=True))
        self._background.add(closing)
        closing.add_done_callback(self._background.discard)

    def _check_stall(self, watched: _Link | None, replies_before: int) -> None:
        """Every STALL_SECONDS: drop the connection if commands wait and no reply came."""
        self._watchdog = None
        if self._closed:
            return
        link = self._link
        stalled = link is not None and link is watched and link.replies == replies_before
        if link is not None and stalled and link.pending:
            logger.warning("Redis at %s stopped answering; reconnecting", self.where)
            self._fail(link, StoreUnavailableError(f"Redis at {self.where} stopped answering"))
            link = None
        self._watchdog = asyncio.get_running_loop().call_later(
            STALL_SECONDS, self._check_stall, link, link.replies if link is not None else -1
        )

    async def close(self) -> None:
        self._closed = True
        if self._sender is not None:
            self._sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sender
        if self._watchdog is not None:
            self._watchdog.cancel()
        error = StorageError(f"the Redis store {self.where} is closed")
        for command in self._outbox:
            if not command.future.done():
                command.future.set_exception(error)
        self._outbox.clear()
        link = self._link
        if link is not None:
            self._fail(link, error)
            if link.reader is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await link.reader
            await link.conn.disconnect(nowait=True)

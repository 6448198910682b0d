"""Wake-ups across processes: one pub/sub connection per process.

Every commit PUBLISHes on its response's channel (`<p>:wake:<id>`, from inside the
append script, so the message leaves only once the write is done). A process
subscribes to the channel of a response only while one of its tailers waits on it
(and `LINGER_SECONDS` after, so a tail that reads and waits again does not churn
subscriptions); messages feed the in-process `Notifier`, which also hears this
process's own commits directly. Worker processes subscribe to `<p>:jobs` (a job
was queued) and `<p>:revoked` (a job was removed by terminate or delete).

Why pub/sub and not XREAD BLOCK on the event streams: a blocked XREAD holds its
connection, so either a connection per tailed response (thousands) or one reader
that must be interrupted (CLIENT UNBLOCK, one more round trip) and re-issued with
every waited stream's key each time a tail starts or an event arrives — O(streams)
per event. A subscription is made once per followed response and a message costs
the server one write per subscribed process.

A message carries the committed batch (its frames), so a process keeps the latest
events of each response it follows (an `EventWindow`, as every backend keeps) and
its tailers read them without a round trip: measured 27-29 µs of CPU per event for
writer and remote reader together, against 33-57 µs reading each wake with XRANGE.
Older events, and any a lost message may have left out, are read from the stream.

A subscription only counts once Redis confirmed it and the response was read after
that (`RedisEventLog.wait`); before, a commit could slip between the reader's last
read and the subscription. When the connection drops, every subscription stops
counting and its kept events are dropped until it is made again; then each
followed response is read once more (`_recover`), so messages lost meanwhile wake
their tailers late, not never. A PING every `PING_SECONDS` finds a connection that
died silently.

Sections: kept events · following responses · the connection · messages · upkeep.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio.connection import AbstractConnection
from redis.exceptions import RedisError

from tether.domain import events as ev
from tether.storage.notify import GONE, JobSignal, Notifier
from tether.storage.redis import frames
from tether.storage.redis.keys import Keys
from tether.storage.window import EventWindow

logger = logging.getLogger(__name__)

LINGER_SECONDS = 30.0  # an unwaited subscription is kept this long
PING_SECONDS = 10.0  # the janitor's tick: PING, and drop idle subscriptions
SILENT_SECONDS = 35.0  # no reply (not even PONG) this long: the connection is dead

# --- kept events --------------------------------------------------------------------


@dataclass(slots=True)
class Channel:
    """A subscription: how many wait on it, whether Redis confirmed it, whether a read
    of the response since then lets the notifier be trusted for it, and its kept
    events."""

    name: bytes
    confirmed: asyncio.Future[None]
    users: int = 0
    trusted: bool = False
    idle_since: float = 0.0
    permanent: bool = False
    recent: EventWindow | None = None


class Wakeups:
    def __init__(
        self,
        connect: Callable[[], AbstractConnection],
        keys: Keys,
        refresh: Callable[[str], Awaitable[object]],
        where: str,
    ) -> None:
        self.notifier = Notifier()
        self.job_signal = JobSignal()
        self.origin = secrets.token_hex(6).encode()  # tells our revocations from others'
        self._connect = connect
        self._keys = keys
        self._wake_prefix = keys.wake_prefix
        self._refresh = refresh
        self._where = where
        self._channels: dict[bytes, Channel] = {}
        self._revoked: list[Callable[[str], None]] = []
        self._conn: AbstractConnection | None = None
        self._task: asyncio.Task[None] | None = None
        self._janitor: asyncio.TimerHandle | None = None
        self._requests: list[tuple[str, list[bytes]]] = []
        self._tasks: set[asyncio.Future[None]] = set()
        self._heard = 0.0
        self.messages = 0
        self.connections = 0

    def __repr__(self) -> str:
        return (
            f"<Wakeups {self._where} channels={len(self._channels)} messages={self.messages} "
            f"connected={self._conn is not None} {self.notifier!r}>"
        )

    # --- following responses ---

    def follow(self, response_id: str) -> Channel:
        """Subscribe (if not yet) to a response's commits; pair with `unfollow`."""
        channel = self._channel(self._wake_prefix + response_id.encode())
        channel.users += 1
        return channel

    def unfollow(self, channel: Channel) -> None:
        channel.users -= 1
        if channel.users == 0:
            channel.idle_since = asyncio.get_running_loop().time()

    def committed(
        self, response_id: str, events: Sequence[ev.StoredEvent], *, finished: bool
    ) -> None:
        """A commit of this process (or one a message told of): wake the waiters, and
        keep the events if the response is followed and its subscription counts."""
        channel = self._channels.get(self._wake_prefix + response_id.encode())
        if channel is not None and channel.confirmed.done():
            recent = channel.recent
            channel.recent = EventWindow(list(events)) if recent is None else recent.add(events)
        self.notifier.published(response_id, events[-1].seq, finished=finished)

    def gone(self, response_id: str) -> None:
        """The response was deleted: forget its events, wake its waiters."""
        channel = self._channels.get(self._wake_prefix + response_id.encode())
        if channel is not None:
            channel.recent = None
        self.notifier.published(response_id, GONE, finished=True)

    def expired(self, response_id: str) -> None:
        """The response's event log was dropped (retention): forget its events."""
        channel = self._channels.get(self._wake_prefix + response_id.encode())
        if channel is not None:
            channel.recent = None

    def recent_after(self, response_id: str, after: int, limit: int) -> list[ev.StoredEvent] | None:
        """The kept events past `after`, or None when they do not reach back that far."""
        channel = self._channels.get(self._wake_prefix + response_id.encode())
        if channel is None or channel.recent is None:
            return None
        return channel.recent.after(after, limit)

    def jobs_channel(self) -> Channel:
        return self._channel(self._keys.jobs_channel, permanent=True)

    def watch_revoked(self, callback: Callable[[str], None]) -> None:
        self._revoked.append(callback)
        self._channel(self._keys.revoked_channel, permanent=True)

    def revoked_here(self, response_id: str) -> None:
        """A terminate or delete of this process removed a job: tell our callbacks now
        (the echo of its message is skipped by its origin)."""
        for callback in list(self._revoked):
            callback(response_id)

    def _channel(self, name: bytes, *, permanent: bool = False) -> Channel:
        channel = self._channels.get(name)
        if channel is None:
            loop = asyncio.get_running_loop()
            channel = Channel(name, loop.create_future(), permanent=permanent)
            self._channels[name] = channel
            self._start()
            if self._conn is not None:
                self._request("SUBSCRIBE", name)
        return channel

    # --- the connection ---

    def _start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="tether-redis-wakeups")
            self._janitor = asyncio.get_running_loop().call_later(PING_SECONDS, self._tick)

    async def _run(self) -> None:
        delay = 0.05
        while True:
            conn = self._connect()
            try:
                await conn.connect()  # type: ignore[no-untyped-call]
                self._conn = conn
                self._heard = asyncio.get_running_loop().time()
                self.connections += 1
                names = list(self._channels)
                for start in range(0, len(names), 500):
                    await conn.send_command("SUBSCRIBE", *names[start : start + 500])
                if self.connections > 1:
                    self._background(self._recover())
                delay = 0.05
                while True:
                    self._dispatch(await conn.read_response(disconnect_on_error=False))
            except (RedisError, OSError) as exc:
                logger.warning("Redis wake-ups at %s lost their connection: %s", self._where, exc)
            except Exception:
                logger.exception("Redis wake-ups at %s failed; reconnecting", self._where)
            finally:
                self._conn = None
                self._forget_confirmations()
                with contextlib.suppress(RedisError, OSError):
                    await conn.disconnect(nowait=True)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)

    def _forget_confirmations(self) -> None:
        loop = asyncio.get_running_loop()
        for channel in self._channels.values():
            channel.trusted = False
            channel.recent = None  # messages may be lost from now on
            if channel.confirmed.done():
                channel.confirmed = loop.create_future()

    async def _recover(self) -> None:
        """After a reconnect: wake the claim loop, and read every followed response once
        its subscription is back, so commits whose message was lost still wake."""
        followed = [c for c in self._channels.values() if not c.permanent]
        if followed:
            await asyncio.wait([c.confirmed for c in followed], timeout=PING_SECONDS)
        self.job_signal.set()
        for channel in followed:
            if channel.confirmed.done():
                with contextlib.suppress(Exception):
                    await self._refresh(channel.name[len(self._wake_prefix) :].decode())
                    channel.trusted = True

    def _background(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _request(self, command: str, *names: bytes) -> None:
        """Send (UN)SUBSCRIBE soon, in order, several in one write."""
        if not self._requests:
            asyncio.get_running_loop().call_soon(self._send_requests)
        self._requests.append((command, list(names)))

    def _send_requests(self) -> None:
        requests, self._requests = self._requests, []
        conn = self._conn
        if conn is None or not requests:
            return  # the next connection subscribes to every channel there is then
        packed = conn.pack_commands([(command, *names) for command, names in requests])
        self._background(self._write(conn, packed))

    async def _write(self, conn: AbstractConnection, packed: list[bytes]) -> None:
        try:
            await conn.send_packed_command(packed, check_health=False)
        except (RedisError, OSError) as exc:
            logger.warning("Redis wake-ups at %s could not subscribe: %s", self._where, exc)
            with contextlib.suppress(RedisError, OSError):
                await conn.disconnect(nowait=True)

    # --- messages ---

    def _dispatch(self, reply: list[bytes]) -> None:
        self._heard = asyncio.get_running_loop().time()
        kind = reply[0]
        if kind == b"message":
            self.messages += 1
            channel, data = reply[1], reply[2]
            if channel.startswith(self._wake_prefix):
                response_id = channel[len(self._wake_prefix) :].decode()
                if data == b"gone":
                    self.gone(response_id)
                else:
                    head, _, batch = data.partition(b"\n")
                    last, count, *end = head.split(b" ")
                    first = int(last) - int(count) + 1
                    events = frames.split(first, int(count), batch)
                    self.committed(response_id, events, finished=bool(end))
            elif channel == self._keys.jobs_channel:
                self.job_signal.set()
            elif channel == self._keys.revoked_channel:
                origin, _, revoked = data.partition(b" ")
                if origin != self.origin:
                    self.revoked_here(revoked.decode())
        elif kind == b"subscribe":
            subscribed = self._channels.get(reply[1])
            if subscribed is not None and not subscribed.confirmed.done():
                subscribed.confirmed.set_result(None)

    # --- upkeep ---

    def _tick(self) -> None:
        """Drop subscriptions nobody waited on lately; PING; notice a dead connection."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        idle = [
            c.name
            for c in self._channels.values()
            if not c.permanent and c.users == 0 and now - c.idle_since > LINGER_SECONDS
        ]
        for name in idle:
            del self._channels[name]
        conn = self._conn
        if conn is not None:
            if now - self._heard > SILENT_SECONDS:
                logger.warning("Redis wake-ups at %s went silent; reconnecting", self._where)
                self._background(conn.disconnect(nowait=True))
            else:
                if idle:
                    self._request("UNSUBSCRIBE", *idle)
                self._request("PING")
        self._janitor = loop.call_later(PING_SECONDS, self._tick)

    async def close(self) -> None:
        if self._janitor is not None:
            self._janitor.cancel()
        for task in [*self._tasks, *([self._task] if self._task is not None else [])]:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, RedisError, OSError):
                await task
        self._task = None

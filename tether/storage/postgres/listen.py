"""Wake-ups across processes: the LISTEN connection and what it tells us.

`Listener` keeps one dedicated connection LISTENing on the schema's channels, and
reconnects (with back-off) when it drops. `Heads` holds the waiters of `EventLog.wait`
and the last committed event of the responses this process reads, kept exact by the
notices while the listener stays connected: a reader whose cursor is at that head
needs no query to learn that nothing is new. When the listener drops, every head is
forgotten and every waiter told to look at the table instead (the fallback poll).

Notices: the events channel carries "<origin>" then "<response_id>:<last_seq>" lines
(one notice per append batch); the jobs channel "<origin> +<response_id>" (a job was
enqueued) or "<origin> -<response_id>" (a job was revoked). A process skips its own
notices: it woke its own waiters when its commit returned.

Sections: `Heads` (what is known, who waits) · `Listener` (the connection).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable

import asyncpg

from tether.storage.notify import GONE
from tether.storage.postgres.recent import RecentEvents

logger = logging.getLogger(__name__)

KNOWN_LIMIT = 4096  # heads remembered; a forgotten one costs one query
PING_SECONDS = 10.0  # how often an idle listener checks its connection
RETRY_SECONDS = (0.05, 0.2, 0.5, 1.0, 2.0)  # back-off between reconnect attempts


class Heads:
    """Last committed seqs this process may trust, and the waiters for new ones."""

    def __init__(self) -> None:
        self.trusted = False  # the listener is connected: notices keep `_known` exact
        self.generation = 0  # bumped on each (re)connect
        self._known: OrderedDict[str, int] = OrderedDict()
        self._reading: dict[str, list[list[int]]] = {}  # reads in flight: heads noticed meanwhile
        self._waiters: dict[str, list[tuple[int, asyncio.Future[bool]]]] = {}
        self.recent = RecentEvents()  # the events this process appended lately

    def __repr__(self) -> str:
        return (
            f"<Heads trusted={self.trusted} known={len(self._known)} waiting={len(self._waiters)}>"
        )

    def known(self, response_id: str) -> int | None:
        """The last committed seq, or None when only the table can tell."""
        return self._known.get(response_id) if self.trusted else None

    def begin_read(self, response_id: str) -> tuple[int, list[int]] | None:
        """Before a read of `response_id`'s head: collect the notices that arrive while
        the query runs (its answer may predate them). None: the head cannot be trusted."""
        if not self.trusted:
            return None
        noticed = [-1]
        self._reading.setdefault(response_id, []).append(noticed)
        return self.generation, noticed

    def end_read(
        self, response_id: str, token: tuple[int, list[int]] | None, last_seq: int | None
    ) -> None:
        """After the read: remember its head (None: the read failed, or the response is
        finished and nothing will change but its deletion)."""
        if token is None:
            return
        generation, noticed = token
        reading = self._reading.get(response_id)
        if reading is not None:
            reading.remove(noticed)
            if not reading:
                del self._reading[response_id]
        if last_seq is None or not self.trusted or generation != self.generation:
            return
        self._remember(response_id, max(last_seq, noticed[0]))

    def published(self, response_id: str, last_seq: int, *, finished: bool = False) -> None:
        """Event `last_seq` of `response_id` is committed (here or, by a notice, elsewhere)."""
        reading = self._reading.get(response_id)
        if reading is not None:
            for noticed in reading:
                noticed[0] = max(noticed[0], last_seq)
        if last_seq >= GONE:
            self.recent.drop(response_id)
        elif finished:
            self.recent.finished(response_id)
        if finished:
            self._known.pop(response_id, None)
        elif response_id in self._known:
            self._remember(response_id, last_seq)
        waiters = self._waiters.get(response_id)
        if waiters:
            for after, waiter in waiters:
                if last_seq > after and not waiter.done():
                    waiter.set_result(True)

    def unsure(self, response_id: str) -> None:
        """An append to `response_id` failed with an unknown outcome (its answer was lost):
        it may be committed, and the notice of a commit of ours is skipped, so forget
        the head and send its waiters to the table. Reads in flight may predate the
        commit: none of them is remembered (a new generation)."""
        self.generation += 1
        self._known.pop(response_id, None)
        self.recent.drop(response_id)
        for _, waiter in self._waiters.get(response_id, ()):
            if not waiter.done():
                waiter.set_result(False)

    def _remember(self, response_id: str, last_seq: int) -> None:
        known = self._known
        if last_seq > known.get(response_id, -1):
            known[response_id] = last_seq
            known.move_to_end(response_id)
            if len(known) > KNOWN_LIMIT:
                known.popitem(last=False)

    def watch(self, response_id: str, after: int) -> asyncio.Future[bool]:
        """A future set to True once an event past `after` is committed, or to False
        when the table must be asked again (the listener reconnected)."""
        waiter: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(response_id, []).append((after, waiter))
        return waiter

    def unwatch(self, response_id: str, waiter: asyncio.Future[bool]) -> None:
        waiters = self._waiters.get(response_id)
        if waiters is None:
            return
        waiters[:] = [entry for entry in waiters if entry[1] is not waiter]
        if not waiters:
            del self._waiters[response_id]

    def connected(self) -> None:
        self.generation += 1
        self.trusted = True
        self._wake_all()

    def lost(self) -> None:
        self.generation += 1
        self.trusted = False
        self._known.clear()
        self._wake_all()

    def _wake_all(self) -> None:
        for waiters in self._waiters.values():
            for _, waiter in waiters:
                if not waiter.done():
                    waiter.set_result(False)


Handler = Callable[[str], None]


class Listener:
    """One connection LISTENing on `handlers`' channels, reconnected when it drops.
    Waiters of `heads` are told to look at the tables on every (re)connect, and
    `on_reconnect` is called for the notices other than events that may have been
    missed."""

    def __init__(
        self,
        connect: Callable[[], Awaitable[asyncpg.Connection]],
        handlers: dict[str, Handler],
        heads: Heads,
        on_reconnect: Callable[[], None],
    ) -> None:
        self._connect = connect
        self._handlers = handlers
        self._heads = heads
        self._on_reconnect = on_reconnect  # for what notices were missed meanwhile
        self._conn: asyncpg.Connection | None = None
        self._lost = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.reconnects = 0

    def __repr__(self) -> str:
        state = "connected" if self._heads.trusted else "reconnecting"
        return f"<Listener {state} channels={sorted(self._handlers)} reconnects={self.reconnects}>"

    @property
    def server_pid(self) -> int | None:
        """The backend process of the LISTEN connection (None while disconnected)."""
        return None if self._conn is None else self._conn.get_server_pid()

    async def start(self) -> None:
        """Connect once (raising what the connection raises), then keep it up."""
        await self._listen()
        self._task = asyncio.create_task(self._supervise(), name="tether-postgres-listen")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._drop()

    async def _listen(self) -> None:
        conn = await self._connect()
        try:
            for channel in self._handlers:
                await conn.add_listener(channel, self._notified)
        except BaseException:
            conn.terminate()
            raise
        conn.add_termination_listener(self._terminated)
        self._conn = conn
        self._lost.clear()
        self._heads.connected()

    def _notified(
        self, conn: object, pid: int, channel: str, payload: object
    ) -> None:  # asyncpg's listener signature
        handler = self._handlers.get(channel)
        if handler is not None and isinstance(payload, str):
            try:
                handler(payload)
            except Exception:
                logger.exception("handling a notice on %s failed", channel)

    def _terminated(self, conn: object) -> None:
        self._heads.lost()
        self._lost.set()

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.remove_termination_listener(self._terminated)
            try:
                await asyncio.wait_for(conn.close(), 2.0)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
                conn.terminate()

    async def _supervise(self) -> None:
        while True:
            try:
                async with asyncio.timeout(PING_SECONDS):
                    await self._lost.wait()
            except TimeoutError:
                if await self._alive():
                    continue
            self._heads.lost()
            logger.warning("the PostgreSQL LISTEN connection dropped; reconnecting")
            await self._drop()
            await self._reconnect()

    async def _alive(self) -> bool:
        conn = self._conn
        if conn is None or conn.is_closed():
            return False
        try:
            await asyncio.wait_for(conn.execute("SELECT 1"), PING_SECONDS / 2)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
            return False
        return True

    async def _reconnect(self) -> None:
        attempt = 0
        while True:
            try:
                await self._listen()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
                delay = RETRY_SECONDS[min(attempt, len(RETRY_SECONDS) - 1)]
                logger.warning("reconnecting the LISTEN connection failed (%s)", exc)
                attempt += 1
                await asyncio.sleep(delay)
                continue
            self.reconnects += 1
            self._on_reconnect()
            return

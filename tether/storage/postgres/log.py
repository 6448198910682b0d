"""`PostgresEventLog`: group-committed compare-and-appends, reads, waits.

Appends made during one event-loop step are sent together as one call of the
`append_batch` function (one round trip, one transaction): each append still applies
or conflicts on its own, and a few batches may be in flight at once. Readers of this
process are woken when the call returns (after the commit); the function's NOTIFY,
delivered at commit, wakes the others.

Sections: the writer (`AppendWriter`) · the log (`PostgresEventLog`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg
import orjson

from tether.domain import events as ev
from tether.domain.response import ResponseStatus
from tether.errors import (
    AppendConflictError,
    EventsExpiredError,
    StorageError,
    response_not_found,
)
from tether.storage.base import ADDS_OUTPUT_TO_CONVERSATION, contiguous
from tether.storage.postgres.database import (
    PostgresDatabase,
    joined,
    split_frames,
    translated,
)

BATCH_LIMIT = 100  # appends per call
INFLIGHT_LIMIT = 4  # calls in flight at once (the pool keeps connections for readers)
DEADLOCK_RETRIES = 3
FALLBACK_POLL_SECONDS = 0.5  # how often a waiter looks at the table while the listener is down
_APPEND_BATCH = "SELECT append_batch(" + ", ".join(f"${n}" for n in range(1, 14)) + ")"


@dataclass(slots=True)
class _Append:
    response_id: str
    events: Sequence[ev.StoredEvent]
    snapshot: bytes | None
    status: ResponseStatus
    future: asyncio.Future[None]


class AppendWriter:
    """Sends the appends of each loop step as one `append_batch` call."""

    def __init__(self, db: PostgresDatabase) -> None:
        self._db = db
        self._outbox: list[_Append] = []
        self._scheduled = False
        self._inflight: set[asyncio.Task[None]] = set()
        self._busy: set[str] = set()  # responses with an append in flight
        self.calls = 0
        self.appends = 0

    def __repr__(self) -> str:
        return (
            f"<AppendWriter calls={self.calls} appends={self.appends} "
            f"queued={len(self._outbox)} inflight={len(self._inflight)}>"
        )

    def submit(self, append: _Append) -> None:
        self._outbox.append(append)
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    async def close(self) -> None:
        """Send what is queued and wait for every call in flight."""
        while self._outbox or self._inflight:
            self._flush()
            if self._inflight:
                await asyncio.wait(set(self._inflight))

    def _flush(self) -> None:
        self._scheduled = False
        while self._outbox and len(self._inflight) < INFLIGHT_LIMIT:
            batch = self._take()
            if not batch:
                return  # what is left waits for appends in flight
            task = asyncio.create_task(self._write(batch))
            self._inflight.add(task)
            task.add_done_callback(self._written)

    def _written(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        if self._outbox:
            self._flush()

    def _take(self) -> list[_Append]:
        """The next batch: the oldest appends to distinct responses that have no append
        in flight. A later append to the same response waits for a later call, so that
        the appends to one response apply in the order they were made."""
        batch: list[_Append] = []
        rest: list[_Append] = []
        blocked = set(self._busy)
        for append in self._outbox:
            if len(batch) < BATCH_LIMIT and append.response_id not in blocked:
                batch.append(append)
            else:
                rest.append(append)
            blocked.add(append.response_id)
        self._outbox = rest
        self._busy.update(append.response_id for append in batch)
        return batch

    async def _write(self, batch: list[_Append]) -> None:
        try:
            applied = await self._call(batch)
        except Exception as exc:
            error = exc if isinstance(exc, StorageError) else StorageError(str(exc))
            for append in batch:
                self._db.heads.unsure(append.response_id)
                if not append.future.done():
                    append.future.set_exception(error)
            return
        finally:
            self._busy.difference_update(append.response_id for append in batch)
        self.calls += 1
        self.appends += len(batch)
        heads = self._db.heads
        for append, ok in zip(batch, applied, strict=True):
            if ok:
                last = append.events[-1]
                heads.recent.add(append.response_id, append.events)
                heads.published(append.response_id, last.seq, finished=last.terminal)
                if not append.future.done():
                    append.future.set_result(None)
            elif not append.future.done():
                heads.recent.drop(append.response_id)
                append.future.set_exception(
                    AppendConflictError(
                        f"response {append.response_id} is gone, terminal, or not at seq "
                        f"{append.events[0].seq - 1}"
                    )
                )

    async def _call(self, batch: list[_Append]) -> list[bool]:
        out_ops: list[int] = []
        out_ids: list[str] = []
        out_items: list[bytes] = []
        for number, append in enumerate(batch, start=1):
            last = append.events[-1]
            if last.type in ADDS_OUTPUT_TO_CONVERSATION:
                # As of this batch: the snapshot given, else the terminal event's own.
                final = (
                    orjson.loads(append.snapshot)
                    if append.snapshot is not None
                    else last.payload()["response"]
                )
                for item in final["output"]:
                    out_ops.append(number)
                    out_ids.append(item["id"])
                    out_items.append(orjson.dumps(item))
        args = (
            [a.response_id for a in batch],
            [a.events[0].seq for a in batch],
            [a.events[-1].seq for a in batch],
            [joined(a.events) for a in batch],
            [a.snapshot for a in batch],
            [a.status.value for a in batch],
            [a.events[-1].terminal for a in batch],
            out_ops,
            out_ids,
            out_items,
            time.time(),
            self._db.target.events_channel,
            self._db.origin,
        )
        with translated("append"):
            for attempt in range(DEADLOCK_RETRIES + 1):
                try:
                    applied: list[bool] = await self._db.pool.fetchval(_APPEND_BATCH, *args)
                    return applied
                except asyncpg.DeadlockDetectedError:
                    if attempt == DEADLOCK_RETRIES:
                        raise
        raise AssertionError("unreachable")


class PostgresEventLog:
    def __init__(self, db: PostgresDatabase) -> None:
        self._db = db
        self.writer = AppendWriter(db)

    @property
    def db(self) -> PostgresDatabase:
        """The database behind the log (its listener and heads), for inspection."""
        return self._db

    def __repr__(self) -> str:
        return f"<PostgresEventLog {self.writer!r} {self._db.heads!r}>"

    def append(
        self,
        response_id: str,
        events: Sequence[ev.StoredEvent],
        snapshot: bytes | None,
        status: ResponseStatus,
    ) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if not events or not contiguous(events, events[0].seq):
            future.set_exception(
                AppendConflictError(f"response {response_id}: events have a gap or repeat")
            )
        else:
            self.writer.submit(_Append(response_id, events, snapshot, status, future))
        return future

    async def read_after(self, response_id: str, after: int, limit: int) -> list[ev.StoredEvent]:
        heads = self._db.heads
        recent = heads.recent.read(response_id, after, limit)
        if recent is not None:
            return recent
        known = heads.known(response_id)
        if known is not None and known <= after:
            return []  # nothing committed past the cursor: no need to ask
        token = heads.begin_read(response_id)
        head: int | None = None
        try:
            with translated("read"):
                rows = await self._db.pool.fetch(
                    "SELECT r.last_seq, r.status, e.first_seq, e.frames, r.events_expired "
                    "FROM responses r "
                    "LEFT JOIN LATERAL (SELECT first_seq, last_seq, frames FROM events "
                    "WHERE rid = r.rid AND last_seq > $2 ORDER BY last_seq LIMIT $3) e ON true "
                    "WHERE r.id = $1 ORDER BY e.last_seq",
                    response_id,
                    after,
                    limit,
                )
            if not rows:
                raise response_not_found(response_id)
            if rows[0][4]:
                raise EventsExpiredError(f"the event log of response {response_id} has expired")
            if not ResponseStatus(rows[0][1]).terminal:
                head = rows[0][0]
        finally:
            heads.end_read(response_id, token, head)
        events: list[ev.StoredEvent] = []
        for row in rows:
            if row[3] is None or not split_frames(row[2], row[3], after, events, limit):
                break
        return events

    async def wait(self, response_id: str, after: int, timeout: float) -> bool:
        heads = self._db.heads
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            waiter = heads.watch(response_id, after)  # before looking: no commit slips by
            try:
                last = heads.known(response_id)
                if last is None:  # only the table can tell
                    last = await self._head(response_id)
                    if last is None:
                        return True  # deleted: the reader finds out
                if last > after:
                    return True
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return False
                if not heads.trusted:
                    remaining = min(remaining, FALLBACK_POLL_SECONDS)
                # A bare timer on a plain future, as in `notify.Notifier.wait`: a cancel
                # always propagates.
                timer = loop.call_at(loop.time() + remaining, _expire, waiter)
                try:
                    if await waiter:
                        return True
                finally:
                    timer.cancel()
            finally:
                heads.unwatch(response_id, waiter)

    async def _head(self, response_id: str) -> int | None:
        """The last committed seq of `response_id` (None when it does not exist)."""
        heads = self._db.heads
        token = heads.begin_read(response_id)
        head: int | None = None
        try:
            with translated("read"):
                row = await self._db.pool.fetchrow(
                    "SELECT last_seq, status FROM responses WHERE id = $1", response_id
                )
            if row is None:
                return None
            if not ResponseStatus(row[1]).terminal:
                head = row[0]
            return int(row[0])
        finally:
            heads.end_read(response_id, token, head)


def _expire(waiter: asyncio.Future[bool]) -> None:
    if not waiter.done():
        waiter.set_result(False)

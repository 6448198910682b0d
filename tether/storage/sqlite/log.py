"""`SQLiteEventLog`: compare-and-append, reads (recent tail first), waits."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Sequence

from tether.domain import events as ev
from tether.domain.response import ResponseStatus
from tether.errors import (
    AppendConflictError,
    EventsExpiredError,
    response_not_found,
)
from tether.storage.base import (
    ADDS_OUTPUT_TO_CONVERSATION,
    contiguous,
)
from tether.storage.sqlite.conversations import append_output
from tether.storage.sqlite.database import SQLiteDatabase
from tether.storage.sqlite.rows import events_after, insert_events, last_seq_of


class SQLiteEventLog:
    def __init__(self, db: SQLiteDatabase) -> None:
        self._db = db

    def __repr__(self) -> str:
        return f"<SQLiteEventLog {self._db!r}>"

    def append(
        self,
        response_id: str,
        events: Sequence[ev.StoredEvent],
        snapshot: bytes | None,
        status: ResponseStatus,
    ) -> asyncio.Future[None]:
        first, last = events[0].seq, events[-1].seq
        finished = events[-1].terminal
        heads = self._db.heads

        def apply(conn: sqlite3.Connection) -> None:
            head = heads.get(conn, response_id)
            if head is None or head.status.terminal or head.last_seq != first - 1:
                raise AppendConflictError(
                    f"response {response_id} is gone, terminal, or not at seq {first - 1}"
                )
            if not contiguous(events, first):
                raise AppendConflictError(f"response {response_id}: events have a gap or repeat")
            insert_events(conn, head.rid, events)
            if snapshot is not None:
                conn.execute(
                    "UPDATE responses SET status = ?, snapshot = ?, snapshot_seq = ?, "
                    "updated_at = ? WHERE rid = ?",
                    (status.value, snapshot, last, time.time(), head.rid),
                )
            elif status is not head.status:
                conn.execute(
                    "UPDATE responses SET status = ?, updated_at = ? WHERE rid = ?",
                    (status.value, time.time(), head.rid),
                )
            if finished:
                conn.execute("DELETE FROM jobs WHERE response_id = ?", (response_id,))
                if head.conversation is not None and events[-1].type in ADDS_OUTPUT_TO_CONVERSATION:
                    append_output(conn, head.conversation, response_id, snapshot)
            head.last_seq, head.status = last, status
            heads.put(response_id, head)

        return self._db.submit(apply, lambda _: self._db.remember(response_id, events))

    async def read_after(self, response_id: str, after: int, limit: int) -> list[ev.StoredEvent]:
        recent = self._db.recent.get(response_id)
        if recent is not None and (events := recent.after(after, limit)) is not None:
            return events  # this process is the file's only writer: at the head is empty

        def select(conn: sqlite3.Connection) -> list[ev.StoredEvent]:
            row = conn.execute(
                "SELECT rid, events_expired FROM responses WHERE id = ?", (response_id,)
            ).fetchone()
            if row is None:
                raise response_not_found(response_id)
            if row[1]:
                raise EventsExpiredError(f"the event log of response {response_id} has expired")
            return events_after(conn, row[0], after, limit)

        return await self._db.read(select, snapshot=True)

    async def wait(self, response_id: str, after: int, timeout: float) -> bool:
        if not self._db.notifier.knows(response_id):
            # Not written by this process lately (finished long ago, or before a restart):
            # the file may already hold events past the cursor.
            def last_seq(conn: sqlite3.Connection) -> int:
                row = conn.execute(
                    "SELECT rid FROM responses WHERE id = ?", (response_id,)
                ).fetchone()
                return -1 if row is None else last_seq_of(conn, row[0])

            if await self._db.read(last_seq) > after:
                return True
        return await self._db.notifier.wait(response_id, after, timeout)

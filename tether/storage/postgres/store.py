"""`PostgresResponseStore`: responses, input items, terminal transitions, delete,
retention (`retention.py`)."""

from __future__ import annotations

import time
from typing import Any, Literal

import orjson

from tether.domain import events as ev
from tether.domain.fold import advance, terminal_transition
from tether.domain.response import ResponseStatus
from tether.domain.types import JSONObject
from tether.errors import InvalidRequestError, response_not_found
from tether.storage.base import (
    ItemPage,
    NewResponse,
    StoredResponse,
    conversation_not_found,
    duplicate_id,
    duplicate_item,
)
from tether.storage.notify import GONE
from tether.storage.postgres.claims import claim_key
from tether.storage.postgres.database import PostgresDatabase, joined, split_frames, translated
from tether.storage.postgres.retention import DELETE_FINISHED, DROP_LOG, OLD_LOGS

# The response row and the frames past its snapshot, in one statement (one snapshot).
_CURRENT = (
    "SELECT r.status, r.snapshot, r.snapshot_seq, r.last_seq, r.project, "
    "ARRAY(SELECT first_seq FROM events e WHERE e.rid = r.rid AND e.last_seq > r.snapshot_seq "
    "ORDER BY e.last_seq) AS firsts, "
    "ARRAY(SELECT frames FROM events e WHERE e.rid = r.rid AND e.last_seq > r.snapshot_seq "
    "ORDER BY e.last_seq) AS frames "
    "FROM responses r WHERE r.id = $1"
)


def current(response_id: str, row: Any) -> StoredResponse:
    """The response as of its last committed event, from a `_CURRENT` row."""
    status, snapshot, snapshot_seq, last_seq, project, firsts, frames = row
    later: list[ev.StoredEvent] = []
    for first_seq, batch in zip(firsts, frames, strict=True):
        split_frames(first_seq, batch, snapshot_seq, later, None)
    snapshot = advance(snapshot, snapshot_seq, [e.payload() for e in later])
    return StoredResponse(response_id, ResponseStatus(status), snapshot, last_seq, project)


class PostgresResponseStore:
    def __init__(self, db: PostgresDatabase) -> None:
        self._db = db

    def __repr__(self) -> str:
        return f"<PostgresResponseStore {self._db!r}>"

    async def create(self, new: NewResponse) -> None:
        db = self._db
        conversation_items = new.conversation_items if new.conversation_id is not None else []
        repeated = duplicate_id(conversation_items, ())
        if repeated is not None:
            assert new.conversation_id is not None
            raise duplicate_item(repeated, new.conversation_id, "input")

        async def write(conn: Any) -> None:
            row = await conn.fetchrow(
                "SELECT * FROM create_response($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, "
                "$12, $13, $14, $15, $16)",
                new.id,
                new.status.value,
                new.snapshot,
                new.events[0].seq,
                new.events[-1].seq,
                joined(new.events),
                new.created_at,
                [item["id"] for item in new.input_items],
                [orjson.dumps(item) for item in new.input_items],
                new.job,
                new.conversation_id,
                [item["id"] for item in conversation_items],
                [orjson.dumps(item) for item in conversation_items],
                db.target.jobs_channel,
                db.job_notice("+", new.id),
                new.project,
            )
            assert row is not None
            found, present = row
            if not found:
                assert new.conversation_id is not None
                raise conversation_not_found(new.conversation_id, param="conversation")
            if present:
                assert new.conversation_id is not None
                duplicate = duplicate_id(conversation_items, set(present))
                raise duplicate_item(duplicate or present[0], new.conversation_id, "input")

        if new.idempotency is None:
            with translated("create"):
                await write(db.pool)  # one round trip
        else:
            # The claim comes first; a refusal after it (raised) rolls it back.
            async with db.transaction("create") as conn:
                await claim_key(conn, new.project, new.idempotency, new.id)
                await write(conn)
        db.heads.published(new.id, new.events[-1].seq, finished=new.events[-1].terminal)
        db.job_signal.set()

    async def get(self, response_id: str) -> StoredResponse | None:
        with translated("read"):
            row = await self._db.pool.fetchrow(_CURRENT, response_id)
        return None if row is None else current(response_id, row)

    async def input_items(
        self, response_id: str, *, after: str | None, limit: int, order: Literal["asc", "desc"]
    ) -> ItemPage:
        with translated("read"):
            row = await self._db.pool.fetchrow(
                "SELECT r.rid, (SELECT min(position) FROM input_items i "
                "WHERE i.rid = r.rid AND i.id = $2) FROM responses r WHERE r.id = $1",
                response_id,
                after,
            )
            if row is None:
                raise response_not_found(response_id)
            rid, position = row
            if after is None:
                position = -1 if order == "asc" else 1 << 30
            elif position is None:
                raise InvalidRequestError(
                    f"No input item with id '{after}' in this response; pass the id of an "
                    "item from a previous page as 'after'.",
                    param="after",
                )
            comparison, direction = (">", "ASC") if order == "asc" else ("<", "DESC")
            rows = await self._db.pool.fetch(
                f"SELECT item FROM input_items WHERE rid = $1 AND position {comparison} $2 "
                f"ORDER BY position {direction} LIMIT $3",
                rid,
                position,
                limit + 1,
            )
        return ItemPage([orjson.loads(r[0]) for r in rows[:limit]], has_more=len(rows) > limit)

    async def terminate(
        self, response_id: str, status: ResponseStatus, error: JSONObject | None = None
    ) -> StoredResponse | None:
        db = self._db
        async with db.transaction("terminate") as conn:
            rid = await conn.fetchval(
                "SELECT rid FROM responses WHERE id = $1 FOR UPDATE", response_id
            )
            if rid is None:
                return None
            # Locked: nobody appends now, and this statement sees every committed event.
            stored = current(response_id, await conn.fetchrow(_CURRENT, response_id))
            if stored.status.terminal:
                return stored
            new_events, final = terminal_transition(
                orjson.loads(stored.snapshot), stored.last_seq, status, error
            )
            encoded = [ev.encode(e) for e in new_events]
            snapshot = orjson.dumps(final)
            last = encoded[-1].seq
            revoked = await conn.fetchval(
                "WITH added AS (INSERT INTO events (rid, first_seq, last_seq, frames) "
                "VALUES ($1, $2, $3, $4)), "
                "updated AS (UPDATE responses SET status = $5, snapshot = $6, snapshot_seq = $3, "
                "last_seq = $3, updated_at = $7 WHERE rid = $1), "
                "dropped AS (DELETE FROM jobs WHERE response_id = $8 RETURNING 1) "
                "SELECT EXISTS (SELECT 1 FROM dropped)",
                rid,
                encoded[0].seq,
                last,
                joined(encoded),
                status.value,
                snapshot,
                time.time(),
                response_id,
            )
            await self._notify(conn, response_id, last, revoked)
        db.heads.published(response_id, last, finished=True)
        if revoked:
            db.revoke(response_id)
        return StoredResponse(response_id, status, snapshot, last, stored.project)

    async def delete(self, response_id: str) -> bool:
        db = self._db
        async with db.transaction("delete") as conn:
            # Lock first: the deletes below then see every event committed before.
            rid = await conn.fetchval(
                "SELECT rid FROM responses WHERE id = $1 FOR UPDATE", response_id
            )
            revoked = await conn.fetchval(
                "WITH dropped AS (DELETE FROM jobs WHERE response_id = $2 RETURNING 1), "
                "items AS (DELETE FROM input_items WHERE rid = $1), "
                "events AS (DELETE FROM events WHERE rid = $1), "
                "responses AS (DELETE FROM responses WHERE rid = $1) "
                "SELECT EXISTS (SELECT 1 FROM dropped)",
                rid,
                response_id,
            )
            if rid is None and not revoked:
                return False
            await self._notify(conn, response_id, GONE if rid is not None else None, revoked)
        if rid is not None:
            db.heads.published(response_id, GONE, finished=True)
        if revoked:
            db.revoke(response_id)
        return rid is not None

    async def _notify(self, conn: Any, response_id: str, last: int | None, revoked: bool) -> None:
        """Tell the other processes, at commit: a new last event (or GONE), a revoked job."""
        db = self._db
        await conn.execute(
            "SELECT CASE WHEN $2::text IS NOT NULL THEN pg_notify($1, $2) END, "
            "CASE WHEN $4::text IS NOT NULL THEN pg_notify($3, $4) END",
            db.target.events_channel,
            None if last is None else db.events_notice([(response_id, last)]),
            db.target.jobs_channel,
            db.job_notice("-", response_id) if revoked else None,
        )

    async def expire(self, responses_before: float, events_before: float, limit: int) -> int:
        db = self._db
        async with db.transaction("expire") as conn:
            deleted = [row[0] for row in await conn.fetch(DELETE_FINISHED, responses_before, limit)]
        for response_id in deleted:
            db.heads.published(response_id, GONE, finished=True)
        async with db.transaction("expire") as conn:
            old = await conn.fetch(OLD_LOGS, events_before, limit)
            for rid, response_id in old:
                db.heads.recent.drop(response_id)
                # Locked and terminal: the fold sees every event there will be.
                stored = current(response_id, await conn.fetchrow(_CURRENT, response_id))
                await conn.execute(DROP_LOG, rid, stored.snapshot)
        return len(deleted) + len(old)

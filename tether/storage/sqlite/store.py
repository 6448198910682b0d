"""`SQLiteResponseStore`: responses, input items, terminal transitions, delete,
retention."""

from __future__ import annotations

import sqlite3
import time
from typing import Literal

import orjson

from tether.domain import events as ev
from tether.domain.fold import terminal_transition
from tether.domain.response import ResponseStatus
from tether.domain.types import JSONObject
from tether.errors import (
    InvalidRequestError,
    response_not_found,
)
from tether.storage.base import (
    ItemPage,
    NewResponse,
    StoredResponse,
    conversation_not_found,
)
from tether.storage.sqlite.claims import check_claim, write_claim
from tether.storage.sqlite.conversations import append_items, check_new, conversation_rowid
from tether.storage.sqlite.database import SQLiteDatabase
from tether.storage.sqlite.retention import delete_finished, drop_event_logs
from tether.storage.sqlite.rows import Head, current_response, insert_events


class SQLiteResponseStore:
    def __init__(self, db: SQLiteDatabase) -> None:
        self._db = db

    def __repr__(self) -> str:
        return f"<SQLiteResponseStore {self._db!r}>"

    async def create(self, new: NewResponse) -> None:
        last = new.events[-1].seq

        def insert(conn: sqlite3.Connection) -> None:
            if new.idempotency is not None:  # refuse before writing anything
                check_claim(conn, new.project, new.idempotency)
            cid = None
            if new.conversation_id is not None:
                cid = conversation_rowid(conn, new.conversation_id)
                if cid is None:  # refuse before writing anything
                    raise conversation_not_found(new.conversation_id, param="conversation")
                check_new(conn, cid, new.conversation_id, new.conversation_items, "input")
            cursor = conn.execute(
                "INSERT INTO responses (id, status, snapshot, snapshot_seq, created_at, "
                "updated_at, conversation_cid, project) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    *(new.id, new.status.value, new.snapshot, last),
                    *(new.created_at, new.created_at, cid, new.project),
                ),
            )
            rid = cursor.lastrowid
            assert rid is not None
            conn.executemany(
                "INSERT INTO input_items (response_id, position, id, item) VALUES (?, ?, ?, ?)",
                [
                    (new.id, i, item["id"], orjson.dumps(item))
                    for i, item in enumerate(new.input_items)
                ],
            )
            insert_events(conn, rid, new.events)
            conn.execute(
                "INSERT INTO jobs (response_id, queued_at, payload) VALUES (?, ?, ?)",
                (new.id, time.time(), new.job),
            )
            if cid is not None:
                append_items(conn, cid, new.conversation_items)
            if new.idempotency is not None:
                write_claim(conn, new.project, new.idempotency, new.id)
            self._db.heads.put(new.id, Head(rid, last, new.status, cid))

        def committed(_: None) -> None:
            self._db.remember(new.id, new.events)
            self._db.job_signal.set()

        await self._db.write(insert, committed)

    async def get(self, response_id: str) -> StoredResponse | None:
        return await self._db.read(lambda conn: current_response(conn, response_id), snapshot=True)

    async def input_items(
        self, response_id: str, *, after: str | None, limit: int, order: Literal["asc", "desc"]
    ) -> ItemPage:
        def select(conn: sqlite3.Connection) -> ItemPage:
            if (
                conn.execute("SELECT 1 FROM responses WHERE id = ?", (response_id,)).fetchone()
                is None
            ):
                raise response_not_found(response_id)
            position = -1 if order == "asc" else 1 << 62
            if after is not None:
                row = conn.execute(
                    "SELECT position FROM input_items WHERE response_id = ? AND id = ?",
                    (response_id, after),
                ).fetchone()
                if row is None:
                    raise InvalidRequestError(
                        f"No input item with id '{after}' in this response; pass the id of an "
                        "item from a previous page as 'after'.",
                        param="after",
                    )
                position = row[0]
            comparison, direction = (">", "ASC") if order == "asc" else ("<", "DESC")
            rows = conn.execute(
                f"SELECT item FROM input_items WHERE response_id = ? AND position {comparison} ? "
                f"ORDER BY position {direction} LIMIT ?",
                (response_id, position, limit + 1),
            ).fetchall()
            return ItemPage([orjson.loads(r[0]) for r in rows[:limit]], has_more=len(rows) > limit)

        return await self._db.read(select, snapshot=True)

    async def terminate(
        self, response_id: str, status: ResponseStatus, error: JSONObject | None = None
    ) -> StoredResponse | None:
        def transition(
            conn: sqlite3.Connection,
        ) -> tuple[StoredResponse | None, list[ev.StoredEvent], bool]:
            stored = current_response(conn, response_id)
            if stored is None or stored.status.terminal:
                return stored, [], False
            new_events, final = terminal_transition(
                orjson.loads(stored.snapshot), stored.last_seq, status, error
            )
            encoded = [ev.encode(e) for e in new_events]
            snapshot = orjson.dumps(final)
            head = self._db.heads.get(conn, response_id)
            assert head is not None
            insert_events(conn, head.rid, encoded)
            conn.execute(
                "UPDATE responses SET status = ?, snapshot = ?, snapshot_seq = ?, updated_at = ? "
                "WHERE rid = ?",
                (status.value, snapshot, encoded[-1].seq, time.time(), head.rid),
            )
            jobs = conn.execute("DELETE FROM jobs WHERE response_id = ?", (response_id,))
            self._db.heads.drop(response_id)
            return (
                StoredResponse(response_id, status, snapshot, encoded[-1].seq, stored.project),
                encoded,
                jobs.rowcount > 0,
            )

        def committed(result: tuple[StoredResponse | None, list[ev.StoredEvent], bool]) -> None:
            if result[1]:
                self._db.remember(response_id, result[1])
            if result[2]:
                self._db.revoke(response_id)

        stored, _, _ = await self._db.write(transition, committed)
        return stored

    async def delete(self, response_id: str) -> bool:
        def remove(conn: sqlite3.Connection) -> tuple[bool, bool]:
            rows = conn.execute(
                "DELETE FROM responses WHERE id = ? RETURNING rid", (response_id,)
            ).fetchall()
            conn.execute("DELETE FROM input_items WHERE response_id = ?", (response_id,))
            jobs = conn.execute("DELETE FROM jobs WHERE response_id = ?", (response_id,))
            for (rid,) in rows:
                conn.execute("DELETE FROM events WHERE rid = ?", (rid,))
            self._db.heads.drop(response_id)
            return bool(rows), jobs.rowcount > 0

        def committed(result: tuple[bool, bool]) -> None:
            if result[0]:
                self._db.forget(response_id)
            if result[1]:
                self._db.revoke(response_id)

        deleted, _ = await self._db.write(remove, committed)
        return deleted

    async def expire(self, responses_before: float, events_before: float, limit: int) -> int:
        def expire(conn: sqlite3.Connection) -> tuple[list[str], list[str]]:
            deleted = delete_finished(conn, responses_before, limit)
            return deleted, drop_event_logs(conn, events_before, limit)

        def committed(result: tuple[list[str], list[str]]) -> None:
            for response_id in result[0]:
                self._db.forget(response_id)
            for response_id in result[1]:
                self._db.recent.pop(response_id, None)

        deleted, dropped = await self._db.write(expire, committed)
        return len(deleted) + len(dropped)

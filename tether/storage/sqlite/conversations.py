"""`SQLiteConversationStore`: conversations and their items, and the row helpers the
response store and the event log use to add a response's items to its conversation."""

from __future__ import annotations

import sqlite3
from typing import Literal

import orjson

from tether.domain.types import JSONObject
from tether.storage.base import (
    DEFAULT_PROJECT,
    ItemPage,
    StoredConversation,
    conversation_not_found,
    duplicate_id,
    duplicate_item,
    unknown_after,
)
from tether.storage.sqlite.database import SQLiteDatabase
from tether.storage.sqlite.rows import current_response

# --- rows -------------------------------------------------------------------------


def conversation_rowid(conn: sqlite3.Connection, conversation_id: str) -> int | None:
    row = conn.execute("SELECT cid FROM conversations WHERE id = ?", (conversation_id,)).fetchone()
    return None if row is None else int(row[0])


def _existing_rowid(conn: sqlite3.Connection, conversation_id: str) -> int:
    cid = conversation_rowid(conn, conversation_id)
    if cid is None:
        raise conversation_not_found(conversation_id)
    return cid


def _present(conn: sqlite3.Connection, cid: int, items: list[JSONObject]) -> set[str]:
    """The ids of `items` that conversation `cid` already holds."""
    ids = [item["id"] for item in items]
    found: set[str] = set()
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        marks = ",".join("?" * len(chunk))
        rows = conn.execute(
            f"SELECT id FROM conversation_items WHERE cid = ? AND id IN ({marks})", (cid, *chunk)
        )
        found.update(row[0] for row in rows)
    return found


def check_new(
    conn: sqlite3.Connection, cid: int, conversation_id: str, items: list[JSONObject], param: str
) -> None:
    """Raise for an item whose id the conversation holds or that repeats: before any
    write, so that the group transaction's other operations still commit."""
    duplicate = duplicate_id(items, _present(conn, cid, items))
    if duplicate is not None:
        raise duplicate_item(duplicate, conversation_id, param)


def append_items(conn: sqlite3.Connection, cid: int, items: list[JSONObject]) -> None:
    """Add `items` after the last item of conversation `cid`."""
    if not items:
        return
    row = conn.execute(
        "SELECT max(position) FROM conversation_items WHERE cid = ?", (cid,)
    ).fetchone()
    start = 0 if row[0] is None else row[0] + 1
    conn.executemany(
        "INSERT INTO conversation_items (cid, position, id, item) VALUES (?, ?, ?, ?)",
        [(cid, start + i, item["id"], orjson.dumps(item)) for i, item in enumerate(items)],
    )


def append_output(
    conn: sqlite3.Connection, cid: int, response_id: str, snapshot: bytes | None
) -> None:
    """Add a finished response's output to conversation `cid`, unless it was deleted.
    `snapshot` is the final one, or None to fold the stored one forward."""
    if conn.execute("SELECT 1 FROM conversations WHERE cid = ?", (cid,)).fetchone() is None:
        return
    if snapshot is None:
        stored = current_response(conn, response_id)
        assert stored is not None  # the caller has just appended to it
        snapshot = stored.snapshot
    output: list[JSONObject] = orjson.loads(snapshot)["output"]
    present = _present(conn, cid, output)
    append_items(conn, cid, [item for item in output if item["id"] not in present])


def _stored(conn: sqlite3.Connection, conversation_id: str) -> StoredConversation | None:
    row = conn.execute(
        "SELECT created_at, metadata, project FROM conversations WHERE id = ?", (conversation_id,)
    ).fetchone()
    if row is None:
        return None
    return StoredConversation(conversation_id, row[0], orjson.loads(row[1]), row[2])


def _position(conn: sqlite3.Connection, cid: int, item_id: str) -> int | None:
    row = conn.execute(
        "SELECT min(position) FROM conversation_items WHERE cid = ? AND id = ?", (cid, item_id)
    ).fetchone()
    return None if row[0] is None else int(row[0])


# --- the store --------------------------------------------------------------------


class SQLiteConversationStore:
    def __init__(self, db: SQLiteDatabase) -> None:
        self._db = db

    def __repr__(self) -> str:
        return f"<SQLiteConversationStore {self._db!r}>"

    async def create(
        self,
        conversation_id: str,
        metadata: dict[str, str],
        items: list[JSONObject],
        created_at: int,
        project: str = DEFAULT_PROJECT,
    ) -> StoredConversation:
        def insert(conn: sqlite3.Connection) -> StoredConversation:
            duplicate = duplicate_id(items, ())
            if duplicate is not None:
                raise duplicate_item(duplicate, conversation_id, "items")
            cursor = conn.execute(
                "INSERT INTO conversations (id, metadata, created_at, project) VALUES (?, ?, ?, ?)",
                (conversation_id, orjson.dumps(metadata), created_at, project),
            )
            assert cursor.lastrowid is not None
            append_items(conn, cursor.lastrowid, items)
            return StoredConversation(conversation_id, created_at, dict(metadata), project)

        return await self._db.write(insert)

    async def get(self, conversation_id: str) -> StoredConversation | None:
        return await self._db.read(lambda conn: _stored(conn, conversation_id))

    async def update_metadata(
        self, conversation_id: str, metadata: dict[str, str]
    ) -> StoredConversation | None:
        def update(conn: sqlite3.Connection) -> StoredConversation | None:
            row = conn.execute(
                "UPDATE conversations SET metadata = ? WHERE id = ? RETURNING created_at, project",
                (orjson.dumps(metadata), conversation_id),
            ).fetchone()
            if row is None:
                return None
            return StoredConversation(conversation_id, row[0], metadata, row[1])

        return await self._db.write(update)

    async def delete(self, conversation_id: str) -> bool:
        def remove(conn: sqlite3.Connection) -> bool:
            row = conn.execute(
                "DELETE FROM conversations WHERE id = ? RETURNING cid", (conversation_id,)
            ).fetchone()
            if row is None:
                return False
            conn.execute("DELETE FROM conversation_items WHERE cid = ?", (row[0],))
            return True

        return await self._db.write(remove)

    async def add_items(self, conversation_id: str, items: list[JSONObject]) -> list[JSONObject]:
        def insert(conn: sqlite3.Connection) -> None:
            cid = _existing_rowid(conn, conversation_id)
            check_new(conn, cid, conversation_id, items, "items")
            append_items(conn, cid, items)

        await self._db.write(insert)
        added: list[JSONObject] = orjson.loads(orjson.dumps(items))  # as stored
        return added

    async def list_items(
        self,
        conversation_id: str,
        *,
        after: str | None,
        limit: int,
        order: Literal["asc", "desc"],
    ) -> ItemPage:
        def select(conn: sqlite3.Connection) -> ItemPage:
            cid = _existing_rowid(conn, conversation_id)
            position: int | None = -1 if order == "asc" else 1 << 62
            if after is not None:
                position = _position(conn, cid, after)
                if position is None:
                    raise unknown_after(after, conversation_id)
            comparison, direction = (">", "ASC") if order == "asc" else ("<", "DESC")
            rows = conn.execute(
                f"SELECT item FROM conversation_items WHERE cid = ? AND position {comparison} ? "
                f"ORDER BY position {direction} LIMIT ?",
                (cid, position, limit + 1),
            ).fetchall()
            return ItemPage([orjson.loads(r[0]) for r in rows[:limit]], has_more=len(rows) > limit)

        return await self._db.read(select, snapshot=True)

    async def get_item(self, conversation_id: str, item_id: str) -> JSONObject | None:
        def select(conn: sqlite3.Connection) -> JSONObject | None:
            row = conn.execute(
                "SELECT item FROM conversation_items WHERE cid = ? AND id = ? "
                "ORDER BY position LIMIT 1",
                (_existing_rowid(conn, conversation_id), item_id),
            ).fetchone()
            return None if row is None else orjson.loads(row[0])

        return await self._db.read(select, snapshot=True)

    async def delete_item(self, conversation_id: str, item_id: str) -> StoredConversation | None:
        def remove(conn: sqlite3.Connection) -> StoredConversation | None:
            cid = _existing_rowid(conn, conversation_id)
            position = _position(conn, cid, item_id)
            if position is None:
                return None
            conn.execute(
                "DELETE FROM conversation_items WHERE cid = ? AND position = ?", (cid, position)
            )
            return _stored(conn, conversation_id)

        return await self._db.write(remove)

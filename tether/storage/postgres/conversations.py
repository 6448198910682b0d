"""`PostgresConversationStore`: conversations and their ordered items.

Whoever adds items locks the conversation's row first (`FOR UPDATE`), so positions
are handed out one writer at a time and an id is checked against what is there.
The same lock is taken by `create_response` and `append_batch` (see `schema`).
"""

from __future__ import annotations

from typing import Any, Literal

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
from tether.storage.postgres.database import PostgresDatabase, translated


def _stored(conversation_id: str, row: Any) -> StoredConversation:
    return StoredConversation(
        conversation_id, row["created_at"], orjson.loads(row["metadata"]), row["project"]
    )


def _arrays(items: list[JSONObject]) -> tuple[list[str], list[bytes]]:
    return [item["id"] for item in items], [orjson.dumps(item) for item in items]


class PostgresConversationStore:
    def __init__(self, db: PostgresDatabase) -> None:
        self._db = db

    def __repr__(self) -> str:
        return f"<PostgresConversationStore {self._db!r}>"

    async def create(
        self,
        conversation_id: str,
        metadata: dict[str, str],
        items: list[JSONObject],
        created_at: int,
        project: str = DEFAULT_PROJECT,
    ) -> StoredConversation:
        duplicate = duplicate_id(items, ())
        if duplicate is not None:
            raise duplicate_item(duplicate, conversation_id, "items")
        with translated("create conversation"):
            await self._db.pool.execute(
                "WITH made AS (INSERT INTO conversations (id, metadata, created_at, project) "
                "VALUES ($1, $2, $3, $6) RETURNING cid) "
                "INSERT INTO conversation_items (cid, position, id, item) "
                "SELECT made.cid, o.k - 1, o.id, o.item "
                "FROM made, unnest($4::text[], $5::bytea[]) WITH ORDINALITY AS o(id, item, k)",
                conversation_id,
                orjson.dumps(metadata),
                created_at,
                *_arrays(items),
                project,
            )
        return StoredConversation(conversation_id, created_at, dict(metadata), project)

    async def get(self, conversation_id: str) -> StoredConversation | None:
        with translated("read"):
            row = await self._db.pool.fetchrow(
                "SELECT created_at, metadata, project FROM conversations WHERE id = $1",
                conversation_id,
            )
        return None if row is None else _stored(conversation_id, row)

    async def update_metadata(
        self, conversation_id: str, metadata: dict[str, str]
    ) -> StoredConversation | None:
        with translated("update conversation"):
            row = await self._db.pool.fetchrow(
                "UPDATE conversations SET metadata = $2 WHERE id = $1 "
                "RETURNING created_at, metadata, project",
                conversation_id,
                orjson.dumps(metadata),
            )
        return None if row is None else _stored(conversation_id, row)

    async def delete(self, conversation_id: str) -> bool:
        async with self._db.transaction("delete conversation") as conn:
            # Lock first: the items delete then sees every item committed before.
            cid = await conn.fetchval(
                "SELECT cid FROM conversations WHERE id = $1 FOR UPDATE", conversation_id
            )
            if cid is None:
                return False
            await conn.execute(
                "WITH items AS (DELETE FROM conversation_items WHERE cid = $1) "
                "DELETE FROM conversations WHERE cid = $1",
                cid,
            )
        return True

    async def add_items(self, conversation_id: str, items: list[JSONObject]) -> list[JSONObject]:
        duplicate = duplicate_id(items, ())
        if duplicate is not None:
            raise duplicate_item(duplicate, conversation_id, "items")
        ids, encoded = _arrays(items)
        async with self._db.transaction("add items") as conn:
            cid = await conn.fetchval(
                "SELECT cid FROM conversations WHERE id = $1 FOR UPDATE", conversation_id
            )
            if cid is None:
                raise conversation_not_found(conversation_id)
            present = await conn.fetch(
                "SELECT id FROM conversation_items WHERE cid = $1 AND id = ANY($2)", cid, ids
            )
            if present:
                duplicate = duplicate_id(items, {r[0] for r in present})
                raise duplicate_item(duplicate or present[0][0], conversation_id, "items")
            await conn.execute("SELECT add_conversation_items($1, $2, $3)", cid, ids, encoded)
        return [orjson.loads(item) for item in encoded]  # as stored

    async def list_items(
        self,
        conversation_id: str,
        *,
        after: str | None,
        limit: int,
        order: Literal["asc", "desc"],
    ) -> ItemPage:
        with translated("read"):
            row = await self._db.pool.fetchrow(
                "SELECT c.cid, (SELECT min(position) FROM conversation_items i "
                "WHERE i.cid = c.cid AND i.id = $2) FROM conversations c WHERE c.id = $1",
                conversation_id,
                after,
            )
            if row is None:
                raise conversation_not_found(conversation_id)
            cid, position = row
            if after is None:
                position = -1 if order == "asc" else 1 << 30
            elif position is None:
                raise unknown_after(after, conversation_id)
            comparison, direction = (">", "ASC") if order == "asc" else ("<", "DESC")
            rows = await self._db.pool.fetch(
                f"SELECT item FROM conversation_items WHERE cid = $1 AND position {comparison} $2 "
                f"ORDER BY position {direction} LIMIT $3",
                cid,
                position,
                limit + 1,
            )
        return ItemPage([orjson.loads(r[0]) for r in rows[:limit]], has_more=len(rows) > limit)

    async def get_item(self, conversation_id: str, item_id: str) -> JSONObject | None:
        with translated("read"):
            row = await self._db.pool.fetchrow(
                "SELECT (SELECT item FROM conversation_items i WHERE i.cid = c.cid AND i.id = $2 "
                "ORDER BY position LIMIT 1) FROM conversations c WHERE c.id = $1",
                conversation_id,
                item_id,
            )
        if row is None:
            raise conversation_not_found(conversation_id)
        if row[0] is None:
            return None
        item: JSONObject = orjson.loads(row[0])
        return item

    async def delete_item(self, conversation_id: str, item_id: str) -> StoredConversation | None:
        with translated("delete item"):
            row = await self._db.pool.fetchrow(
                "WITH c AS (SELECT cid, created_at, metadata, project FROM conversations "
                "WHERE id = $1), "
                "gone AS (DELETE FROM conversation_items i USING c "
                "WHERE i.cid = c.cid AND i.id = $2 AND i.position = (SELECT min(position) "
                "FROM conversation_items j WHERE j.cid = c.cid AND j.id = $2) RETURNING 1) "
                "SELECT created_at, metadata, project, EXISTS (SELECT 1 FROM gone) AS deleted "
                "FROM c",
                conversation_id,
                item_id,
            )
        if row is None:
            raise conversation_not_found(conversation_id)
        return _stored(conversation_id, row) if row["deleted"] else None

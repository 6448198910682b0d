"""`RedisConversationStore`: a conversation is a hash (created, metadata, generation,
next position), its items' order a sorted set (item id by position, gaps where items
were deleted) and its items a hash (id → JSON). The generation, new with every
conversation, is what a response remembers of its conversation: a response still
running when its conversation is deleted — and one made again with the same id —
adds its output nowhere."""

from __future__ import annotations

from typing import Any, Literal

import orjson

from tether.domain.types import JSONObject
from tether.errors import StorageError
from tether.storage.base import (
    DEFAULT_PROJECT,
    ItemPage,
    StoredConversation,
    conversation_not_found,
    duplicate_item,
    unknown_after,
)
from tether.storage.redis.database import RedisDatabase
from tether.storage.redis.scripts import (
    CONVERSATION_ADD,
    CONVERSATION_CREATE,
    CONVERSATION_DELETE,
    CONVERSATION_DELETE_ITEM,
    CONVERSATION_ITEM,
    CONVERSATION_PAGE,
    CONVERSATION_UPDATE,
)
from tether.storage.redis.store import item_pairs


class RedisConversationStore:
    def __init__(self, db: RedisDatabase) -> None:
        self._db = db

    def __repr__(self) -> str:
        return f"<RedisConversationStore {self._db!r}>"

    def _keys(self, conversation_id: str, *parts: str) -> list[str]:
        keys = self._db.keys
        names = {
            "conv": keys.conversation,
            "order": keys.conversation_order,
            "items": keys.conversation_items,
        }
        return [names[part](conversation_id) for part in parts]

    async def create(
        self,
        conversation_id: str,
        metadata: dict[str, str],
        items: list[JSONObject],
        created_at: int,
        project: str = DEFAULT_PROJECT,
    ) -> StoredConversation:
        reply = await self._db.wire.run(
            CONVERSATION_CREATE,
            self._keys(conversation_id, "conv", "order"),
            [
                self._db.keys.prefix,
                conversation_id,
                created_at,
                orjson.dumps(metadata),
                *item_pairs(items),
                project,  # last: the script takes it off first
            ],
        )
        if reply[0] == b"exists":
            raise StorageError(f"conversation {conversation_id} already exists")
        if reply[0] == b"duplicate":
            raise duplicate_item(reply[1].decode(), conversation_id, "items")
        return StoredConversation(conversation_id, created_at, dict(metadata), project)

    async def get(self, conversation_id: str) -> StoredConversation | None:
        created, meta, project = await self._db.wire.call(
            "HMGET", self._db.keys.conversation(conversation_id), "created", "meta", "project"
        )
        if created is None:
            return None
        return StoredConversation(
            conversation_id, int(created), orjson.loads(meta), _project(project)
        )

    async def update_metadata(
        self, conversation_id: str, metadata: dict[str, str]
    ) -> StoredConversation | None:
        reply = await self._db.wire.run(
            CONVERSATION_UPDATE, self._keys(conversation_id, "conv"), [orjson.dumps(metadata)]
        )
        if reply is None:
            return None
        created, project = reply
        return StoredConversation(conversation_id, int(created), dict(metadata), _project(project))

    async def delete(self, conversation_id: str) -> bool:
        deleted = await self._db.wire.run(
            CONVERSATION_DELETE, self._keys(conversation_id, "conv", "order", "items"), []
        )
        return bool(deleted)

    async def add_items(self, conversation_id: str, items: list[JSONObject]) -> list[JSONObject]:
        pairs = item_pairs(items)
        reply = await self._db.wire.run(
            CONVERSATION_ADD,
            self._keys(conversation_id, "conv", "order"),
            [self._db.keys.prefix, conversation_id, *pairs],
        )
        if reply[0] == b"gone":
            raise conversation_not_found(conversation_id)
        if reply[0] == b"duplicate":
            raise duplicate_item(reply[1].decode(), conversation_id, "items")
        return [orjson.loads(pairs[i]) for i in range(1, len(pairs), 2)]  # as stored

    async def list_items(
        self,
        conversation_id: str,
        *,
        after: str | None,
        limit: int,
        order: Literal["asc", "desc"],
    ) -> ItemPage:
        reply = await self._db.wire.run(
            CONVERSATION_PAGE,
            self._keys(conversation_id, "conv", "order", "items"),
            [after or "", limit, order],
        )
        self._check(reply, conversation_id)
        if reply[0] == b"after":
            assert after is not None
            raise unknown_after(after, conversation_id)
        return ItemPage([orjson.loads(item) for item in reply[2]], has_more=bool(reply[1]))

    async def get_item(self, conversation_id: str, item_id: str) -> JSONObject | None:
        reply = await self._db.wire.run(
            CONVERSATION_ITEM, self._keys(conversation_id, "conv", "items"), [item_id]
        )
        self._check(reply, conversation_id)
        item: JSONObject | None = None if reply[1] is None else orjson.loads(reply[1])
        return item

    async def delete_item(self, conversation_id: str, item_id: str) -> StoredConversation | None:
        reply = await self._db.wire.run(
            CONVERSATION_DELETE_ITEM,
            self._keys(conversation_id, "conv", "order", "items"),
            [item_id],
        )
        self._check(reply, conversation_id)
        if reply[0] == b"missing":
            return None
        return StoredConversation(
            conversation_id, int(reply[1]), orjson.loads(reply[2]), _project(reply[3])
        )

    @staticmethod
    def _check(reply: list[Any], conversation_id: str) -> None:
        if reply[0] == b"gone":
            raise conversation_not_found(conversation_id)


def _project(stored: bytes | None) -> str:
    """A conversation's project; written before projects existed: the default one."""
    return DEFAULT_PROJECT if stored is None else stored.decode()

"""`RedisResponseStore`: create (one script: row, items, first events, job, conversation
items), reads of the current response and its input items, terminate, delete,
retention (`retention.py`)."""

from __future__ import annotations

from typing import Any, Literal

import orjson

from tether.domain import events as ev
from tether.domain.fold import terminal_transition
from tether.domain.response import ResponseStatus
from tether.domain.types import JSONObject
from tether.errors import (
    AppendConflictError,
    InvalidRequestError,
    StorageError,
    response_not_found,
)
from tether.storage.base import (
    IdempotencyConflictError,
    ItemPage,
    NewResponse,
    StoredResponse,
    conversation_not_found,
    duplicate_item,
)
from tether.storage.redis.database import RedisDatabase
from tether.storage.redis.log import RedisEventLog, current
from tether.storage.redis.retention import expire
from tether.storage.redis.scripts import CREATE, CREATE_CLAIMED, DELETE, INPUT_PAGE

TERMINATE_TRIES = 50  # a runner appending meanwhile makes terminate read and try again


def item_pairs(items: list[JSONObject]) -> list[Any]:
    pairs: list[Any] = []
    for item in items:
        pairs += [item["id"], orjson.dumps(item)]
    return pairs


class RedisResponseStore:
    def __init__(self, db: RedisDatabase, log: RedisEventLog) -> None:
        self._db = db
        self._log = log

    def __repr__(self) -> str:
        return f"<RedisResponseStore {self._db!r}>"

    async def create(self, new: NewResponse) -> None:
        keys = self._db.keys
        events = new.events
        last = events[-1].seq
        frames = b"".join([e.frame for e in events])
        args: list[Any] = [
            new.id,
            new.status.value,
            new.snapshot,
            last,
            f"{last}-{len(events)}",
            frames,
            repr(new.created_at),
            new.job,
            keys.prefix,
            new.conversation_id or "",
            len(new.input_items),
            *[orjson.dumps(item) for item in new.input_items],
            *[item["id"] for item in new.input_items],
            *(item_pairs(new.conversation_items) if new.conversation_id else []),
            new.project,  # last: the script takes it off first
        ]
        script = CREATE
        script_keys = [
            keys.response(new.id),
            keys.events(new.id),
            keys.input(new.id),
            keys.input_index(new.id),
        ]
        claim = new.idempotency
        if claim is not None:
            script = CREATE_CLAIMED
            script_keys.append(keys.idempotency(new.project, claim.key))
            # After all of CREATE's arguments: the script takes these two off first.
            args += [claim.body_hash, int(claim.expires_at * 1000)]
        reply = await self._db.wire.run(script, script_keys, args)
        if reply[0] == b"held":
            raise IdempotencyConflictError(reply[1].decode(), reply[2])
        if reply[0] == b"exists":
            raise StorageError(f"response {new.id} already exists")
        if reply[0] == b"no_conversation":
            assert new.conversation_id is not None
            raise conversation_not_found(new.conversation_id, param="conversation")
        if reply[0] == b"duplicate":
            assert new.conversation_id is not None
            raise duplicate_item(reply[1].decode(), new.conversation_id, "input")
        self._db.wake.notifier.published(new.id, last)
        self._db.wake.job_signal.set()

    async def get(self, response_id: str) -> StoredResponse | None:
        return await current(self._db, response_id)

    async def input_items(
        self, response_id: str, *, after: str | None, limit: int, order: Literal["asc", "desc"]
    ) -> ItemPage:
        keys = self._db.keys
        reply = await self._db.wire.run(
            INPUT_PAGE,
            [keys.input(response_id), keys.input_index(response_id), keys.response(response_id)],
            [after or "", limit, order],
        )
        if reply[0] == b"gone":
            raise response_not_found(response_id)
        if reply[0] == b"after":
            raise InvalidRequestError(
                f"No input item with id '{after}' in this response; pass the id of an "
                "item from a previous page as 'after'.",
                param="after",
            )
        items = [orjson.loads(item) for item in reply[2]]
        if order == "desc":
            items.reverse()
        return ItemPage(items, has_more=bool(reply[1]))

    async def terminate(
        self, response_id: str, status: ResponseStatus, error: JSONObject | None = None
    ) -> StoredResponse | None:
        for _ in range(TERMINATE_TRIES):
            stored = await current(self._db, response_id)
            if stored is None or stored.status.terminal:
                return stored
            new_events, final = terminal_transition(
                orjson.loads(stored.snapshot), stored.last_seq, status, error
            )
            encoded = [ev.encode(e) for e in new_events]
            snapshot = orjson.dumps(final)
            try:
                removed_job = await self._log.commit(
                    response_id, encoded, snapshot, status, "revoke", [], bool
                )
            except AppendConflictError:
                continue  # the log moved on (or the response ended): look again
            if removed_job:
                self._db.wake.revoked_here(response_id)
            return StoredResponse(response_id, status, snapshot, encoded[-1].seq, stored.project)
        raise StorageError(
            f"could not end response {response_id}: its log kept moving while ending it"
        )

    async def delete(self, response_id: str) -> bool:
        keys = self._db.keys
        deleted = await self._db.wire.run(
            DELETE,
            [
                keys.response(response_id),
                keys.events(response_id),
                keys.input(response_id),
                keys.input_index(response_id),
            ],
            [response_id, keys.prefix, self._db.wake.origin],
        )
        if deleted == 0:
            return False
        self._db.wake.gone(response_id)
        if deleted == 2:
            self._db.wake.revoked_here(response_id)
        return True

    async def expire(self, responses_before: float, events_before: float, limit: int) -> int:
        return await expire(self._db, responses_before, events_before, limit)

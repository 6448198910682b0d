"""The in-memory backend: `store=false` responses, and the twin the contract suites
check the real backends against. Nothing survives the process; every operation
is atomic because it runs without awaiting on the event loop."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import orjson

from tether.domain import events as ev
from tether.domain.encoding import dumps
from tether.domain.fold import advance, terminal_transition
from tether.domain.response import ResponseStatus
from tether.domain.types import JSONObject
from tether.errors import (
    AppendConflictError,
    EventsExpiredError,
    StorageError,
    response_not_found,
)
from tether.storage.apikeys import MemoryKeyStore
from tether.storage.base import (
    ADDS_OUTPUT_TO_CONVERSATION,
    DEFAULT_PROJECT,
    ClaimedJob,
    IdempotencyClaim,
    IdempotencyConflictError,
    ItemPage,
    Job,
    NewResponse,
    Storage,
    StoredConversation,
    StoredResponse,
    contiguous,
    conversation_not_found,
    duplicate_id,
    duplicate_item,
    unknown_after,
)
from tether.storage.notify import GONE, JobSignal, Notifier
from tether.storage.pages import page_items


@dataclass
class _Row:
    status: ResponseStatus
    snapshot: bytes  # as of event `snapshot_seq`
    items: list[JSONObject]
    events: list[ev.StoredEvent]
    snapshot_seq: int = 0
    conversation_id: str | None = None
    project: str = DEFAULT_PROJECT
    finished_at: float | None = None
    expired_seq: int | None = None  # the last seq, once the event log was dropped

    def last_seq(self) -> int:
        return len(self.events) - 1 if self.expired_seq is None else self.expired_seq

    def current(self) -> bytes:
        """The snapshot as of the last event."""
        if self.expired_seq is None and self.snapshot_seq < len(self.events) - 1:
            later = [e.payload() for e in self.events[self.snapshot_seq + 1 :]]
            self.snapshot = advance(self.snapshot, self.snapshot_seq, later)
            self.snapshot_seq = len(self.events) - 1
        return self.snapshot


@dataclass
class _Conversation:
    created_at: int
    metadata: dict[str, str]
    items: list[JSONObject]
    project: str = DEFAULT_PROJECT

    def stored(self, conversation_id: str) -> StoredConversation:
        return StoredConversation(
            conversation_id, self.created_at, dict(self.metadata), self.project
        )

    def check_new(self, conversation_id: str, items: list[JSONObject], param: str) -> None:
        """Raise for an item whose id is already here or repeats (see `duplicate_id`)."""
        duplicate = duplicate_id(items, {item["id"] for item in self.items})
        if duplicate is not None:
            raise duplicate_item(duplicate, conversation_id, param)

    def position(self, item_id: str) -> int | None:
        for index, item in enumerate(self.items):
            if item["id"] == item_id:
                return index
        return None


def _copy(items: list[JSONObject]) -> list[JSONObject]:
    """Stored items are the store's own, as a database's would be."""
    copied: list[JSONObject] = orjson.loads(orjson.dumps(items))
    return copied


@dataclass
class _JobRow:
    payload: bytes
    owner: str | None = None
    lease_until: float = 0.0
    attempts: int = 0


@dataclass(frozen=True, slots=True)
class _Claimed:
    response_id: str
    body_hash: bytes
    expires_at: float


@dataclass
class MemoryDatabase:
    rows: dict[str, _Row] = field(default_factory=dict)
    jobs: dict[str, _JobRow] = field(default_factory=dict)  # insertion order = FIFO
    conversations: dict[str, _Conversation] = field(default_factory=dict)
    # (project, key) → its claim; insertion order is claim order, so (with one window)
    # the oldest claims are the first to expire.
    claims: dict[tuple[str, str], _Claimed] = field(default_factory=dict)
    notifier: Notifier = field(default_factory=Notifier)
    job_signal: JobSignal = field(default_factory=JobSignal)
    revoked: list[Callable[[str], None]] = field(default_factory=list)

    def revoke(self, response_id: str) -> None:
        """Drop the response's job; tell the watchers if there was one."""
        if self.jobs.pop(response_id, None) is not None:
            for callback in self.revoked:
                callback(response_id)

    def stored(self, response_id: str) -> StoredResponse | None:
        row = self.rows.get(response_id)
        if row is None:
            return None
        return StoredResponse(response_id, row.status, row.current(), row.last_seq(), row.project)

    def conversation(self, conversation_id: str) -> _Conversation:
        conversation = self.conversations.get(conversation_id)
        if conversation is None:
            raise conversation_not_found(conversation_id)
        return conversation

    def check_claim(self, project: str, claim: IdempotencyClaim) -> None:
        """Raise `IdempotencyConflictError` if the key is held; drop expired claims."""
        now = time.time()
        lapsed: list[tuple[str, str]] = []
        for scope, claimed in self.claims.items():
            if claimed.expires_at > now or len(lapsed) == 64:
                break
            lapsed.append(scope)
        for scope in lapsed:
            del self.claims[scope]
        held = self.claims.get((project, claim.key))
        if held is not None and held.expires_at > now:
            raise IdempotencyConflictError(held.response_id, held.body_hash)

    def claim(self, project: str, claim: IdempotencyClaim, response_id: str) -> None:
        scope = (project, claim.key)
        self.claims.pop(scope, None)  # a lapsed claim: the new one goes to the end
        self.claims[scope] = _Claimed(response_id, claim.body_hash, claim.expires_at)


class MemoryResponseStore:
    def __init__(self, db: MemoryDatabase) -> None:
        self._db = db

    def __repr__(self) -> str:
        return f"<MemoryResponseStore responses={len(self._db.rows)}>"

    async def create(self, new: NewResponse) -> None:
        db = self._db
        if new.id in db.rows:
            raise StorageError(f"response {new.id} already exists")
        if new.idempotency is not None:
            db.check_claim(new.project, new.idempotency)
        if new.conversation_id is not None:
            conversation = db.conversations.get(new.conversation_id)
            if conversation is None:
                raise conversation_not_found(new.conversation_id, param="conversation")
            conversation.check_new(new.conversation_id, new.conversation_items, "input")
            conversation.items.extend(_copy(new.conversation_items))
        db.rows[new.id] = _Row(
            new.status,
            new.snapshot,
            list(new.input_items),
            list(new.events),
            new.events[-1].seq,
            new.conversation_id,
            new.project,
        )
        db.jobs[new.id] = _JobRow(new.job)
        if new.idempotency is not None:
            db.claim(new.project, new.idempotency, new.id)
        db.notifier.published(new.id, new.events[-1].seq)
        db.job_signal.set()

    async def get(self, response_id: str) -> StoredResponse | None:
        return self._db.stored(response_id)

    async def input_items(
        self, response_id: str, *, after: str | None, limit: int, order: Literal["asc", "desc"]
    ) -> ItemPage:
        row = self._db.rows.get(response_id)
        if row is None:
            raise response_not_found(response_id)
        return page_items(row.items, after=after, limit=limit, order=order)

    async def terminate(
        self, response_id: str, status: ResponseStatus, error: JSONObject | None = None
    ) -> StoredResponse | None:
        row = self._db.rows.get(response_id)
        if row is None:
            return None
        if not row.status.terminal:
            new_events, final = terminal_transition(
                orjson.loads(row.current()), len(row.events) - 1, status, error
            )
            row.events.extend(ev.encode(e) for e in new_events)
            row.snapshot = dumps(final)
            row.snapshot_seq = len(row.events) - 1
            row.status = status
            row.finished_at = time.time()
            self._db.notifier.published(response_id, len(row.events) - 1, finished=True)
            self._db.revoke(response_id)
        return self._db.stored(response_id)

    async def delete(self, response_id: str) -> bool:
        row = self._db.rows.pop(response_id, None)
        if row is not None:
            self._db.notifier.published(response_id, GONE, finished=True)
        self._db.revoke(response_id)
        return row is not None

    async def expire(self, responses_before: float, events_before: float, limit: int) -> int:
        db = self._db
        old = [
            response_id
            for response_id, row in db.rows.items()
            if row.finished_at is not None and row.finished_at < responses_before
        ][:limit]
        deleted = [response_id for response_id in old if await self.delete(response_id)]
        gone = set(deleted)
        for scope in [s for s, claimed in db.claims.items() if claimed.response_id in gone]:
            del db.claims[scope]
        logs = [
            row
            for row in db.rows.values()
            if row.finished_at is not None
            and row.finished_at < events_before
            and row.expired_seq is None
        ][:limit]
        for row in logs:
            row.current()
            row.expired_seq = len(row.events) - 1
            row.events = []
        return len(deleted) + len(logs)


class MemoryEventLog:
    def __init__(self, db: MemoryDatabase) -> None:
        self._db = db

    def __repr__(self) -> str:
        return f"<MemoryEventLog responses={len(self._db.rows)}>"

    def append(
        self,
        response_id: str,
        events: Sequence[ev.StoredEvent],
        snapshot: bytes | None,
        status: ResponseStatus,
    ) -> asyncio.Future[None]:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        try:
            self._append(response_id, events, snapshot, status)
        except AppendConflictError as exc:
            done.set_exception(exc)
        else:
            done.set_result(None)
        return done

    def _append(
        self,
        response_id: str,
        events: Sequence[ev.StoredEvent],
        snapshot: bytes | None,
        status: ResponseStatus,
    ) -> None:
        row = self._db.rows.get(response_id)
        if row is None:
            raise AppendConflictError(f"response {response_id} does not exist")
        if row.status.terminal:
            raise AppendConflictError(f"response {response_id} is already {row.status}")
        if not contiguous(events, len(row.events)):
            raise AppendConflictError(
                f"response {response_id}: events must be numbered from {len(row.events)} "
                "without gaps"
            )
        row.events.extend(events)
        if snapshot is not None:
            row.snapshot, row.snapshot_seq = snapshot, events[-1].seq
        row.status = status
        finished = events[-1].terminal
        if finished:
            row.finished_at = time.time()
            self._db.jobs.pop(response_id, None)
            if row.conversation_id is not None and events[-1].type in ADDS_OUTPUT_TO_CONVERSATION:
                conversation = self._db.conversations.get(row.conversation_id)
                if conversation is not None:
                    present = {item["id"] for item in conversation.items}
                    output = orjson.loads(row.current())["output"]
                    conversation.items.extend(_copy([i for i in output if i["id"] not in present]))
        self._db.notifier.published(response_id, events[-1].seq, finished=finished)

    async def read_after(self, response_id: str, after: int, limit: int) -> list[ev.StoredEvent]:
        row = self._db.rows.get(response_id)
        if row is None:
            raise response_not_found(response_id)
        if row.expired_seq is not None:
            raise EventsExpiredError(f"the event log of response {response_id} has expired")
        return row.events[after + 1 : after + 1 + limit]

    async def wait(self, response_id: str, after: int, timeout: float) -> bool:
        row = self._db.rows.get(response_id)
        if row is not None and row.last_seq() > after:
            return True
        return await self._db.notifier.wait(response_id, after, timeout)


class MemoryJobQueue:
    def __init__(self, db: MemoryDatabase) -> None:
        self._db = db

    def __repr__(self) -> str:
        claimed = sum(1 for job in self._db.jobs.values() if job.owner is not None)
        return f"<MemoryJobQueue jobs={len(self._db.jobs)} claimed={claimed}>"

    async def claim(self, owner: str, limit: int, lease_seconds: float) -> list[Job]:
        claimed: list[Job] = []
        until = time.time() + lease_seconds
        for response_id, job in self._db.jobs.items():
            if len(claimed) >= limit:
                break
            if job.owner is None:
                job.owner, job.lease_until = owner, until
                job.attempts += 1
                claimed.append(Job(response_id, job.attempts, job.payload))
        return claimed

    async def renew(
        self, owner: str, response_ids: Sequence[str], lease_seconds: float
    ) -> set[str]:
        held: set[str] = set()
        until = time.time() + lease_seconds
        for response_id in response_ids:
            job = self._db.jobs.get(response_id)
            if job is not None and job.owner == owner:
                job.lease_until = until
                held.add(response_id)
        return held

    async def claimed(self) -> list[ClaimedJob]:
        return [
            ClaimedJob(response_id, job.owner, job.lease_until)
            for response_id, job in self._db.jobs.items()
            if job.owner is not None
        ]

    async def wait_for_jobs(self, timeout: float) -> None:
        await self._db.job_signal.wait(timeout)

    async def queued_count(self) -> int:
        return sum(1 for job in self._db.jobs.values() if job.owner is None)

    async def requeue(self, response_id: str, owner: str) -> bool:
        job = self._db.jobs.get(response_id)
        if job is None or job.owner != owner:
            return False
        job.owner, job.lease_until = None, 0.0
        self._db.job_signal.set()
        return True

    def watch_revoked(self, callback: Callable[[str], None]) -> None:
        self._db.revoked.append(callback)


class MemoryConversationStore:
    def __init__(self, db: MemoryDatabase) -> None:
        self._db = db

    def __repr__(self) -> str:
        return f"<MemoryConversationStore conversations={len(self._db.conversations)}>"

    async def create(
        self,
        conversation_id: str,
        metadata: dict[str, str],
        items: list[JSONObject],
        created_at: int,
        project: str = DEFAULT_PROJECT,
    ) -> StoredConversation:
        if conversation_id in self._db.conversations:
            raise StorageError(f"conversation {conversation_id} already exists")
        duplicate = duplicate_id(items, ())
        if duplicate is not None:
            raise duplicate_item(duplicate, conversation_id, "items")
        conversation = _Conversation(created_at, dict(metadata), _copy(items), project)
        self._db.conversations[conversation_id] = conversation
        return conversation.stored(conversation_id)

    async def get(self, conversation_id: str) -> StoredConversation | None:
        conversation = self._db.conversations.get(conversation_id)
        return None if conversation is None else conversation.stored(conversation_id)

    async def update_metadata(
        self, conversation_id: str, metadata: dict[str, str]
    ) -> StoredConversation | None:
        conversation = self._db.conversations.get(conversation_id)
        if conversation is None:
            return None
        conversation.metadata = dict(metadata)
        return conversation.stored(conversation_id)

    async def delete(self, conversation_id: str) -> bool:
        return self._db.conversations.pop(conversation_id, None) is not None

    async def add_items(self, conversation_id: str, items: list[JSONObject]) -> list[JSONObject]:
        conversation = self._db.conversation(conversation_id)
        conversation.check_new(conversation_id, items, "items")
        added = _copy(items)
        conversation.items.extend(added)
        return _copy(added)

    async def list_items(
        self,
        conversation_id: str,
        *,
        after: str | None,
        limit: int,
        order: Literal["asc", "desc"],
    ) -> ItemPage:
        conversation = self._db.conversation(conversation_id)
        if after is not None and conversation.position(after) is None:
            raise unknown_after(after, conversation_id)
        return page_items(conversation.items, after=after, limit=limit, order=order)

    async def get_item(self, conversation_id: str, item_id: str) -> JSONObject | None:
        conversation = self._db.conversation(conversation_id)
        position = conversation.position(item_id)
        return None if position is None else conversation.items[position]

    async def delete_item(self, conversation_id: str, item_id: str) -> StoredConversation | None:
        conversation = self._db.conversation(conversation_id)
        position = conversation.position(item_id)
        if position is None:
            return None
        del conversation.items[position]
        return conversation.stored(conversation_id)


def open_memory(name: str = "memory") -> Storage:
    db = MemoryDatabase()

    async def close() -> None:
        db.rows.clear()
        db.jobs.clear()
        db.conversations.clear()
        db.claims.clear()

    return Storage(
        name=name,
        responses=MemoryResponseStore(db),
        events=MemoryEventLog(db),
        jobs=MemoryJobQueue(db),
        conversations=MemoryConversationStore(db),
        close=close,
        keys=MemoryKeyStore(),
    )

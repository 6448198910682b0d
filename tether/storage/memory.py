"""The in-memory backend: `store=false` responses, and the twin the contract suite
checks the real backends against. Nothing survives the process; every operation
is atomic because it runs without awaiting on the event loop."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import orjson

from tether.domain import events as ev
from tether.domain.fold import advance, terminal_transition
from tether.domain.response import ResponseStatus
from tether.domain.types import JSONObject
from tether.errors import AppendConflictError, StorageError, response_not_found
from tether.storage.base import (
    ClaimedJob,
    ItemPage,
    Job,
    NewResponse,
    Storage,
    StoredResponse,
    contiguous,
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

    def current(self) -> bytes:
        """The snapshot as of the last event."""
        if self.snapshot_seq < len(self.events) - 1:
            later = [e.payload() for e in self.events[self.snapshot_seq + 1 :]]
            self.snapshot = advance(self.snapshot, self.snapshot_seq, later)
            self.snapshot_seq = len(self.events) - 1
        return self.snapshot


@dataclass
class _JobRow:
    payload: bytes
    owner: str | None = None
    lease_until: float = 0.0
    attempts: int = 0


@dataclass
class MemoryDatabase:
    rows: dict[str, _Row] = field(default_factory=dict)
    jobs: dict[str, _JobRow] = field(default_factory=dict)  # insertion order = FIFO
    notifier: Notifier = field(default_factory=Notifier)
    job_signal: JobSignal = field(default_factory=JobSignal)

    def stored(self, response_id: str) -> StoredResponse | None:
        row = self.rows.get(response_id)
        if row is None:
            return None
        return StoredResponse(response_id, row.status, row.current(), len(row.events) - 1)


class MemoryResponseStore:
    def __init__(self, db: MemoryDatabase) -> None:
        self._db = db

    def __repr__(self) -> str:
        return f"<MemoryResponseStore responses={len(self._db.rows)}>"

    async def create(self, new: NewResponse) -> None:
        db = self._db
        if new.id in db.rows:
            raise StorageError(f"response {new.id} already exists")
        db.rows[new.id] = _Row(
            new.status, new.snapshot, list(new.input_items), list(new.events), new.events[-1].seq
        )
        db.jobs[new.id] = _JobRow(new.job)
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
            row.snapshot = orjson.dumps(final)
            row.snapshot_seq = len(row.events) - 1
            row.status = status
            self._db.jobs.pop(response_id, None)
            self._db.notifier.published(response_id, len(row.events) - 1, finished=True)
        return self._db.stored(response_id)

    async def delete(self, response_id: str) -> bool:
        row = self._db.rows.pop(response_id, None)
        self._db.jobs.pop(response_id, None)
        if row is not None:
            self._db.notifier.published(response_id, GONE, finished=True)
        return row is not None


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
            self._db.jobs.pop(response_id, None)
        self._db.notifier.published(response_id, events[-1].seq, finished=finished)

    async def read_after(self, response_id: str, after: int, limit: int) -> list[ev.StoredEvent]:
        row = self._db.rows.get(response_id)
        if row is None:
            raise response_not_found(response_id)
        return row.events[after + 1 : after + 1 + limit]

    async def wait(self, response_id: str, after: int, timeout: float) -> bool:
        row = self._db.rows.get(response_id)
        if row is not None and len(row.events) - 1 > after:
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


def open_memory(name: str = "memory") -> Storage:
    db = MemoryDatabase()

    async def close() -> None:
        db.rows.clear()
        db.jobs.clear()

    return Storage(
        name=name,
        responses=MemoryResponseStore(db),
        events=MemoryEventLog(db),
        jobs=MemoryJobQueue(db),
        close=close,
    )

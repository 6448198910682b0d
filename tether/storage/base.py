"""The storage seams: `ResponseStore`, `EventLog`, `JobQueue`, bundled as `Storage`.

A backend is chosen by URL (`storage.registry`). Each one keeps these promises,
checked by one contract suite (`tests/storage/test_contract.py`):

- `ResponseStore.create` writes the response row, its input items, its first
  events and its job in one transaction.
- `EventLog.append` is a compare-and-append: it applies only when the response
  exists, is not terminal, and the first event's number is exactly one past the
  last stored one; then it stores the events (and the snapshot, when given)
  atomically. `ResponseStore.get` always answers the snapshot as of the last
  committed event.
  A batch that ends with a terminal event also removes the response's job.
  Otherwise it raises `AppendConflictError` and changes nothing.
- Readers see only committed events; `wait` wakes on commit, not before.
- Terminal statuses never change: `terminate` on a terminal response is a no-op
  that returns it as it is.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from tether.domain.events import StoredEvent
from tether.domain.response import ResponseStatus
from tether.domain.types import JSONObject


@dataclass(frozen=True, slots=True)
class NewResponse:
    """Everything `ResponseStore.create` writes in its one transaction."""

    id: str
    snapshot: bytes
    status: ResponseStatus
    input_items: list[JSONObject]
    events: list[StoredEvent]
    created_at: float
    job: bytes  # the job's payload: the whole generation request, as JSON


@dataclass(frozen=True, slots=True)
class StoredResponse:
    """A response row: its snapshot (JSON bytes, as served) and log position."""

    id: str
    status: ResponseStatus
    snapshot: bytes
    last_seq: int


@dataclass(frozen=True, slots=True)
class ItemPage:
    items: list[JSONObject]
    has_more: bool


@dataclass(frozen=True, slots=True)
class Job:
    """A claimed job: run response `response_id`; `attempt` counts claims from 1;
    `payload` is what to generate (JSON, written by the API at create)."""

    response_id: str
    attempt: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class ClaimedJob:
    """A job some worker holds: who, and until when (unix time) its lease runs."""

    response_id: str
    owner: str
    lease_until: float


class ResponseStore(Protocol):
    async def create(self, new: NewResponse) -> None:
        """Write the response, its input items, first events and job atomically."""
        ...

    async def get(self, response_id: str) -> StoredResponse | None: ...

    async def input_items(
        self, response_id: str, *, after: str | None, limit: int, order: Literal["asc", "desc"]
    ) -> ItemPage:
        """A page of input items. Raises `NotFoundError` for an unknown `after` id."""
        ...

    async def terminate(
        self, response_id: str, status: ResponseStatus, error: JSONObject | None = None
    ) -> StoredResponse | None:
        """Move an in-flight response to `cancelled` or `failed` from its stored
        snapshot, appending the terminal events and dropping its job, in one
        transaction. A terminal response is returned unchanged; None if unknown."""
        ...

    async def delete(self, response_id: str) -> bool:
        """Remove the response, its items, events and job. False if unknown."""
        ...


class EventLog(Protocol):
    def append(
        self,
        response_id: str,
        events: Sequence[StoredEvent],
        snapshot: bytes | None,
        status: ResponseStatus,
    ) -> Awaitable[None]:
        """Compare-and-append (see module docstring); the awaitable raises
        `AppendConflictError`. Not a coroutine function: the append is queued when
        called, so a runner can pipeline appends without a task per append.

        `snapshot` is the response as of the last event, or None to keep the stored one:
        `ResponseStore.get` folds the events past the stored snapshot, so a snapshot need
        not be written with every event. `status` is stored as given."""
        ...

    async def read_after(self, response_id: str, after: int, limit: int) -> list[StoredEvent]:
        """Committed events with `seq > after`, in order, at most `limit`.

        Raises `NotFoundError` when the response does not exist (or was deleted)."""
        ...

    async def wait(self, response_id: str, after: int, timeout: float) -> bool:
        """Until an event with `seq > after` is committed (True) or `timeout` (False)."""
        ...


class JobQueue(Protocol):
    async def claim(self, owner: str, limit: int, lease_seconds: float) -> list[Job]:
        """Claim up to `limit` unclaimed jobs, oldest first, leased to `owner`."""
        ...

    async def renew(
        self, owner: str, response_ids: Sequence[str], lease_seconds: float
    ) -> set[str]:
        """Extend the leases `owner` still holds; returns the ids it still holds."""
        ...

    async def claimed(self) -> list[ClaimedJob]:
        """Every claimed job; the sweeper decides which leases ran out or whose owner is gone."""
        ...

    async def wait_for_jobs(self, timeout: float) -> None:
        """Until a job may have been enqueued (in-process wake-up) or `timeout`."""
        ...


def contiguous(events: Sequence[StoredEvent], first: int) -> bool:
    """Whether `events` are numbered `first, first+1, …` (what every append must be)."""
    return all(event.seq == first + i for i, event in enumerate(events))


@dataclass(frozen=True)
class Storage:
    """One backend's three seams, plus how to close it."""

    name: str
    responses: ResponseStore
    events: EventLog
    jobs: JobQueue
    close: Callable[[], Awaitable[None]]

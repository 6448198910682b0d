"""The storage seams: `ResponseStore`, `EventLog`, `JobQueue`, `ConversationStore`,
`KeyStore`, bundled as `Storage`.

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

Conversations (`ConversationStore`, contract suite
`tests/storage/test_conversations_contract.py`):

- A conversation is an ordered list of items (stored as given: normalized, each with
  an `id`). `create` writes it with its first items atomically; `add_items` appends
  after the last item; deleting an item leaves the others in their order.
- Item ids are unique within a conversation (they are its paging cursors): `create`
  and `add_items` raise `InvalidRequestError` (`param="items"`), and
  `ResponseStore.create` (`param="input"`), for an item whose id the conversation
  already holds or that appears twice, and write nothing.
- A response created with `NewResponse.conversation_id` belongs to that
  conversation: in the same transaction `ResponseStore.create` appends
  `NewResponse.conversation_items` (the response's new input, not the earlier items
  `input_items` repeats) and remembers the link. When the conversation does not
  exist (or was deleted) `create` raises `NotFoundError` (`param="conversation"`)
  and writes nothing.
- An `EventLog.append` batch that ends a linked response with `response.completed`
  or `response.incomplete` appends the output items of the response as of that
  batch (`snapshot["output"]` of the snapshot passed with the batch; when it is
  None, of the stored one folded forward) to the conversation in the same
  transaction, leaving out items whose id the conversation already holds. Failed
  and cancelled responses (and `terminate`) add nothing. When the conversation was
  deleted meanwhile, nothing is added and the append applies as usual.

Idempotent creates (contract suite `tests/storage/test_idempotency_contract.py`):

- A create with `NewResponse.idempotency` claims its (project, key) in the same
  transaction as the response: both are written, or neither. When a record of that
  (project, key) exists and has not expired, `create` raises
  `IdempotencyConflictError` with the response id and body hash it holds and writes
  nothing, before any other check (so a retry never fails where its original
  succeeded, e.g. on conversation items the original added). Of concurrent creates
  with one key exactly one succeeds.
- An expired record counts as absent; the next create with its key replaces it.
  Backends remove expired records lazily (Redis: a TTL). Deleting a response keeps
  its record until it expires: a retry finds the id of a response that is gone.

Projects and keys (contract suite `tests/storage/test_keys_contract.py`):

- Every response (with its events and input items) and every conversation belongs
  to the project that created it: `NewResponse.project`, the `project` argument of
  `ConversationStore.create`. Reads answer it (`StoredResponse.project`,
  `StoredConversation.project`); rows written before projects existed belong to
  `DEFAULT_PROJECT`. The store does not compare owners: the API does, once per route.
- `KeyStore` holds API keys, each of one project, as a hash of their secret only:
  the key text is shown once, by `create`. `lookup` finds a key by its id and
  compares the hash in constant time; a revoked key is found by nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Container, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from tether.domain.events import COMPLETED, INCOMPLETE, StoredEvent
from tether.domain.response import ResponseStatus
from tether.domain.types import JSONObject
from tether.errors import InvalidRequestError, NotFoundError, TetherError

# The terminal events whose response's output is appended to its conversation.
ADDS_OUTPUT_TO_CONVERSATION = frozenset({COMPLETED, INCOMPLETE})

# The project of every request while Tether runs without API keys, and of rows
# written before projects existed.
DEFAULT_PROJECT = "default"


@dataclass(frozen=True, slots=True)
class IdempotencyClaim:
    """The `Idempotency-Key` a create claims, within the response's project
    (`NewResponse.project`): the key, the hash of the request body it was sent with,
    and when (unix time) the claim lapses."""

    key: str
    body_hash: bytes
    expires_at: float


class IdempotencyConflictError(TetherError):
    """`ResponseStore.create` found the claimed (project, key) held, unexpired, by
    response `response_id`, created from a body whose hash is `body_hash`."""

    def __init__(self, response_id: str, body_hash: bytes) -> None:
        super().__init__(f"idempotency key already used for response {response_id}")
        self.response_id = response_id
        self.body_hash = body_hash


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
    conversation_id: str | None = None  # the conversation the response belongs to
    # What create appends to that conversation: the new input only, since
    # `input_items` holds the whole context, earlier conversation items included.
    conversation_items: list[JSONObject] = field(default_factory=list)
    idempotency: IdempotencyClaim | None = None  # see "Idempotent creates" above
    project: str = DEFAULT_PROJECT  # the owner (see "Projects and keys" above)


@dataclass(frozen=True, slots=True)
class StoredResponse:
    """A response row: its snapshot (JSON bytes, as served), log position and owner."""

    id: str
    status: ResponseStatus
    snapshot: bytes
    last_seq: int
    project: str = DEFAULT_PROJECT


@dataclass(frozen=True, slots=True)
class ItemPage:
    items: list[JSONObject]
    has_more: bool


@dataclass(frozen=True, slots=True)
class StoredConversation:
    """A conversation row; `created_at` is in unix seconds."""

    id: str
    created_at: int
    metadata: dict[str, str]
    project: str = DEFAULT_PROJECT


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
        """Write the response, its input items, first events and job atomically, and
        append `new.conversation_items` to its conversation if it has one, and claim
        `new.idempotency` if given. Raises `IdempotencyConflictError` when that key is
        held, `NotFoundError` (`param="conversation"`) for an unknown conversation."""
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

    async def expire(self, responses_before: float, events_before: float, limit: int) -> int:
        """Retention, safe to run on many workers at once: delete up to `limit`
        responses that finished (reached a terminal status) before `responses_before`
        (with their events, input items and idempotency claims; conversation items
        stay), and drop the event logs of up to `limit` more that finished before
        `events_before`, after which `EventLog.read_after` on them raises
        `EventsExpiredError` while `get` still answers the snapshot. Returns how many
        responses it deleted or dropped the log of; 0 once nothing is left to do."""
        ...


class ConversationStore(Protocol):
    """Conversations and their ordered items (see the module docstring)."""

    async def create(
        self,
        conversation_id: str,
        metadata: dict[str, str],
        items: list[JSONObject],
        created_at: int,
        project: str = DEFAULT_PROJECT,
    ) -> StoredConversation:
        """Write the conversation, owned by `project`, and its first `items` (in order)
        atomically. Raises `InvalidRequestError` when two items share an id."""
        ...

    async def get(self, conversation_id: str) -> StoredConversation | None: ...

    async def update_metadata(
        self, conversation_id: str, metadata: dict[str, str]
    ) -> StoredConversation | None:
        """Replace the metadata as a whole; None if the conversation is unknown."""
        ...

    async def delete(self, conversation_id: str) -> bool:
        """Remove the conversation and its items. False if unknown. Responses that
        belonged to it are kept; their output is added nowhere."""
        ...

    async def add_items(self, conversation_id: str, items: list[JSONObject]) -> list[JSONObject]:
        """Append `items` after the last item, in order, and return them as stored.
        Raises `NotFoundError` for an unknown conversation, `InvalidRequestError`
        for an item id it already holds (or that repeats)."""
        ...

    async def list_items(
        self,
        conversation_id: str,
        *,
        after: str | None,
        limit: int,
        order: Literal["asc", "desc"],
    ) -> ItemPage:
        """A page of items, oldest first with `asc`. Raises `NotFoundError` for an
        unknown conversation, `InvalidRequestError` (`param="after"`) for an `after`
        id that is not one of its items."""
        ...

    async def get_item(self, conversation_id: str, item_id: str) -> JSONObject | None:
        """The item, or None when the conversation has no such item. Raises
        `NotFoundError` for an unknown conversation."""
        ...

    async def delete_item(self, conversation_id: str, item_id: str) -> StoredConversation | None:
        """Remove one item and return the conversation, or None when it has no such
        item. Raises `NotFoundError` for an unknown conversation."""
        ...


@dataclass(frozen=True, slots=True)
class Principal:
    """Who makes a request: a key of `project` (`key_id` names it, for limits and
    logs), or the admin key (`admin`), which manages keys and owns nothing."""

    project: str
    key_id: str
    admin: bool = False


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A stored API key as listed: never its secret. Times are unix seconds."""

    id: str
    project: str
    name: str | None
    created_at: float
    revoked_at: float | None = None


class KeyStore(Protocol):
    """API keys, stored as a hash of their secret (see the module docstring)."""

    async def create(self, project: str, name: str | None = None) -> tuple[str, str]:
        """Make a key of `project`; answers its id and its text (`tk-<id>-<secret>`),
        which is shown this once and stored only as a hash."""
        ...

    async def list(self) -> list[ApiKey]:
        """Every key, revoked ones included, oldest first."""
        ...

    async def revoke(self, key_id: str) -> bool:
        """Revoke the key for good; False if there is no key of that id."""
        ...

    async def lookup(self, key: str) -> Principal | None:
        """The principal of key text `key`; None when it is malformed, unknown or
        revoked."""
        ...


def conversation_not_found(conversation_id: str, param: str | None = None) -> NotFoundError:
    return NotFoundError(f"Conversation with id '{conversation_id}' not found.", param=param)


def duplicate_id(items: Sequence[JSONObject], present: Container[str]) -> str | None:
    """The first id of `items` that is in `present` or repeats within `items`."""
    seen: set[str] = set()
    for item in items:
        item_id = item["id"]
        if item_id in present or item_id in seen:
            return str(item_id)
        seen.add(item_id)
    return None


def duplicate_item(item_id: str, conversation_id: str, param: str) -> InvalidRequestError:
    return InvalidRequestError(
        f"Duplicate item found with id '{item_id}': conversation '{conversation_id}' already "
        f"holds an item with this id, or it appears twice in '{param}'. Remove the duplicate, "
        "or leave out its 'id' to get a new one.",
        param=param,
    )


def unknown_after(after: str, conversation_id: str) -> InvalidRequestError:
    """What `list_items` raises for an `after` cursor that is not one of the items."""
    return InvalidRequestError(
        f"No item with id '{after}' in conversation '{conversation_id}'; pass the id of an "
        "item from a previous page as 'after'.",
        param="after",
    )


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

    async def queued_count(self) -> int:
        """How many jobs wait unclaimed (the API refuses background work beyond a limit)."""
        ...

    async def requeue(self, response_id: str, owner: str) -> bool:
        """Hand back the job `owner` holds (its lease may have run out), so that a worker
        claims it again as its next attempt. False — and nothing changes — when the job
        is gone or another owner holds it now. Safe for several sweepers at once."""
        ...

    def watch_revoked(self, callback: Callable[[str], None]) -> None:
        """Call `callback(response_id)` on the event loop whenever a job is removed
        because its response was ended by `terminate` or removed by `delete` — by this
        process or any other sharing the backend — so the worker running it stops
        (a cancel reaches the worker within a second). May be called for jobs this
        process does not run; the callback ignores those."""
        ...

    async def wait_for_jobs(self, timeout: float) -> None:
        """Until a job may have been enqueued (in-process wake-up) or `timeout`."""
        ...


def contiguous(events: Sequence[StoredEvent], first: int) -> bool:
    """Whether `events` are numbered `first, first+1, …` (what every append must be)."""
    return all(event.seq == first + i for i, event in enumerate(events))


@dataclass(frozen=True)
class Storage:
    """One backend's four seams, plus how to close it."""

    name: str
    responses: ResponseStore
    events: EventLog
    jobs: JobQueue
    conversations: ConversationStore
    close: Callable[[], Awaitable[None]]
    schema_version: int = 0  # of the backend's schema, after the migrations it ran
    keys: KeyStore | None = None  # every backend has one; None only in hand-made bundles

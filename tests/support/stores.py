"""Storage backends for tests, by name, and builders of what tests put in them.

`OPENERS` maps a backend's test name to an async opener taking the test's
`tmp_path`. Every storage fixture (the contract suite, the runner and worker
tests) is parametrized over its keys. PostgreSQL and Redis open a fresh schema /
key prefix per test (see `tests.support.services`) and skip when the service is
unreachable, unless `TETHER_TEST_REQUIRE_SERVICES=1`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import orjson

from tether.domain import events as ev
from tether.domain.fold import Fold
from tether.domain.ids import message_id
from tether.domain.ids import response_id as new_response_id
from tether.domain.items import normalize_input
from tether.domain.response import ResponseStatus, build_response
from tether.domain.types import JSONObject
from tether.errors import StorageError
from tether.jobs.runner import payload_from_request
from tether.providers.base import GenerationRequest
from tether.storage.base import EventLog, NewResponse, Storage
from tether.storage.registry import open_storage

Opener = Callable[[Path], Awaitable[Storage]]
CreateResponse = Callable[..., Awaitable[NewResponse]]  # the storage suite's `create` fixture


async def _open_memory(tmp_path: Path) -> Storage:
    return await open_storage("memory://")


async def _open_sqlite(tmp_path: Path) -> Storage:
    return await open_storage(f"sqlite:///{tmp_path}/t.db")


async def _open_postgres(tmp_path: Path) -> Storage:
    from tests.support.services import open_test_postgres

    return await open_test_postgres()


async def _open_redis(tmp_path: Path) -> Storage:
    from tests.support.services import open_test_redis

    return await open_test_redis()


OPENERS: dict[str, Opener] = {
    "memory": _open_memory,
    "sqlite": _open_sqlite,
    "postgres": _open_postgres,
    "redis": _open_redis,
}


# --- builders -------------------------------------------------------------------


def user_items(*texts: str) -> list[JSONObject]:
    """Normalized user message items (each with its own `msg_…` id)."""
    return [item for text in texts for item in normalize_input(text)]


def new_response(
    *,
    model: str = "scripted",
    items: list[JSONObject] | None = None,
    background: bool = False,
    max_output_tokens: int | None = None,
    payload: bytes | None = None,
    conversation_id: str | None = None,
    conversation_items: list[JSONObject] | None = None,
) -> NewResponse:
    """A `NewResponse` built the way `tether.api.responses` builds one at create.

    With `conversation_id`, the response belongs to that conversation and appends
    `conversation_items` to it (by default: all of its input items)."""
    input_items = user_items("hello") if items is None else items
    snapshot = build_response(
        response_id=new_response_id(),
        model=model,
        created_at=int(time.time()),
        background=background,
        store=True,
        settings={"max_output_tokens": max_output_tokens},
    )
    events = [ev.encode(ev.lifecycle(ev.CREATED, snapshot, 0))]
    if background:
        events.append(ev.encode(ev.lifecycle(ev.QUEUED, snapshot, 1)))
    request = GenerationRequest(
        model=model, input_items=input_items, max_output_tokens=max_output_tokens
    )
    return NewResponse(
        id=snapshot["id"],
        snapshot=orjson.dumps(snapshot),
        status=ResponseStatus(snapshot["status"]),
        input_items=input_items,
        events=events,
        created_at=time.time(),
        job=payload if payload is not None else payload_from_request(request),
        conversation_id=conversation_id,
        conversation_items=(
            (input_items if conversation_id else [])
            if conversation_items is None
            else conversation_items
        ),
    )


# --- appending as a runner would ------------------------------------------------

TERMINAL_EVENTS = {
    ResponseStatus.COMPLETED: ev.COMPLETED,
    ResponseStatus.INCOMPLETE: ev.INCOMPLETE,
    ResponseStatus.FAILED: ev.FAILED,
}


class Script:
    """Builds the next events of one response as a runner would, keeping its snapshot."""

    def __init__(self, new: NewResponse) -> None:
        self.id = new.id
        self.fold = Fold(orjson.loads(new.snapshot), new.events[-1].seq)
        self.item_id = message_id()
        self.pieces: list[str] = []

    @property
    def next_seq(self) -> int:
        return self.fold.last_seq + 1

    def _emit(self, event: JSONObject) -> ev.StoredEvent:
        stored = ev.encode(event)
        self.fold.apply(event)
        return stored

    def start(self) -> list[ev.StoredEvent]:
        """`in_progress`, the message item and its text part."""
        snapshot = self.fold.snapshot()
        snapshot["status"] = ResponseStatus.IN_PROGRESS.value
        item = ev.message_item(self.item_id, "in_progress", [])
        return [
            self._emit(ev.lifecycle(ev.IN_PROGRESS, snapshot, self.next_seq)),
            self._emit(ev.output_item_added(0, item, self.next_seq)),
            self._emit(
                ev.content_part(
                    ev.CONTENT_PART_ADDED, self.item_id, 0, 0, ev.output_text_part(), self.next_seq
                )
            ),
        ]

    def text(self, *pieces: str) -> list[ev.StoredEvent]:
        self.pieces.extend(pieces)
        return [
            self._emit(ev.text_delta(self.item_id, 0, 0, piece, self.next_seq)) for piece in pieces
        ]

    def complete(self, status: ResponseStatus = ResponseStatus.COMPLETED) -> list[ev.StoredEvent]:
        """The done events of the item and the terminal event of `status`
        (`response.completed` by default, or `.incomplete`, `.failed`)."""
        text = "".join(self.pieces)
        part = ev.output_text_part(text)
        item = ev.message_item(self.item_id, "completed", [ev.output_text_part(text)])
        events = [
            self._emit(ev.text_done(self.item_id, 0, 0, text, self.next_seq)),
            self._emit(
                ev.content_part(ev.CONTENT_PART_DONE, self.item_id, 0, 0, part, self.next_seq)
            ),
            self._emit(ev.output_item_done(0, item, self.next_seq)),
        ]
        final = self.fold.snapshot()
        final["status"] = status.value
        if status is ResponseStatus.COMPLETED:
            final["completed_at"] = int(time.time())
        elif status is ResponseStatus.INCOMPLETE:
            final["incomplete_details"] = {"reason": "max_output_tokens"}
        else:
            final["error"] = {"code": "server_error", "message": "the model went away"}
        events.append(self._emit(ev.lifecycle(TERMINAL_EVENTS[status], final, self.next_seq)))
        return events

    def snapshot(self) -> bytes:
        return orjson.dumps(self.fold.snapshot())

    async def append(self, storage: Storage, events: list[ev.StoredEvent]) -> None:
        await storage.events.append(self.id, events, self.snapshot(), self.fold.status)


# --- a log that fails -------------------------------------------------------------


class FailingLog:
    """An `EventLog` whose `fail_on`-th append raises `StorageError` (then works again)."""

    def __init__(self, log: EventLog, fail_on: int) -> None:
        self._log = log
        self._fail_on = fail_on
        self.appends = 0

    async def append(
        self,
        response_id: str,
        events: Sequence[ev.StoredEvent],
        snapshot: bytes,
        status: ResponseStatus,
    ) -> None:
        self.appends += 1
        if self.appends == self._fail_on:
            raise StorageError("the database is briefly unavailable")
        await self._log.append(response_id, events, snapshot, status)

    async def read_after(self, response_id: str, after: int, limit: int) -> list[ev.StoredEvent]:
        return await self._log.read_after(response_id, after, limit)

    async def wait(self, response_id: str, after: int, timeout: float) -> bool:
        return await self._log.wait(response_id, after, timeout)


# --- reading a log --------------------------------------------------------------


async def started(storage: Storage) -> Script:
    """A response created with `new_response()` and started (`response.in_progress`)."""
    new = new_response()
    await storage.responses.create(new)
    script = Script(new)
    await script.append(storage, script.start())
    return script


async def read_all(storage: Storage, response_id: str, page: int = 1000) -> list[ev.StoredEvent]:
    """Every committed event of a response, read page by page."""
    events: list[ev.StoredEvent] = []
    while True:
        batch = await storage.events.read_after(response_id, events[-1].seq if events else -1, page)
        if not batch:
            return events
        events.extend(batch)


async def wait_terminal(
    storage: Storage, response_id: str, timeout: float = 10.0
) -> list[ev.StoredEvent]:
    """The whole log once it holds a terminal event (fails the test after `timeout`)."""
    async with asyncio.timeout(timeout):
        while True:
            events = await read_all(storage, response_id)
            if events and events[-1].terminal:
                return events
            await storage.events.wait(response_id, events[-1].seq if events else -1, 0.5)


async def wait_last_seq(
    storage: Storage, response_id: str, last_seq: int, timeout: float = 10.0
) -> None:
    """Until the response's log reaches `last_seq`."""
    async with asyncio.timeout(timeout):
        while True:
            stored = await storage.responses.get(response_id)
            assert stored is not None
            if stored.last_seq >= last_seq:
                return
            await storage.events.wait(response_id, stored.last_seq, 0.5)


def seqs(events: list[ev.StoredEvent]) -> list[int]:
    return [e.seq for e in events]


def types(events: list[ev.StoredEvent]) -> list[str]:
    return [e.type for e in events]

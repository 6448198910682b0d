"""The tailer while its store fails (a restart of PostgreSQL or Redis): it asks again,
with keepalives in between, and goes on where it was once the store answers; past
`outage_seconds` it raises `StorageError` with a message saying how to resume. A
response abandoned by this process's worker ends its tails with the worker's word.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Sequence
from pathlib import Path

import pytest

from tests.support.stores import new_response
from tether.domain import events as ev
from tether.domain.response import ResponseStatus
from tether.errors import StorageError, StoreUnavailableError
from tether.storage.base import EventLog, Storage
from tether.storage.memory import open_memory
from tether.storage.sqlite import open_sqlite
from tether.streaming.tail import tail


class AwayLog:
    """An `EventLog` whose reads and waits fail while `away` is set."""

    def __init__(self, log: EventLog) -> None:
        self._log = log
        self.away = False
        self.failed = 0

    def _check(self) -> None:
        if self.away:
            self.failed += 1
            raise StoreUnavailableError("the store is restarting")

    def append(
        self,
        response_id: str,
        events: Sequence[ev.StoredEvent],
        snapshot: bytes | None,
        status: ResponseStatus,
    ) -> Awaitable[None]:
        return self._log.append(response_id, events, snapshot, status)

    async def read_after(self, response_id: str, after: int, limit: int) -> list[ev.StoredEvent]:
        self._check()
        return await self._log.read_after(response_id, after, limit)

    async def wait(self, response_id: str, after: int, timeout: float) -> bool:
        self._check()
        return await self._log.wait(response_id, after, timeout)


@pytest.fixture(params=["memory", "sqlite"])
async def storage(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Storage]:
    if request.param == "memory":
        opened = open_memory()
    else:
        opened = await open_sqlite(f"sqlite:///{tmp_path / 'tail.db'}")
    try:
        yield opened
    finally:
        await opened.close()


async def started(storage: Storage) -> tuple[Storage, AwayLog, str]:
    """A response with its first event, and a storage whose log can go away."""
    new = new_response()
    await storage.responses.create(new)
    away = AwayLog(storage.events)
    return dataclasses.replace(storage, events=away), away, new.id


def lifecycle(kind: str, response_id: str, seq: int, status: str) -> ev.StoredEvent:
    snapshot = {"id": response_id, "object": "response", "status": status, "output": []}
    return ev.encode(ev.lifecycle(kind, snapshot, seq))


async def test_tail_rides_out_a_failing_store_with_keepalives(storage: Storage) -> None:
    flaky, away, response_id = await started(storage)
    stream = tail(flaky, response_id, -1, heartbeat=0.1, outage_seconds=10)
    first = await anext(stream)
    assert first is not None and [e.seq for e in first] == [0]

    away.away = True
    keepalives = 0
    for _ in range(3):  # the store is away: keepalives, no events, no error
        assert await asyncio.wait_for(anext(stream), 5) is None
        keepalives += 1
    assert away.failed > 0
    away.away = False
    done = lifecycle(ev.COMPLETED, response_id, 1, "completed")
    await storage.events.append(response_id, [done], None, ResponseStatus.COMPLETED)

    rest = [batch async for batch in stream if batch is not None]
    assert [e.seq for batch in rest for e in batch] == [1]
    assert keepalives == 3


async def test_tail_gives_up_after_outage_seconds_saying_how_to_resume(storage: Storage) -> None:
    flaky, away, response_id = await started(storage)
    stream = tail(flaky, response_id, -1, heartbeat=0.05, outage_seconds=0.3)
    assert await anext(stream) is not None
    away.away = True

    with pytest.raises(StorageError) as raised:
        async for _ in stream:
            pass
    message = str(raised.value)
    assert "could not read response" in message and "for 0.3 seconds" in message
    assert "the store is restarting" in message
    assert f"/v1/responses/{response_id}?stream=true&starting_after=" in message


async def test_tail_of_an_abandoned_response_ends_with_the_workers_word(storage: Storage) -> None:
    _, _, response_id = await started(storage)
    reasons: dict[str, str] = {}
    stream = tail(storage, response_id, -1, heartbeat=0.05, abandoned=reasons.get)
    assert await anext(stream) is not None
    assert await anext(stream) is None  # a keepalive: in progress, nothing abandoned
    reasons[response_id] = "Tether could not store this response: the disk is full"

    with pytest.raises(StorageError, match="the disk is full"):
        async for _ in stream:
            pass

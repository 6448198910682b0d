"""The runner through an unreachable store (`tether.jobs.outage`), on every backend: an
`UnreachableLog` makes appends fail with `StoreUnavailableError` — before they apply,
or after (the answer lost) — as a restart of PostgreSQL or Redis does.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from tests.support.scripted import ScriptedProvider
from tests.support.stores import OPENERS, new_response, read_all, seqs, types
from tether.domain import events as ev
from tether.domain.response import ResponseStatus
from tether.errors import StorageError, StoreUnavailableError
from tether.jobs.runner import Runner, request_from_payload
from tether.storage.base import EventLog, Storage

TEXTS = ["Hel", "lo", " wor", "ld", "!"]


@pytest.fixture(params=list(OPENERS))
async def storage(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Storage]:
    opened = await OPENERS[request.param](tmp_path)
    try:
        yield opened
    finally:
        await opened.close()


class UnreachableLog:
    """An `EventLog` whose appends `failing` (1-based: which ones) raise
    `StoreUnavailableError`; with `applied`, each fails only after it was stored."""

    def __init__(self, log: EventLog, failing: set[int], *, applied: bool = False) -> None:
        self._log = log
        self._failing = failing
        self._applied = applied
        self.appends = 0
        self.failed = asyncio.Event()  # set once an append failed

    async def append(
        self,
        response_id: str,
        events: Sequence[ev.StoredEvent],
        snapshot: bytes | None,
        status: ResponseStatus,
    ) -> None:
        self.appends += 1
        if self.appends in self._failing:
            if self._applied:
                await self._log.append(response_id, events, snapshot, status)
            self.failed.set()
            raise StoreUnavailableError("the store is restarting")
        await self._log.append(response_id, events, snapshot, status)

    async def read_after(self, response_id: str, after: int, limit: int) -> list[ev.StoredEvent]:
        return await self._log.read_after(response_id, after, limit)

    async def wait(self, response_id: str, after: int, timeout: float) -> bool:
        return await self._log.wait(response_id, after, timeout)


async def runner_for(
    storage: Storage, log: EventLog, provider: ScriptedProvider, outage_seconds: float
) -> Runner:
    new = new_response()
    await storage.responses.create(new)
    stored = await storage.responses.get(new.id)
    assert stored is not None
    return Runner(
        log, provider, stored, request_from_payload(new.job), outage_seconds=outage_seconds
    )


def text_of(log: list[ev.StoredEvent]) -> str:
    return "".join(e.payload()["delta"] for e in log if e.type == ev.OUTPUT_TEXT_DELTA)


@pytest.mark.parametrize("applied", [False, True], ids=["lost", "answer-lost"])
async def test_runner_sends_appends_again_once_the_store_is_back(
    storage: Storage, applied: bool
) -> None:
    """Appends 2 to 4 fail: unapplied ones are sent again; applied ones (their answer
    lost) are found in the log and not sent again. The log ends whole, gapless."""
    log = UnreachableLog(storage.events, {2, 3, 4}, applied=applied)
    runner = await runner_for(storage, log, ScriptedProvider(TEXTS), outage_seconds=10)

    await asyncio.wait_for(runner.run(), 10)

    stored = await read_all(storage, runner.response_id)
    assert seqs(stored) == list(range(len(stored)))
    assert stored[-1].type == ev.COMPLETED
    assert types(stored).count(ev.COMPLETED) == 1
    assert text_of(stored) == "".join(TEXTS)


async def test_runner_gives_up_after_outage_seconds(storage: Storage) -> None:
    log = UnreachableLog(storage.events, set(range(2, 1000)))
    runner = await runner_for(storage, log, ScriptedProvider(TEXTS), outage_seconds=0.3)

    with pytest.raises(StoreUnavailableError):
        await asyncio.wait_for(runner.run(), 10)
    assert log.appends > 2  # it did try again


async def test_runner_without_outage_seconds_does_not_retry(storage: Storage) -> None:
    log = UnreachableLog(storage.events, {2})
    runner = await runner_for(storage, log, ScriptedProvider(TEXTS), outage_seconds=0)

    with pytest.raises(StoreUnavailableError):
        await asyncio.wait_for(runner.run(), 10)
    assert log.appends == 2


async def test_runner_stops_when_the_response_was_ended_during_the_outage(
    storage: Storage,
) -> None:
    """A cancel lands while the store is 'away' for the runner: its resend finds other
    events in the log, and it stops without writing (the cancel stands)."""
    log = UnreachableLog(storage.events, {2})
    provider = ScriptedProvider(TEXTS, hold_at=1)
    runner = await runner_for(storage, log, provider, outage_seconds=10)
    running = asyncio.ensure_future(runner.run())
    await provider.reached.wait()
    provider.release.set()
    await asyncio.wait_for(log.failed.wait(), 5)  # its resend waits a moment
    cancelled = await storage.responses.terminate(runner.response_id, ResponseStatus.CANCELLED)
    assert cancelled is not None

    await asyncio.wait_for(running, 10)  # quietly: the response was ended elsewhere

    stored = await read_all(storage, runner.response_id)
    assert seqs(stored) == list(range(len(stored)))
    assert stored[-1].type == ev.CANCELLED
    assert types(stored).count(ev.CANCELLED) == 1


async def test_runner_does_not_retry_other_storage_errors(storage: Storage) -> None:
    class BrokenLog(UnreachableLog):
        async def append(
            self,
            response_id: str,
            events: Sequence[ev.StoredEvent],
            snapshot: bytes | None,
            status: ResponseStatus,
        ) -> None:
            self.appends += 1
            raise StorageError("the disk is full")

    log = BrokenLog(storage.events, set())
    runner = await runner_for(storage, log, ScriptedProvider(TEXTS), outage_seconds=10)

    with pytest.raises(StorageError, match="the disk is full"):
        await asyncio.wait_for(runner.run(), 10)
    assert log.appends == 1

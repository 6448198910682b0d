"""The retention contract (`ResponseStore.expire`), run against every backend:
old responses are deleted, old event logs dropped (the snapshot stays), running
responses and conversation items are kept, and workers may expire at once."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.storage.test_conversations_contract import conversation, texts
from tests.support.stores import CreateResponse, Script, read_all
from tether.domain.response import ResponseStatus
from tether.errors import EventsExpiredError, NotFoundError
from tether.storage.base import Storage

LATER = 1.0  # cut-offs this far past "now" cover every response finished so far


async def finished(storage: Storage, create: CreateResponse, **kwargs: object) -> Script:
    script = Script(await create(**kwargs))
    await script.append(storage, script.start() + script.text("an", "swer"))
    await script.append(storage, script.complete())
    return script


async def test_expire_leaves_responses_that_finished_after_the_cut_offs(
    storage: Storage, create: CreateResponse
) -> None:
    before = time.time() - LATER
    script = await finished(storage, create)

    assert await storage.responses.expire(before, before, 100) == 0

    assert await storage.responses.get(script.id) is not None
    assert len(await read_all(storage, script.id)) == script.next_seq


async def test_expire_drops_the_event_log_but_keeps_the_snapshot(
    storage: Storage, create: CreateResponse
) -> None:
    script = await finished(storage, create)
    stored = await storage.responses.get(script.id)
    now = time.time()

    assert await storage.responses.expire(now - 3600, now + LATER, 100) == 1

    with pytest.raises(EventsExpiredError, match=script.id):
        await storage.events.read_after(script.id, -1, 10)
    assert await storage.responses.get(script.id) == stored
    page = await storage.responses.input_items(script.id, after=None, limit=10, order="asc")
    assert [item["role"] for item in page.items] == ["user"]
    assert await storage.responses.expire(now - 3600, now + LATER, 100) == 0


async def test_expire_deletes_old_responses_with_their_events_and_items(
    storage: Storage, create: CreateResponse
) -> None:
    script = await finished(storage, create)
    now = time.time()

    assert await storage.responses.expire(now + LATER, now + LATER, 100) == 1

    assert await storage.responses.get(script.id) is None
    with pytest.raises(NotFoundError):
        await storage.events.read_after(script.id, -1, 10)
    with pytest.raises(NotFoundError):
        await storage.responses.input_items(script.id, after=None, limit=10, order="asc")
    assert await storage.responses.expire(now + LATER, now + LATER, 100) == 0


async def test_expire_deletes_a_response_whose_log_was_dropped_before(
    storage: Storage, create: CreateResponse
) -> None:
    script = await finished(storage, create)
    now = time.time()
    assert await storage.responses.expire(now - 3600, now + LATER, 100) == 1

    assert await storage.responses.expire(now + LATER, now + LATER, 100) == 1

    assert await storage.responses.get(script.id) is None


@pytest.mark.parametrize("background", [False, True])
async def test_expire_never_touches_a_response_in_flight(
    storage: Storage, create: CreateResponse, background: bool
) -> None:
    queued = await create(background=background)
    running = Script(await create())
    await running.append(storage, running.start() + running.text("still"))
    later = time.time() + 3600

    assert await storage.responses.expire(later, later, 100) == 0

    for response_id in (queued.id, running.id):
        assert await storage.responses.get(response_id) is not None
        assert await read_all(storage, response_id)


async def test_expire_covers_a_terminated_response(
    storage: Storage, create: CreateResponse
) -> None:
    new = await create(background=True)
    await storage.responses.terminate(new.id, ResponseStatus.CANCELLED)
    now = time.time()

    assert await storage.responses.expire(now - 3600, now + LATER, 100) == 1
    with pytest.raises(EventsExpiredError):
        await storage.events.read_after(new.id, -1, 10)
    stored = await storage.responses.get(new.id)
    assert stored is not None and stored.status is ResponseStatus.CANCELLED


async def test_expire_keeps_the_conversation_items(
    storage: Storage, create: CreateResponse
) -> None:
    conv = await conversation(storage, "first")
    await finished(storage, create, conversation_id=conv.id)
    now = time.time()

    assert await storage.responses.expire(now + LATER, now + LATER, 100) == 1

    assert await texts(storage, conv.id) == ["first", "hello", "answer"]


async def test_expire_works_in_batches_of_limit(storage: Storage, create: CreateResponse) -> None:
    ids = [(await finished(storage, create)).id for _ in range(3)]
    now = time.time()

    assert await storage.responses.expire(now + LATER, now - 3600, 2) == 2
    assert await storage.responses.expire(now + LATER, now - 3600, 2) == 1
    assert await storage.responses.expire(now + LATER, now - 3600, 2) == 0
    for response_id in ids:
        assert await storage.responses.get(response_id) is None


async def test_expire_run_by_several_workers_at_once_deletes_each_response_once(
    storage: Storage, create: CreateResponse
) -> None:
    ids = [(await finished(storage, create)).id for _ in range(6)]
    now = time.time()

    counts = await asyncio.gather(
        *(storage.responses.expire(now + LATER, now + LATER, 100) for _ in range(4))
    )

    assert sum(counts) == len(ids)
    for response_id in ids:
        assert await storage.responses.get(response_id) is None

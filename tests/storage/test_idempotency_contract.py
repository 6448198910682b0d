"""The idempotent-create contract ("Idempotent creates" in `tether/storage/base.py`),
run against every backend of `tests.support.stores.OPENERS`.

Sections: helpers · claiming · lapse · scope · refusals.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any

import pytest

from tests.support.stores import new_response, read_all, user_items
from tether.domain.ids import new_id
from tether.errors import InvalidRequestError, NotFoundError
from tether.storage.base import (
    IdempotencyClaim,
    IdempotencyConflictError,
    NewResponse,
    Storage,
)

HASH_A = b"a" * 32
HASH_B = b"b" * 32

# --- helpers --------------------------------------------------------------------


def claimed(
    key: str = "key-1",
    *,
    project: str = "default",
    body_hash: bytes = HASH_A,
    seconds: float = 3600.0,
    **kwargs: Any,
) -> NewResponse:
    """A new response (`new_response(**kwargs)`) claiming `key` for `seconds` from now
    (a negative number: a claim that has lapsed already)."""
    claim = IdempotencyClaim(key, body_hash, time.time() + seconds)
    return dataclasses.replace(new_response(**kwargs), project=project, idempotency=claim)


async def refused(storage: Storage, new: NewResponse) -> IdempotencyConflictError:
    """Create `new`, which must be refused for its key; check that nothing was written."""
    with pytest.raises(IdempotencyConflictError) as caught:
        await storage.responses.create(new)
    assert await storage.responses.get(new.id) is None
    with pytest.raises(NotFoundError):
        await storage.events.read_after(new.id, -1, 10)
    return caught.value


async def job_ids(storage: Storage) -> list[str]:
    return sorted(job.response_id for job in await storage.jobs.claim("w1", 100, 30.0))


# --- claiming ---------------------------------------------------------------------


async def test_create_with_a_held_key_answers_the_holder_and_writes_nothing(
    storage: Storage,
) -> None:
    first = claimed(body_hash=HASH_A)
    await storage.responses.create(first)

    conflict = await refused(storage, claimed(body_hash=HASH_B))

    assert (conflict.response_id, conflict.body_hash) == (first.id, HASH_A)
    assert await read_all(storage, first.id) == first.events
    assert await job_ids(storage) == [first.id]


async def test_create_with_the_same_key_and_body_is_refused_too(storage: Storage) -> None:
    first = claimed()
    await storage.responses.create(first)

    conflict = await refused(storage, claimed())

    assert (conflict.response_id, conflict.body_hash) == (first.id, HASH_A)


async def test_concurrent_creates_with_one_key_create_exactly_one_response(
    storage: Storage,
) -> None:
    attempts = [claimed("shared") for _ in range(8)]

    results = await asyncio.gather(
        *(storage.responses.create(new) for new in attempts), return_exceptions=True
    )

    winners = [new for new, result in zip(attempts, results, strict=True) if result is None]
    assert len(winners) == 1
    losers = [result for result in results if isinstance(result, IdempotencyConflictError)]
    assert len(losers) == len(attempts) - 1
    assert {loser.response_id for loser in losers} == {winners[0].id}
    for new in attempts:
        assert (await storage.responses.get(new.id) is not None) == (new is winners[0])
    assert await job_ids(storage) == [winners[0].id]


async def test_creates_with_different_keys_do_not_interfere(storage: Storage) -> None:
    first, second = claimed("key-1"), claimed("key-2")

    await storage.responses.create(first)
    await storage.responses.create(second)
    await storage.responses.create(new_response())  # and without a key

    assert await storage.responses.get(first.id) is not None
    assert await storage.responses.get(second.id) is not None


async def test_deleting_the_response_keeps_its_key_held(storage: Storage) -> None:
    first = claimed()
    await storage.responses.create(first)
    assert await storage.responses.delete(first.id)

    conflict = await refused(storage, claimed())

    assert conflict.response_id == first.id


# --- lapse ------------------------------------------------------------------------


async def test_a_lapsed_claim_counts_as_absent_and_is_replaced(storage: Storage) -> None:
    lapsed = claimed(seconds=-1.0)
    await storage.responses.create(lapsed)

    second = claimed(body_hash=HASH_B)
    await storage.responses.create(second)

    conflict = await refused(storage, claimed())
    assert (conflict.response_id, conflict.body_hash) == (second.id, HASH_B)
    assert await storage.responses.get(lapsed.id) is not None  # the response stays


async def test_a_claim_holds_until_its_window_ends(storage: Storage) -> None:
    first = claimed(seconds=0.5)
    await storage.responses.create(first)
    await refused(storage, claimed())

    await asyncio.sleep(0.7)
    second = claimed()
    await storage.responses.create(second)

    assert (await refused(storage, claimed())).response_id == second.id


async def test_many_lapsed_claims_do_not_hide_a_live_one(storage: Storage) -> None:
    for i in range(100):  # more than one sweep removes
        await storage.responses.create(claimed(f"old-{i}", seconds=-1.0))
    live = claimed("live")
    await storage.responses.create(live)
    for i in range(100):
        await storage.responses.create(claimed(f"old-{i}"))

    assert (await refused(storage, claimed("live"))).response_id == live.id


# --- scope ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (("project-1", "key"), ("project-2", "key")),
        (("a:b", "c"), ("a", "b:c")),  # the same when joined with ':'
        (("a", "b:c"), ("a:b", "c")),
    ],
)
async def test_projects_keep_their_keys_apart(
    storage: Storage, a: tuple[str, str], b: tuple[str, str]
) -> None:
    first = claimed(a[1], project=a[0])
    second = claimed(b[1], project=b[0])

    await storage.responses.create(first)
    await storage.responses.create(second)

    assert (await refused(storage, claimed(a[1], project=a[0]))).response_id == first.id
    assert (await refused(storage, claimed(b[1], project=b[0]))).response_id == second.id


# --- refusals ---------------------------------------------------------------------


async def test_a_create_refused_for_its_conversation_leaves_the_key_free(
    storage: Storage,
) -> None:
    with pytest.raises(NotFoundError):
        await storage.responses.create(claimed(conversation_id="conv_missing"))

    second = claimed()
    await storage.responses.create(second)

    assert (await refused(storage, claimed())).response_id == second.id


async def test_a_create_refused_for_a_duplicate_item_leaves_the_key_free(
    storage: Storage,
) -> None:
    items = user_items("hello")
    conversation_id = new_id("conv")
    await storage.conversations.create(conversation_id, {}, items, int(time.time()))
    with pytest.raises(InvalidRequestError):
        await storage.responses.create(
            claimed(conversation_id=conversation_id, conversation_items=items)
        )

    second = claimed()
    await storage.responses.create(second)

    assert (await refused(storage, claimed())).response_id == second.id


async def test_a_held_key_is_answered_before_the_conversation_is_checked(
    storage: Storage,
) -> None:
    conversation_id = new_id("conv")
    await storage.conversations.create(conversation_id, {}, [], int(time.time()))
    items = user_items("hello")
    first = claimed(conversation_id=conversation_id, items=items)
    await storage.responses.create(first)

    # The retry repeats the items the first attempt added: the key answers first.
    retry = claimed(conversation_id=conversation_id, items=items)
    assert (await refused(storage, retry)).response_id == first.id

    page = await storage.conversations.list_items(
        conversation_id, after=None, limit=10, order="asc"
    )
    assert page.items == items

"""The storage contract (`tether/storage/base.py`), run against every backend.

Sections: helpers · create · compare-and-append · terminate · delete · read_after ·
wait · jobs · input items · concurrency.
"""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest

from tests.support.stores import CreateResponse, Script, read_all, seqs, types, user_items
from tether.domain import events as ev
from tether.domain.fold import fold_all
from tether.domain.response import ResponseStatus
from tether.errors import AppendConflictError, InvalidRequestError, NotFoundError
from tether.storage import notify
from tether.storage.base import NewResponse, Storage

# --- helpers --------------------------------------------------------------------


def delta_at(seq: int) -> ev.StoredEvent:
    """A stray text delta with a chosen number (for appends that must not apply)."""
    return ev.encode(ev.text_delta("msg_stray", 0, 0, "stray", seq))


async def started(storage: Storage, create: CreateResponse, *pieces: str) -> Script:
    """A response in progress with `pieces` of text appended."""
    script = Script(await create())
    await script.append(storage, script.start() + script.text(*pieces))
    return script


async def completed(storage: Storage, create: CreateResponse) -> Script:
    script = await started(storage, create, "done")
    await script.append(storage, script.complete())
    return script


async def state(storage: Storage, response_id: str) -> tuple[object, list[ev.StoredEvent]]:
    """What a failed operation must leave unchanged: the row and the whole log."""
    return await storage.responses.get(response_id), await read_all(storage, response_id)


# --- create ---------------------------------------------------------------------


@pytest.mark.parametrize("background", [False, True])
async def test_create_writes_row_items_events_and_job(
    storage: Storage, create: CreateResponse, background: bool
) -> None:
    new = await create(background=background)

    stored = await storage.responses.get(new.id)
    assert stored is not None
    assert (stored.id, stored.status, stored.snapshot) == (new.id, new.status, new.snapshot)
    assert stored.last_seq == new.events[-1].seq == (1 if background else 0)
    assert await storage.events.read_after(new.id, -1, 100) == new.events
    page = await storage.responses.input_items(new.id, after=None, limit=100, order="asc")
    assert page.items == new.input_items
    assert not page.has_more
    [job] = await storage.jobs.claim("w1", 10, 30.0)
    assert (job.response_id, job.payload) == (new.id, new.job)


async def test_create_keeps_responses_apart(storage: Storage, create: CreateResponse) -> None:
    first, second = await create(), await create()

    assert await storage.events.read_after(first.id, -1, 10) == first.events
    assert await storage.events.read_after(second.id, -1, 10) == second.events
    first_page = await storage.responses.input_items(first.id, after=None, limit=10, order="asc")
    assert first_page.items == first.input_items


async def test_get_unknown_response_is_none(storage: Storage) -> None:
    assert await storage.responses.get("resp_unknown") is None


# --- compare-and-append -----------------------------------------------------------


async def test_append_next_seq_stores_events_snapshot_and_status(
    storage: Storage, create: CreateResponse
) -> None:
    new = await create()
    script = Script(new)
    events = script.start() + script.text("Hel", "lo")

    await script.append(storage, events)

    stored = await storage.responses.get(new.id)
    assert stored is not None
    assert stored.status is ResponseStatus.IN_PROGRESS
    assert stored.snapshot == script.snapshot()
    assert stored.last_seq == events[-1].seq == 5
    assert await storage.events.read_after(new.id, -1, 100) == new.events + events
    assert orjson.loads(stored.snapshot)["output"][0]["content"][0]["text"] == "Hello"


async def test_append_terminal_batch_sets_terminal_status(
    storage: Storage, create: CreateResponse
) -> None:
    script = await completed(storage, create)

    stored = await storage.responses.get(script.id)
    assert stored is not None
    assert stored.status is ResponseStatus.COMPLETED
    assert stored.snapshot == script.snapshot()
    log = await read_all(storage, script.id)
    assert log[-1].type == ev.COMPLETED
    assert seqs(log) == list(range(len(log)))


@pytest.mark.parametrize("offset", [-1, 0, 2], ids=["before-last", "duplicate", "gap"])
async def test_append_wrong_seq_conflicts_and_changes_nothing(
    storage: Storage, create: CreateResponse, offset: int
) -> None:
    script = await started(storage, create, "a")
    last = script.fold.last_seq
    before = await state(storage, script.id)

    with pytest.raises(AppendConflictError):
        await storage.events.append(
            script.id,
            [delta_at(last + offset)],
            b'{"status":"completed"}',
            ResponseStatus.COMPLETED,
        )

    assert await state(storage, script.id) == before
    [job] = await storage.jobs.claim("w1", 10, 30.0)
    assert job.response_id == script.id


async def test_append_batch_with_a_gap_inside_conflicts_and_changes_nothing(
    storage: Storage, create: CreateResponse
) -> None:
    script = await started(storage, create, "a")
    last = script.fold.last_seq
    before = await state(storage, script.id)

    with pytest.raises(AppendConflictError):
        await storage.events.append(
            script.id, [delta_at(last + 1), delta_at(last + 3)], b"{}", ResponseStatus.IN_PROGRESS
        )

    assert await state(storage, script.id) == before


async def test_append_to_unknown_response_conflicts_and_creates_nothing(storage: Storage) -> None:
    with pytest.raises(AppendConflictError):
        await storage.events.append(
            "resp_unknown", [delta_at(1)], b'{"status":"in_progress"}', ResponseStatus.IN_PROGRESS
        )

    assert await storage.responses.get("resp_unknown") is None
    with pytest.raises(NotFoundError):
        await storage.events.read_after("resp_unknown", -1, 10)


@pytest.mark.parametrize("ending", ["completed", "cancelled", "failed"])
async def test_append_to_terminal_response_conflicts_and_changes_nothing(
    storage: Storage, create: CreateResponse, ending: str
) -> None:
    if ending == "completed":
        script = await completed(storage, create)
    else:
        script = await started(storage, create, "a")
        error = {"code": "server_error", "message": "boom"} if ending == "failed" else None
        await storage.responses.terminate(script.id, ResponseStatus(ending), error)
    stored = await storage.responses.get(script.id)
    assert stored is not None
    before = await state(storage, script.id)

    with pytest.raises(AppendConflictError):
        await storage.events.append(
            script.id, [delta_at(stored.last_seq + 1)], b"{}", ResponseStatus.IN_PROGRESS
        )

    assert await state(storage, script.id) == before


async def test_append_conflict_leaves_neighbouring_appends_committed(
    storage: Storage, create: CreateResponse
) -> None:
    """A lost compare-and-append in the same (group) commit does not undo the others."""
    scripts = [await started(storage, create) for _ in range(3)]
    good = [script.text("x") for script in scripts]
    bad_seq = scripts[1].fold.last_seq + 5

    results = await asyncio.gather(
        scripts[0].append(storage, good[0]),
        storage.events.append(
            scripts[1].id, [delta_at(bad_seq)], b"{}", ResponseStatus.IN_PROGRESS
        ),
        scripts[2].append(storage, good[2]),
        return_exceptions=True,
    )

    assert results[0] is None and results[2] is None
    assert isinstance(results[1], AppendConflictError)
    for index in (0, 2):
        log = await read_all(storage, scripts[index].id)
        assert log[-1] == good[index][-1]
    stored = await storage.responses.get(scripts[1].id)
    assert stored is not None
    assert stored.last_seq == scripts[1].fold.last_seq - 1  # its "x" was never appended


async def test_append_race_on_same_seq_has_one_winner(
    storage: Storage, create: CreateResponse
) -> None:
    script = await started(storage, create)
    seq = script.next_seq
    first = ev.encode(ev.text_delta(script.item_id, 0, 0, "first", seq))
    second = ev.encode(ev.text_delta(script.item_id, 0, 0, "second", seq))

    results = await asyncio.gather(
        storage.events.append(script.id, [first], b"{}", ResponseStatus.IN_PROGRESS),
        storage.events.append(script.id, [second], b"{}", ResponseStatus.IN_PROGRESS),
        return_exceptions=True,
    )

    conflicts = [r for r in results if isinstance(r, AppendConflictError)]
    assert len(conflicts) == 1
    winner = first if results[0] is None else second
    assert (await read_all(storage, script.id))[-1] == winner


async def test_append_terminal_removes_claimed_job(
    storage: Storage, create: CreateResponse
) -> None:
    script = await started(storage, create, "a")
    [job] = await storage.jobs.claim("w1", 10, 30.0)
    assert job.response_id == script.id

    await script.append(storage, script.complete())

    assert await storage.jobs.claimed() == []
    assert await storage.jobs.claim("w2", 10, 30.0) == []
    assert await storage.jobs.renew("w1", [script.id], 30.0) == set()


async def test_append_terminal_removes_unclaimed_job(
    storage: Storage, create: CreateResponse
) -> None:
    await completed(storage, create)

    assert await storage.jobs.claim("w1", 10, 30.0) == []


async def test_append_non_terminal_keeps_job(storage: Storage, create: CreateResponse) -> None:
    script = await started(storage, create, "a")

    [job] = await storage.jobs.claim("w1", 10, 30.0)

    assert job.response_id == script.id


# --- terminate ------------------------------------------------------------------


async def test_terminate_cancelled_appends_one_cancelled_event_from_stored_snapshot(
    storage: Storage, create: CreateResponse
) -> None:
    script = await started(storage, create, "par", "tial")
    await storage.jobs.claim("w1", 10, 30.0)
    last = script.fold.last_seq
    stored_before = await storage.responses.get(script.id)
    assert stored_before is not None

    result = await storage.responses.terminate(script.id, ResponseStatus.CANCELLED)

    assert result is not None
    assert (result.status, result.last_seq) == (ResponseStatus.CANCELLED, last + 1)
    [cancelled] = await storage.events.read_after(script.id, last, 100)
    assert (cancelled.seq, cancelled.type) == (last + 1, ev.CANCELLED)
    expected = orjson.loads(stored_before.snapshot)
    expected.update(status="cancelled", usage=None, completed_at=None)
    assert cancelled.payload()["response"] == expected
    assert expected["output"][0]["content"][0]["text"] == "partial"
    assert orjson.loads(result.snapshot) == expected
    assert await storage.responses.get(script.id) == result
    assert await storage.jobs.claimed() == []
    assert await storage.jobs.claim("w2", 10, 30.0) == []
    with pytest.raises(AppendConflictError):
        await storage.events.append(script.id, [delta_at(last + 2)], b"{}", result.status)
    assert len(await read_all(storage, script.id)) == last + 2


async def test_terminate_cancelled_a_queued_response(
    storage: Storage, create: CreateResponse
) -> None:
    new = await create(background=True)

    result = await storage.responses.terminate(new.id, ResponseStatus.CANCELLED)

    assert result is not None
    assert result.status is ResponseStatus.CANCELLED
    log = await read_all(storage, new.id)
    assert types(log) == [ev.CREATED, ev.QUEUED, ev.CANCELLED]
    assert await storage.jobs.claim("w1", 10, 30.0) == []


@pytest.mark.parametrize("status", [ResponseStatus.CANCELLED, ResponseStatus.FAILED])
async def test_terminate_terminal_response_returns_it_unchanged(
    storage: Storage, create: CreateResponse, status: ResponseStatus
) -> None:
    script = await completed(storage, create)
    before = await state(storage, script.id)

    result = await storage.responses.terminate(
        script.id, status, {"code": "server_error", "message": "late"}
    )

    assert result == before[0]
    assert await state(storage, script.id) == before


async def test_terminate_twice_appends_once(storage: Storage, create: CreateResponse) -> None:
    script = await started(storage, create, "a")

    first = await storage.responses.terminate(script.id, ResponseStatus.CANCELLED)
    second = await storage.responses.terminate(script.id, ResponseStatus.CANCELLED)

    assert first == second
    log = await read_all(storage, script.id)
    assert [e.type for e in log if e.terminal] == [ev.CANCELLED]


async def test_terminate_unknown_response_is_none(storage: Storage) -> None:
    assert await storage.responses.terminate("resp_unknown", ResponseStatus.CANCELLED) is None


async def test_terminate_failed_appends_error_and_failed(
    storage: Storage, create: CreateResponse
) -> None:
    script = await started(storage, create, "a")
    assert len(await storage.jobs.claim("w1", 10, 30.0)) == 1
    last = script.fold.last_seq
    error = {"code": "server_error", "message": "The worker went away."}

    result = await storage.responses.terminate(script.id, ResponseStatus.FAILED, error)

    assert result is not None
    assert (result.status, result.last_seq) == (ResponseStatus.FAILED, last + 2)
    error_event, failed = await storage.events.read_after(script.id, last, 100)
    assert (error_event.seq, failed.seq) == (last + 1, last + 2)
    assert error_event.payload() == {
        "type": "error",
        "sequence_number": last + 1,
        "code": "server_error",
        "message": "The worker went away.",
        "param": None,
        "error": {
            "type": "server_error",
            "code": "server_error",
            "message": "The worker went away.",
            "param": None,
        },
    }
    assert failed.type == ev.FAILED
    snapshot = failed.payload()["response"]
    assert snapshot["status"] == "failed"
    assert snapshot["error"] == {"code": "server_error", "message": "The worker went away."}
    assert snapshot["usage"] is None
    assert snapshot["output"][0]["content"][0]["text"] == "a"
    assert orjson.loads(result.snapshot) == snapshot
    assert await storage.jobs.claimed() == []
    assert fold_all([e.payload() for e in await read_all(storage, script.id)]) == snapshot


# --- delete ---------------------------------------------------------------------


async def test_delete_removes_row_items_events_and_job(
    storage: Storage, create: CreateResponse
) -> None:
    script = await started(storage, create, "a")
    await storage.jobs.claim("w1", 10, 30.0)

    assert await storage.responses.delete(script.id) is True

    assert await storage.responses.get(script.id) is None
    with pytest.raises(NotFoundError):
        await storage.events.read_after(script.id, -1, 10)
    with pytest.raises(NotFoundError):
        await storage.events.read_after(script.id, 2, 10)
    with pytest.raises(NotFoundError):
        await storage.responses.input_items(script.id, after=None, limit=10, order="asc")
    assert await storage.jobs.claimed() == []
    assert await storage.jobs.claim("w2", 10, 30.0) == []
    with pytest.raises(AppendConflictError):
        await script.append(storage, script.text("b"))
    assert await storage.responses.terminate(script.id, ResponseStatus.CANCELLED) is None


async def test_delete_twice_returns_false(storage: Storage, create: CreateResponse) -> None:
    new = await create()

    assert await storage.responses.delete(new.id) is True
    assert await storage.responses.delete(new.id) is False
    assert await storage.responses.delete("resp_unknown") is False


async def test_delete_leaves_other_responses(storage: Storage, create: CreateResponse) -> None:
    kept, gone = await create(), await create()

    await storage.responses.delete(gone.id)

    assert await storage.events.read_after(kept.id, -1, 10) == kept.events
    [job] = await storage.jobs.claim("w1", 10, 30.0)
    assert job.response_id == kept.id


# --- read_after -----------------------------------------------------------------


async def test_read_after_returns_events_in_order_up_to_limit(
    storage: Storage, create: CreateResponse
) -> None:
    script = await started(storage, create, *"abcdefgh")  # seqs 0..11
    log = await storage.events.read_after(script.id, -1, 1000)
    assert seqs(log) == list(range(12))

    assert seqs(await storage.events.read_after(script.id, 3, 2)) == [4, 5]
    assert seqs(await storage.events.read_after(script.id, 9, 100)) == [10, 11]
    assert await storage.events.read_after(script.id, 11, 100) == []
    assert await storage.events.read_after(script.id, 50, 100) == []
    assert await storage.events.read_after(script.id, -1, 0) == []
    pages = [await storage.events.read_after(script.id, after, 5) for after in (-1, 4, 9)]
    assert [e for page in pages for e in page] == log


async def test_read_after_unknown_response_raises_not_found(storage: Storage) -> None:
    with pytest.raises(NotFoundError):
        await storage.events.read_after("resp_unknown", -1, 10)


async def test_read_after_returns_bytes_as_appended(
    storage: Storage, create: CreateResponse
) -> None:
    new = await create()
    script = Script(new)
    events = script.start() + script.text('héllo \u2603 "quoted"\n')

    await script.append(storage, events)

    assert await storage.events.read_after(new.id, 0, 100) == events


# --- wait -----------------------------------------------------------------------


async def test_wait_returns_at_once_when_events_are_committed(
    storage: Storage, create: CreateResponse
) -> None:
    script = await started(storage, create, "a")

    assert await asyncio.wait_for(storage.events.wait(script.id, -1, 30.0), 5.0) is True
    last = script.fold.last_seq
    assert await asyncio.wait_for(storage.events.wait(script.id, last - 1, 30.0), 5.0) is True


async def test_wait_wakes_on_commit_from_another_task(
    storage: Storage, create: CreateResponse
) -> None:
    script = await started(storage, create)
    last = script.fold.last_seq
    waiter = asyncio.create_task(storage.events.wait(script.id, last, 30.0))
    await asyncio.sleep(0.02)
    assert not waiter.done()

    events = script.text("x")
    await script.append(storage, events)

    assert await asyncio.wait_for(waiter, 5.0) is True
    assert await storage.events.read_after(script.id, last, 10) == events


async def test_wait_wakes_several_waiters(storage: Storage, create: CreateResponse) -> None:
    script = await started(storage, create)
    last = script.fold.last_seq
    waiters = [asyncio.create_task(storage.events.wait(script.id, last, 30.0)) for _ in range(5)]
    await asyncio.sleep(0.02)

    await script.append(storage, script.complete())

    assert await asyncio.wait_for(asyncio.gather(*waiters), 5.0) == [True] * 5


async def test_wait_wakes_on_terminate(storage: Storage, create: CreateResponse) -> None:
    script = await started(storage, create)
    last = script.fold.last_seq
    waiter = asyncio.create_task(storage.events.wait(script.id, last, 30.0))
    await asyncio.sleep(0.02)

    await storage.responses.terminate(script.id, ResponseStatus.CANCELLED)

    assert await asyncio.wait_for(waiter, 5.0) is True
    [event] = await storage.events.read_after(script.id, last, 10)
    assert event.type == ev.CANCELLED


async def test_wait_returns_false_on_timeout(storage: Storage, create: CreateResponse) -> None:
    script = await started(storage, create)

    assert await storage.events.wait(script.id, script.fold.last_seq, 0.05) is False


async def test_wait_ignores_commits_of_other_responses(
    storage: Storage, create: CreateResponse
) -> None:
    watched, other = await started(storage, create), await started(storage, create)

    waiter = asyncio.create_task(storage.events.wait(watched.id, watched.fold.last_seq, 0.2))
    await asyncio.sleep(0.02)
    await other.append(storage, other.text("x"))

    assert await waiter is False


async def test_wait_wakes_waiters_on_delete(storage: Storage, create: CreateResponse) -> None:
    script = await started(storage, create)
    waiter = asyncio.create_task(storage.events.wait(script.id, script.fold.last_seq, 30.0))
    await asyncio.sleep(0.02)
    assert not waiter.done()

    await storage.responses.delete(script.id)

    await asyncio.wait_for(waiter, 5.0)
    with pytest.raises(NotFoundError):
        await storage.events.read_after(script.id, script.fold.last_seq, 10)


async def test_wait_returns_at_once_for_finished_response_after_grace_period(
    storage: Storage, create: CreateResponse, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(notify, "FORGET_AFTER_SECONDS", 0.0)
    script = await completed(storage, create)
    await asyncio.sleep(0.01)  # the notifier's grace period passes

    assert await storage.events.wait(script.id, 0, 0.3) is True


async def test_wait_cancelled_just_after_a_commit_raises_cancelled(
    storage: Storage, create: CreateResponse
) -> None:
    """A tailer whose client left must stop, even if an event arrived at that moment."""
    swallowed = []
    for steps in range(4):  # cancel 0…3 loop iterations after the commit
        script = await started(storage, create)
        waiter = asyncio.create_task(storage.events.wait(script.id, script.fold.last_seq, 30.0))
        await asyncio.sleep(0.01)
        await script.append(storage, script.text("x"))
        for _ in range(steps):
            await asyncio.sleep(0)
        if not waiter.cancel():
            await waiter  # it had already returned: nothing to cancel
            continue
        try:
            await waiter
        except asyncio.CancelledError:
            continue
        swallowed.append(steps)

    assert swallowed == []


async def test_wait_for_jobs_cancelled_after_an_enqueue_raises_cancelled(
    storage: Storage, create: CreateResponse
) -> None:
    """The worker's claim loop must stop on cancel even when a job was just enqueued."""
    swallowed = []
    for steps in range(6):  # cancel 0…5 loop iterations after the wait began
        await create()  # leaves a wake-up pending
        waiter = asyncio.create_task(storage.jobs.wait_for_jobs(30.0))
        for _ in range(steps):
            await asyncio.sleep(0)
        if not waiter.cancel():
            await waiter
            continue
        try:
            await waiter
        except asyncio.CancelledError:
            continue
        swallowed.append(steps)

    assert swallowed == []


# --- jobs -----------------------------------------------------------------------


async def test_claim_is_fifo_and_respects_limit(storage: Storage, create: CreateResponse) -> None:
    ids = [(await create()).id for _ in range(5)]

    first = await storage.jobs.claim("w1", 2, 30.0)
    second = await storage.jobs.claim("w2", 2, 30.0)
    third = await storage.jobs.claim("w3", 2, 30.0)

    assert [job.response_id for job in first] == ids[:2]
    assert [job.response_id for job in second] == ids[2:4]
    assert [job.response_id for job in third] == ids[4:]
    assert await storage.jobs.claim("w4", 2, 30.0) == []


async def test_claim_carries_payload_and_counts_attempt(
    storage: Storage, create: CreateResponse
) -> None:
    news = [await create(model=f"model-{i}") for i in range(3)]

    jobs = await storage.jobs.claim("w1", 10, 30.0)

    assert [(j.response_id, j.attempt, j.payload) for j in jobs] == [(n.id, 1, n.job) for n in news]
    assert orjson.loads(jobs[1].payload)["model"] == "model-1"


async def test_claim_empty_queue_returns_nothing(storage: Storage) -> None:
    assert await storage.jobs.claim("w1", 10, 30.0) == []


async def test_claim_concurrent_claimers_get_each_job_once(
    storage: Storage, create: CreateResponse
) -> None:
    ids = {(await create()).id for _ in range(20)}

    results = await asyncio.gather(*(storage.jobs.claim(f"w{i}", 3, 30.0) for i in range(10)))

    claimed = [job.response_id for jobs in results for job in jobs]
    assert sorted(claimed) == sorted(ids)
    assert all(len(jobs) <= 3 for jobs in results)
    owners = {c.response_id: c.owner for c in await storage.jobs.claimed()}
    for index, jobs in enumerate(results):
        for job in jobs:
            assert owners[job.response_id] == f"w{index}"


async def test_queued_count_counts_unclaimed_jobs(storage: Storage, create: CreateResponse) -> None:
    assert await storage.jobs.queued_count() == 0
    for _ in range(3):
        await create()
    assert await storage.jobs.queued_count() == 3
    await storage.jobs.claim("w", 1, 30.0)
    assert await storage.jobs.queued_count() == 2


async def test_requeue_hands_a_job_back_as_its_next_attempt(
    storage: Storage, create: CreateResponse
) -> None:
    new = await create()
    (first,) = await storage.jobs.claim("dead", 1, 30.0)

    assert await storage.jobs.requeue(new.id, "someone-else") is False
    assert await storage.jobs.requeue(new.id, "dead") is True
    assert await storage.jobs.requeue(new.id, "dead") is False  # no longer held
    assert await storage.jobs.claimed() == []
    (again,) = await storage.jobs.claim("alive", 1, 30.0)

    assert (again.response_id, again.attempt, again.payload) == (new.id, 2, first.payload)
    assert await storage.jobs.requeue("resp_unknown", "alive") is False


async def test_requeue_by_concurrent_sweepers_hands_back_once(
    storage: Storage, create: CreateResponse
) -> None:
    new = await create()
    await storage.jobs.claim("dead", 1, 30.0)

    results = await asyncio.gather(*(storage.jobs.requeue(new.id, "dead") for _ in range(5)))

    assert sorted(results) == [False] * 4 + [True]


async def test_requeued_job_wakes_a_waiting_claimer(
    storage: Storage, create: CreateResponse
) -> None:
    new = await create()
    await storage.jobs.claim("dead", 1, 30.0)
    waiter = asyncio.ensure_future(storage.jobs.wait_for_jobs(5.0))
    await asyncio.sleep(0.05)
    started = time.monotonic()

    await storage.jobs.requeue(new.id, "dead")
    await asyncio.wait_for(waiter, 5.0)

    assert time.monotonic() - started < 2.0
    assert [job.response_id for job in await storage.jobs.claim("alive", 1, 30.0)] == [new.id]


async def test_watch_revoked_fires_for_terminate_and_delete_only(
    storage: Storage, create: CreateResponse
) -> None:
    revoked: list[str] = []
    both = asyncio.Event()

    def note(response_id: str) -> None:
        revoked.append(response_id)
        if len(revoked) >= 2:
            both.set()

    storage.jobs.watch_revoked(note)
    cancelled, deleted, finished = await create(), await create(), await create()
    await storage.jobs.claim("w", 3, 30.0)

    await storage.responses.terminate(cancelled.id, ResponseStatus.CANCELLED)
    await storage.responses.delete(deleted.id)
    script = Script(finished)
    await script.append(storage, script.start() + script.text("x") + script.complete())
    await storage.responses.terminate(cancelled.id, ResponseStatus.CANCELLED)  # no job left

    await asyncio.wait_for(both.wait(), 5.0)
    await asyncio.sleep(0.1)
    assert sorted(revoked) == sorted([cancelled.id, deleted.id])


async def test_renew_returns_only_ids_the_owner_holds(
    storage: Storage, create: CreateResponse
) -> None:
    mine, theirs, unclaimed = await create(), await create(), await create()
    await storage.jobs.claim("me", 1, 30.0)
    await storage.jobs.claim("them", 1, 30.0)
    finished = await completed(storage, create)

    held = await storage.jobs.renew(
        "me", [mine.id, theirs.id, unclaimed.id, finished.id, "resp_unknown"], 30.0
    )

    assert held == {mine.id}
    assert await storage.jobs.renew("me", [], 30.0) == set()


async def test_renew_extends_the_lease(storage: Storage, create: CreateResponse) -> None:
    new = await create()
    await storage.jobs.claim("me", 1, 10.0)
    [before] = await storage.jobs.claimed()

    await storage.jobs.renew("me", [new.id], 1000.0)

    [after] = await storage.jobs.claimed()
    assert after.lease_until > before.lease_until + 500
    assert after.owner == "me"


async def test_claimed_lists_owners_and_leases(storage: Storage, create: CreateResponse) -> None:
    first, second, _unclaimed = await create(), await create(), await create()
    start = time.time()
    await storage.jobs.claim("alpha", 1, 30.0)
    await storage.jobs.claim("beta", 1, 60.0)
    end = time.time()

    claimed = {c.response_id: c for c in await storage.jobs.claimed()}

    assert set(claimed) == {first.id, second.id}
    assert claimed[first.id].owner == "alpha"
    assert claimed[second.id].owner == "beta"
    assert start + 30.0 <= claimed[first.id].lease_until <= end + 30.0
    assert start + 60.0 <= claimed[second.id].lease_until <= end + 60.0


async def test_wait_for_jobs_wakes_on_create(storage: Storage, create: CreateResponse) -> None:
    await storage.jobs.wait_for_jobs(0.01)  # consume a wake-up left by earlier work
    waiter = asyncio.create_task(storage.jobs.wait_for_jobs(30.0))
    await asyncio.sleep(0.02)
    assert not waiter.done()

    await create()

    await asyncio.wait_for(waiter, 5.0)


# --- input items ----------------------------------------------------------------


async def five_items(create: CreateResponse) -> tuple[NewResponse, list[str]]:
    new = await create(items=user_items("one", "two", "three", "four", "five"))
    return new, [item["id"] for item in new.input_items]


async def test_input_items_pages_ascending(storage: Storage, create: CreateResponse) -> None:
    new, ids = await five_items(create)
    page = storage.responses.input_items

    first = await page(new.id, after=None, limit=2, order="asc")
    second = await page(new.id, after=ids[1], limit=2, order="asc")
    third = await page(new.id, after=ids[3], limit=2, order="asc")

    assert [i["id"] for i in first.items] == ids[:2] and first.has_more
    assert [i["id"] for i in second.items] == ids[2:4] and second.has_more
    assert [i["id"] for i in third.items] == ids[4:] and not third.has_more
    assert first.items == new.input_items[:2]


async def test_input_items_pages_descending(storage: Storage, create: CreateResponse) -> None:
    new, ids = await five_items(create)
    page = storage.responses.input_items

    first = await page(new.id, after=None, limit=3, order="desc")
    second = await page(new.id, after=ids[2], limit=3, order="desc")

    assert [i["id"] for i in first.items] == ids[:1:-1] and first.has_more
    assert [i["id"] for i in second.items] == ids[1::-1] and not second.has_more


async def test_input_items_has_more_is_false_on_exact_fit(
    storage: Storage, create: CreateResponse
) -> None:
    new, ids = await five_items(create)
    page = storage.responses.input_items

    whole = await page(new.id, after=None, limit=5, order="asc")
    last = await page(new.id, after=ids[4], limit=5, order="asc")
    last_desc = await page(new.id, after=ids[0], limit=5, order="desc")

    assert [i["id"] for i in whole.items] == ids and not whole.has_more
    assert last.items == [] and not last.has_more
    assert last_desc.items == [] and not last_desc.has_more


async def test_input_items_unknown_after_is_invalid(
    storage: Storage, create: CreateResponse
) -> None:
    new, _ = await five_items(create)
    _, other_ids = await five_items(create)

    with pytest.raises(InvalidRequestError) as caught:
        await storage.responses.input_items(new.id, after="msg_nope", limit=2, order="asc")
    assert caught.value.param == "after"
    with pytest.raises(InvalidRequestError):  # an item of another response is unknown here
        await storage.responses.input_items(new.id, after=other_ids[0], limit=2, order="desc")


async def test_input_items_unknown_response_is_not_found(storage: Storage) -> None:
    with pytest.raises(NotFoundError):
        await storage.responses.input_items("resp_unknown", after=None, limit=2, order="asc")


# --- concurrency ------------------------------------------------------------------


async def test_concurrent_appenders_all_commit_with_gapless_logs(
    storage: Storage, create: CreateResponse
) -> None:
    scripts = [Script(await create()) for _ in range(40)]

    async def run(script: Script) -> None:
        await script.append(storage, script.start())
        for index in range(25):
            await script.append(storage, script.text(str(index)))
        await script.append(storage, script.complete())

    await asyncio.gather(*(run(script) for script in scripts))

    for script in scripts:
        log = await read_all(storage, script.id)
        assert seqs(log) == list(range(script.fold.last_seq + 1))
        assert log[-1].type == ev.COMPLETED
        stored = await storage.responses.get(script.id)
        assert stored is not None
        assert stored.status is ResponseStatus.COMPLETED
        assert stored.last_seq == script.fold.last_seq
        assert fold_all([e.payload() for e in log]) == orjson.loads(stored.snapshot)
    assert await storage.jobs.claim("w1", 100, 30.0) == []


# --- snapshots written now and then -------------------------------------------------


async def test_get_folds_the_events_past_a_stale_snapshot(
    storage: Storage, create: CreateResponse
) -> None:
    script = await started(storage, create, "a")
    for piece in ("b", "c", "d"):
        events = script.text(piece)
        await storage.events.append(script.id, events, None, script.fold.status)

    stored = await storage.responses.get(script.id)

    assert stored is not None
    assert stored.last_seq == script.fold.last_seq
    assert orjson.loads(stored.snapshot) == orjson.loads(script.snapshot())
    assert orjson.loads(stored.snapshot)["output"][0]["content"][0]["text"] == "abcd"


async def test_terminate_starts_from_the_current_not_the_stored_snapshot(
    storage: Storage, create: CreateResponse
) -> None:
    script = await started(storage, create, "a")
    await storage.events.append(script.id, script.text("b"), None, script.fold.status)

    cancelled = await storage.responses.terminate(script.id, ResponseStatus.CANCELLED)

    assert cancelled is not None
    snapshot = orjson.loads(cancelled.snapshot)
    assert snapshot["status"] == "cancelled"
    assert snapshot["output"][0]["content"][0]["text"] == "ab"

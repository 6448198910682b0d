"""The worker on real storages with scripted models: it claims and runs jobs,
stops a runner on request or when its lease is gone, sweeps jobs of dead workers,
takes on the jobs of dead workers (continuing or failing their responses), and
hands back what is still running when it stops."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.support.scripted import ScriptedProvider
from tests.support.stores import (
    OPENERS,
    FailingLog,
    new_response,
    read_all,
    seqs,
    types,
    wait_terminal,
)
from tether.domain import events as ev
from tether.domain.fold import fold_all
from tether.domain.response import ResponseStatus
from tether.jobs.runner import LOST_WORKER_MESSAGE
from tether.jobs.worker import SHUTDOWN_MESSAGE, Worker, owner_is_dead
from tether.providers.base import Delta, GenerationRequest, ModelProvider, TextDelta
from tether.providers.registry import ProviderRegistry
from tether.settings import Settings
from tether.storage.base import Storage

HOST = socket.gethostname()
DEAD_OWNER = f"{HOST}:999999:dead"

MakeWorker = Callable[..., Awaitable[Worker]]


@pytest.fixture(params=list(OPENERS))
async def storage(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Storage]:
    opened = await OPENERS[request.param](tmp_path)
    try:
        yield opened
    finally:
        await opened.close()


def build_worker(
    storages: list[Storage], providers: Mapping[str, ModelProvider], **settings: Any
) -> Worker:
    values = {"lease_seconds": 30.0, "sweep_seconds": 60.0, **settings}
    return Worker(storages, ProviderRegistry(providers), Settings(**values))


@pytest.fixture
async def make_worker(storage: Storage) -> AsyncIterator[MakeWorker]:
    """Started workers on `storage` (or `storages=`); stopped after the test."""
    workers: list[Worker] = []

    async def make(
        providers: Mapping[str, ModelProvider],
        *,
        storages: list[Storage] | None = None,
        **settings: Any,
    ) -> Worker:
        worker = build_worker(storages or [storage], providers, **settings)
        await worker.start()
        workers.append(worker)
        return worker

    yield make
    for worker in workers:
        await stop(worker)


async def create(storage: Storage, **kwargs: Any) -> str:
    new = new_response(**kwargs)
    await storage.responses.create(new)
    return new.id


async def eventually(check: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while True:
            if check():
                return
            await asyncio.sleep(0.01)


async def stop(worker: Worker, grace_seconds: float = 0.1) -> None:
    """`worker.stop()`, after its claim loop has settled, and never hanging the suite.

    On Python 3.11 a cancel that lands as the claim loop's `wait_for_jobs` wakes is lost
    (see `test_wait_for_jobs_cancelled_after_an_enqueue_raises_cancelled`) and `stop()`
    then waits forever; letting the loop settle first keeps these tests deterministic.
    """
    await asyncio.sleep(0.02)
    await asyncio.wait_for(worker.stop(grace_seconds), 10.0)


async def finished_log(storage: Storage, response_id: str) -> list[ev.StoredEvent]:
    """The terminal log, checked: gapless, one terminal event, fold = stored snapshot."""
    log = await wait_terminal(storage, response_id)
    assert seqs(log) == list(range(len(log)))
    assert [e.terminal for e in log].count(True) == 1
    stored = await storage.responses.get(response_id)
    assert stored is not None
    assert fold_all([e.payload() for e in log]) == orjson.loads(stored.snapshot)
    return log


def assert_failed_with(log: list[ev.StoredEvent], message: str) -> None:
    assert types(log)[-2:] == [ev.ERROR, ev.FAILED]
    error = log[-2].payload()
    assert (error["code"], error["message"]) == ("server_error", message)
    assert log[-1].payload()["response"]["error"] == {"code": "server_error", "message": message}


# --- running jobs -----------------------------------------------------------------


async def test_worker_runs_created_jobs_to_completion(
    storage: Storage, make_worker: MakeWorker
) -> None:
    provider = ScriptedProvider(["Hel", "lo"])
    worker = await make_worker({"scripted": provider})

    ids = [await create(storage) for _ in range(5)]

    for response_id in ids:
        log = await finished_log(storage, response_id)
        assert log[-1].type == ev.COMPLETED
        assert log[-1].payload()["response"]["output"][0]["content"][0]["text"] == "Hello"
    assert len(provider.requests) == 5
    await eventually(lambda: worker.running == 0)
    assert await storage.jobs.claimed() == []


async def test_worker_runs_jobs_queued_before_it_started(
    storage: Storage, make_worker: MakeWorker
) -> None:
    ids = [await create(storage, background=True) for _ in range(3)]

    await make_worker({"scripted": ScriptedProvider(["a"])})

    for response_id in ids:
        log = await finished_log(storage, response_id)
        assert types(log)[:3] == [ev.CREATED, ev.QUEUED, ev.IN_PROGRESS]
        assert log[-1].type == ev.COMPLETED


async def test_worker_runs_each_model_on_its_provider(
    storage: Storage, make_worker: MakeWorker
) -> None:
    one, two = ScriptedProvider(["one"]), ScriptedProvider(["two"])
    await make_worker({"one": one, "two": two})

    first, second = await create(storage, model="one"), await create(storage, model="two")

    texts = []
    for response_id in (first, second):
        log = await finished_log(storage, response_id)
        texts.append(log[-1].payload()["response"]["output"][0]["content"][0]["text"])
    assert texts == ["one", "two"]
    assert (len(one.requests), len(two.requests)) == (1, 1)


async def test_worker_runs_at_most_its_concurrency(
    storage: Storage, make_worker: MakeWorker
) -> None:
    provider = ScriptedProvider(["a"], hold_at=0)
    worker = await make_worker({"scripted": provider}, worker_concurrency=2)

    ids = [await create(storage) for _ in range(4)]
    await eventually(lambda: worker.running == 2)
    await asyncio.sleep(0.05)

    assert worker.running == 2
    assert len(await storage.jobs.claimed()) == 2
    provider.release.set()
    for response_id in ids:
        assert (await finished_log(storage, response_id))[-1].type == ev.COMPLETED


async def test_worker_fails_job_for_a_model_it_does_not_serve(
    storage: Storage, make_worker: MakeWorker
) -> None:
    await make_worker({"scripted": ScriptedProvider(["a"])})

    response_id = await create(storage, model="unknown-model")

    log = await finished_log(storage, response_id)
    assert types(log)[-2:] == [ev.ERROR, ev.FAILED]
    assert "unknown-model" in log[-2].payload()["message"]


async def test_worker_skips_job_cancelled_while_queued(
    storage: Storage, make_worker: MakeWorker
) -> None:
    provider = ScriptedProvider(["a"])
    response_id = await create(storage, background=True)
    await storage.responses.terminate(response_id, ResponseStatus.CANCELLED)
    worker = await make_worker({"scripted": provider})
    done = await create(storage)  # a later job still runs

    await finished_log(storage, done)

    assert types(await read_all(storage, response_id)) == [ev.CREATED, ev.QUEUED, ev.CANCELLED]
    assert len(provider.requests) == 1
    await eventually(lambda: worker.running == 0)


# --- stopping a runner ------------------------------------------------------------


async def test_worker_interrupt_stops_a_running_job(
    storage: Storage, make_worker: MakeWorker
) -> None:
    provider = ScriptedProvider(["a", "b"], hold_at=1)
    worker = await make_worker({"scripted": provider})
    response_id = await create(storage)
    await asyncio.wait_for(provider.reached.wait(), 5.0)
    assert worker.running == 1

    await storage.responses.terminate(response_id, ResponseStatus.CANCELLED)
    assert worker.interrupt(response_id) is True

    await eventually(lambda: worker.running == 0)
    await eventually(lambda: provider.open_streams == 0)
    assert worker.interrupt(response_id) is False
    provider.release.set()
    await asyncio.sleep(0.05)
    log = await finished_log(storage, response_id)
    assert log[-1].type == ev.CANCELLED


async def test_worker_interrupt_unknown_response_is_false(
    storage: Storage, make_worker: MakeWorker
) -> None:
    worker = await make_worker({"scripted": ScriptedProvider(["a"])})

    assert worker.interrupt("resp_unknown") is False


async def test_worker_stops_runner_whose_lease_was_lost(
    storage: Storage, make_worker: MakeWorker
) -> None:
    provider = ScriptedProvider(["a", "b"], hold_at=1)
    worker = await make_worker({"scripted": provider}, lease_seconds=0.3)
    response_id = await create(storage)
    await asyncio.wait_for(provider.reached.wait(), 5.0)

    # Cancelled elsewhere (another replica): the job is gone, so the next renew drops it.
    await storage.responses.terminate(response_id, ResponseStatus.CANCELLED)

    await eventually(lambda: worker.running == 0)
    log = await finished_log(storage, response_id)
    assert log[-1].type == ev.CANCELLED


async def test_worker_renews_leases_of_running_jobs(
    storage: Storage, make_worker: MakeWorker
) -> None:
    provider = ScriptedProvider(["a", "b"], hold_at=1)
    await make_worker({"scripted": provider}, lease_seconds=0.3)
    response_id = await create(storage)
    await asyncio.wait_for(provider.reached.wait(), 5.0)
    [before] = await storage.jobs.claimed()

    await asyncio.sleep(0.35)  # longer than one lease: only renewals keep it

    [after] = await storage.jobs.claimed()
    assert after.lease_until > before.lease_until
    provider.release.set()
    assert (await finished_log(storage, response_id))[-1].type == ev.COMPLETED


# --- sweeping -----------------------------------------------------------------------


async def test_worker_sweep_hands_back_jobs_of_dead_owners_and_expired_leases(
    storage: Storage,
) -> None:
    assert not pid_exists(999999)
    dead = await create(storage)
    await storage.jobs.claim(DEAD_OWNER, 1, 300.0)
    live = await create(storage)
    await storage.jobs.claim(f"{HOST}:{os.getppid()}:alive", 1, 300.0)
    remote = await create(storage)
    await storage.jobs.claim("other-host:1234:abcd", 1, 300.0)
    expired = await create(storage)
    await storage.jobs.claim("other-host:1234:abcd", 1, -1.0)
    queued = await create(storage)
    worker = build_worker([storage], {"scripted": ScriptedProvider()})

    swept = await worker.sweep(storage)

    assert sorted(swept) == sorted([dead, expired])
    for response_id in (dead, expired, live, remote, queued):
        stored = await storage.responses.get(response_id)
        assert stored is not None and stored.status is ResponseStatus.IN_PROGRESS
        assert stored.last_seq == 0
    assert {c.response_id for c in await storage.jobs.claimed()} == {live, remote}
    assert await worker.sweep(storage) == []
    again = {job.response_id: job.attempt for job in await storage.jobs.claim("next", 10, 30.0)}
    assert again == {dead: 2, expired: 2, queued: 1}


async def test_worker_start_takes_on_the_job_of_a_dead_owner(
    storage: Storage, make_worker: MakeWorker
) -> None:
    response_id = await create(storage)
    await storage.jobs.claim(DEAD_OWNER, 1, 300.0)

    await make_worker({"scripted": ScriptedProvider(["Hel", "lo"])})

    log = await finished_log(storage, response_id)  # nothing was emitted: runs from scratch
    assert log[-1].type == ev.COMPLETED
    assert log[-1].payload()["response"]["output"][0]["content"][0]["text"] == "Hello"


class ContinuingProvider(ScriptedProvider):
    """A scripted model that can continue: given a continuation, it yields only the
    texts after it (the same answer, as a deterministic model would give)."""

    supports_continuation = True

    async def stream(self, request: GenerationRequest) -> AsyncIterator[Delta]:
        self.continuations.append(request.continuation)
        skip = len(request.continuation or "")
        async for delta in super().stream(request):
            if isinstance(delta, TextDelta) and skip:
                assert skip >= len(delta.text), "continuation ends inside a delta"
                skip -= len(delta.text)
                continue
            yield delta

    def __init__(self, texts: list[str]) -> None:
        super().__init__(texts)
        self.continuations: list[str | None] = []


async def died_mid_message(storage: Storage, response_id: str, *texts: str) -> None:
    """What a worker that died inside a message leaves: in_progress, an open message
    with `texts`, and its job claimed by a dead owner."""
    await storage.jobs.claim(DEAD_OWNER, 1, 300.0)
    stored = await storage.responses.get(response_id)
    assert stored is not None
    snapshot = orjson.loads(stored.snapshot)
    events = [ev.lifecycle(ev.IN_PROGRESS, {**snapshot, "status": "in_progress"}, 1)]
    item = ev.message_item("msg_partial", "in_progress", [])
    events.append(ev.output_item_added(0, item, 2))
    events.append(
        ev.content_part(ev.CONTENT_PART_ADDED, "msg_partial", 0, 0, ev.output_text_part(), 3)
    )
    for text in texts:
        events.append(ev.text_delta("msg_partial", 0, 0, text, len(events) + 1))
    encoded = [ev.encode(event) for event in events]
    await storage.events.append(response_id, encoded, None, ResponseStatus.IN_PROGRESS)


async def test_worker_continues_a_message_whose_worker_died(
    storage: Storage, make_worker: MakeWorker
) -> None:
    response_id = await create(storage)
    await died_mid_message(storage, response_id, "Hel", "lo")
    provider = ContinuingProvider(["Hel", "lo", " wor", "ld"])

    await make_worker({"scripted": provider})

    log = await finished_log(storage, response_id)
    assert log[-1].type == ev.COMPLETED
    assert provider.continuations == ["Hello"]
    assert types(log).count(ev.IN_PROGRESS) == 1  # not emitted twice
    (message,) = log[-1].payload()["response"]["output"]
    assert message["id"] == "msg_partial"
    assert message["content"][0]["text"] == "Hello world"
    deltas = [e.payload()["delta"] for e in log if e.type == ev.OUTPUT_TEXT_DELTA]
    assert deltas == ["Hel", "lo", " wor", "ld"]


async def test_worker_fails_a_partial_response_the_model_cannot_continue(
    storage: Storage, make_worker: MakeWorker
) -> None:
    response_id = await create(storage)
    await died_mid_message(storage, response_id, "Hel")

    await make_worker({"scripted": ScriptedProvider(["Hel", "lo"])})

    log = await finished_log(storage, response_id)
    assert_failed_with(log, LOST_WORKER_MESSAGE)
    assert log[-1].payload()["response"]["output"][0]["content"][0]["text"] == "Hel"


async def test_worker_gives_up_on_a_job_claimed_too_often(
    storage: Storage, make_worker: MakeWorker
) -> None:
    response_id = await create(storage)
    for _ in range(2):
        await storage.jobs.claim(DEAD_OWNER, 1, 300.0)
        assert await storage.jobs.requeue(response_id, DEAD_OWNER)

    await make_worker({"scripted": ScriptedProvider(["a"])}, job_attempts=2)

    log = await finished_log(storage, response_id)
    assert types(log)[-2:] == [ev.ERROR, ev.FAILED]
    assert "stopped 2 times" in log[-2].payload()["message"]


async def test_worker_stops_a_runner_whose_job_was_revoked_elsewhere(
    storage: Storage, make_worker: MakeWorker
) -> None:
    provider = ScriptedProvider(["a", "b"], hold_at=1)
    worker = await make_worker({"scripted": provider})
    response_id = await create(storage)
    await asyncio.wait_for(provider.reached.wait(), 5.0)

    # A cancel through the store alone (as another replica would do it).
    await storage.responses.terminate(response_id, ResponseStatus.CANCELLED)

    await eventually(lambda: worker.running == 0 and provider.open_streams == 0)
    log = await finished_log(storage, response_id)
    assert log[-1].type == ev.CANCELLED


async def test_worker_sweep_leaves_its_own_running_jobs(
    storage: Storage, make_worker: MakeWorker
) -> None:
    provider = ScriptedProvider(["a", "b"], hold_at=1)
    worker = await make_worker({"scripted": provider})
    response_id = await create(storage)
    await asyncio.wait_for(provider.reached.wait(), 5.0)

    assert await worker.sweep(storage) == []

    provider.release.set()
    assert (await finished_log(storage, response_id))[-1].type == ev.COMPLETED


async def test_worker_sweeps_own_job_whose_runner_gave_up_once_its_lease_ran_out(
    storage: Storage, make_worker: MakeWorker
) -> None:
    flaky = dataclasses.replace(storage, events=FailingLog(storage.events, fail_on=1))
    await make_worker(
        {"scripted": ScriptedProvider(["a"])},
        storages=[flaky],
        lease_seconds=0.3,
        sweep_seconds=0.1,
    )

    response_id = await create(storage)

    log = await wait_terminal(storage, response_id, timeout=3.0)
    assert types(log)[-2:] == [ev.ERROR, ev.FAILED]


async def test_worker_fails_job_at_once_when_its_log_fails(
    storage: Storage, make_worker: MakeWorker
) -> None:
    flaky = dataclasses.replace(storage, events=FailingLog(storage.events, fail_on=1))
    await make_worker({"scripted": ScriptedProvider(["a"])}, storages=[flaky])  # 30 s lease

    response_id = await create(storage)

    log = await wait_terminal(storage, response_id, timeout=1.0)
    assert types(log)[-2:] == [ev.ERROR, ev.FAILED]
    assert "could not store" in log[-2].payload()["message"]


def pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


ME = f"{HOST}:{os.getpid()}:aaaa"


@pytest.mark.parametrize(
    ("owner", "dead"),
    [
        (f"{HOST}:{os.getpid()}:bbbb", True),  # our pid, another nonce: an earlier incarnation
        (DEAD_OWNER, True),  # this host, no such process
        (ME, False),  # ourselves
        (f"{HOST}:{os.getppid()}:cccc", False),  # this host, a live process
        (f"other-host:{os.getpid()}:bbbb", False),  # another host: we cannot know
        ("other-host:999999:dead", False),
        (f"{HOST}:not-a-pid:x", False),
    ],
    ids=["same-pid", "dead-pid", "me", "live-pid", "other-host", "other-host-dead-pid", "garbage"],
)
def test_owner_is_dead(owner: str, dead: bool) -> None:
    assert not pid_exists(999999)

    assert owner_is_dead(owner, ME) is dead


# --- stopping the worker --------------------------------------------------------------


async def test_worker_stop_hands_back_running_jobs(
    storage: Storage, make_worker: MakeWorker
) -> None:
    provider = ScriptedProvider(["a", "b"], hold_at=1)
    worker = await make_worker({"scripted": provider})
    response_id = await create(storage)
    await asyncio.wait_for(provider.reached.wait(), 5.0)

    await stop(worker, grace_seconds=0.05)

    assert worker.running == 0
    await eventually(lambda: provider.open_streams == 0)
    later = await create(storage)  # a stopped worker claims nothing more
    await asyncio.sleep(0.05)
    assert await storage.jobs.claimed() == []
    stored = await storage.responses.get(later)
    assert stored is not None and stored.last_seq == 0
    if storage.name == "memory":  # store=false responses die with their process
        assert_failed_with(await finished_log(storage, response_id), SHUTDOWN_MESSAGE)
        return
    stored = await storage.responses.get(response_id)
    assert stored is not None and stored.status is ResponseStatus.IN_PROGRESS
    jobs = await storage.jobs.claim("next", 10, 30.0)
    assert [(job.response_id, job.attempt) for job in jobs] == [(response_id, 2), (later, 1)]


async def test_worker_stop_lets_running_jobs_finish_within_grace(
    storage: Storage, make_worker: MakeWorker
) -> None:
    provider = ScriptedProvider(["a", "b"], hold_at=1)
    worker = await make_worker({"scripted": provider})
    response_id = await create(storage)
    await asyncio.wait_for(provider.reached.wait(), 5.0)
    asyncio.get_running_loop().call_later(0.05, provider.release.set)

    await stop(worker, grace_seconds=5.0)

    log = await finished_log(storage, response_id)
    assert log[-1].type == ev.COMPLETED


async def test_worker_repr_states_owner_and_load(storage: Storage, make_worker: MakeWorker) -> None:
    worker = await make_worker({"scripted": ScriptedProvider()}, worker_concurrency=3)

    assert repr(worker) == f"<Worker owner={worker.owner} running=0/3 storages=['{storage.name}']>"

"""What only the Redis backend does: two storages on one prefix stand for two
processes (an API replica and a worker) — wake-ups cross between them through
pub/sub; scripts come back after SCRIPT FLUSH; connections come back after being
killed; finished responses expire with `retention`; the URL and the schema.

The cross-process tests set the waiters' fallback poll far beyond their timeouts,
so only a pub/sub message can wake them in time.

Sections: fixtures · tails across processes · jobs across processes · scripts and
connections · retention and keys · URL and schema.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import redis.asyncio as redis

from tests.support.redis_admin import open_with_fresh_prefix, url_with_prefix
from tests.support.services import REDIS_URL, require_service, unique_name
from tests.support.stores import new_response, read_all, seqs, started
from tether.domain import events as ev
from tether.domain.response import ResponseStatus
from tether.errors import AppendConflictError, ConfigError, NotFoundError, StorageError
from tether.storage.base import Storage
from tether.storage.redis import SCHEMA_VERSION, migrate, open_redis, parse_url
from tether.storage.redis import log as redis_log
from tether.storage.redis.keys import Keys
from tether.streaming.tail import tail

# --- fixtures -----------------------------------------------------------------------


@pytest.fixture
def prefix() -> str:
    require_service("Redis", REDIS_URL)
    return unique_name("tether_test")


@pytest.fixture
async def admin() -> AsyncIterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS_URL)
    yield client
    await client.aclose()


@pytest.fixture
async def pair(
    prefix: str, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[Storage, Storage]]:
    """Two storages on one prefix: "process" A and "process" B."""
    monkeypatch.setattr(redis_log, "FALLBACK_POLL_SECONDS", 600.0)
    a = await open_with_fresh_prefix(REDIS_URL, prefix)
    b = await open_redis(url_with_prefix(REDIS_URL, prefix))
    try:
        yield a, b
    finally:
        await b.close()
        await a.close()


async def kill_connections(admin: redis.Redis, name: str) -> int:
    """Kill the server side of every client connection named `name`."""
    killed = 0
    for client in await admin.client_list():
        if client.get("name") == name:
            await admin.client_kill_filter(_id=client["id"])
            killed += 1
    return killed


# --- tails across processes ---------------------------------------------------------


async def test_wait_wakes_on_an_append_of_another_process(pair: tuple[Storage, Storage]) -> None:
    a, b = pair
    script = await started(a)
    last = script.fold.last_seq
    waiter = asyncio.create_task(b.events.wait(script.id, last, 300.0))
    await asyncio.sleep(0.05)
    assert not waiter.done()

    events = script.text("x")
    await script.append(a, events)

    assert await asyncio.wait_for(waiter, 5.0) is True
    assert await b.events.read_after(script.id, last, 10) == events


async def test_wait_sees_a_commit_made_before_it_subscribed(
    pair: tuple[Storage, Storage],
) -> None:
    """B read up to `last`, A appended, then B waits: the commit was never published to
    B, yet B must not sleep through it."""
    a, b = pair
    script = await started(a)
    last = script.fold.last_seq
    assert seqs(await b.events.read_after(script.id, -1, 100))[-1] == last
    await script.append(a, script.text("x"))

    assert await asyncio.wait_for(b.events.wait(script.id, last, 300.0), 5.0) is True


async def test_wait_wakes_on_terminate_and_delete_of_another_process(
    pair: tuple[Storage, Storage],
) -> None:
    a, b = pair
    cancelled, deleted = await started(a), await started(a)
    waiters = [
        asyncio.create_task(b.events.wait(s.id, s.fold.last_seq, 300.0))
        for s in (cancelled, deleted)
    ]
    await asyncio.sleep(0.05)

    await a.responses.terminate(cancelled.id, ResponseStatus.CANCELLED)
    await a.responses.delete(deleted.id)

    assert await asyncio.wait_for(asyncio.gather(*waiters), 5.0) == [True, True]


async def test_tail_on_one_process_follows_a_runner_on_another_gaplessly(
    pair: tuple[Storage, Storage],
) -> None:
    a, b = pair
    script = await started(a)

    async def follow() -> list[ev.StoredEvent]:
        seen: list[ev.StoredEvent] = []
        async for batch in tail(b, script.id, -1, heartbeat=300.0):
            seen.extend(batch or [])
        return seen

    follower = asyncio.create_task(follow())
    for index in range(60):
        await script.append(a, script.text(str(index)))
        if index % 7 == 0:
            await asyncio.sleep(0.002)  # let the tail catch up and wait now and then
    await script.append(a, script.complete())

    seen = await asyncio.wait_for(follower, 10.0)
    assert seen == await read_all(a, script.id)
    assert seqs(seen) == list(range(script.fold.last_seq + 1))
    # B read the first events from Redis, then the rest from the messages: far fewer
    # commands than the 61 batches it followed.
    assert wire_of(b).commands < 20


def wire_of(storage: Storage) -> Any:
    return storage.events._db.wire  # type: ignore[attr-defined]


async def test_append_race_across_processes_has_one_winner(
    pair: tuple[Storage, Storage],
) -> None:
    a, b = pair
    script = await started(a)
    seq = script.next_seq
    first = ev.encode(ev.text_delta(script.item_id, 0, 0, "first", seq))
    second = ev.encode(ev.text_delta(script.item_id, 0, 0, "second", seq))

    results = await asyncio.gather(
        a.events.append(script.id, [first], None, ResponseStatus.IN_PROGRESS),
        b.events.append(script.id, [second], None, ResponseStatus.IN_PROGRESS),
        return_exceptions=True,
    )

    assert sum(isinstance(r, AppendConflictError) for r in results) == 1
    winner = first if results[0] is None else second
    assert (await read_all(b, script.id))[-1] == winner


# --- jobs across processes ----------------------------------------------------------


async def test_wait_for_jobs_wakes_on_a_create_of_another_process(
    pair: tuple[Storage, Storage],
) -> None:
    a, b = pair
    await b.jobs.wait_for_jobs(0.05)  # subscribed; nothing queued yet
    waiter = asyncio.create_task(b.jobs.wait_for_jobs(300.0))
    await asyncio.sleep(0.05)
    assert not waiter.done()

    new = new_response()
    await a.responses.create(new)

    await asyncio.wait_for(waiter, 5.0)
    [job] = await b.jobs.claim("worker-b", 10, 30.0)
    assert job.response_id == new.id


async def test_wait_for_jobs_returns_for_a_job_queued_before_it_first_waited(
    pair: tuple[Storage, Storage],
) -> None:
    a, b = pair
    await a.responses.create(new_response())

    await asyncio.wait_for(b.jobs.wait_for_jobs(300.0), 5.0)


async def test_wait_for_jobs_wakes_on_a_requeue_of_another_process(
    pair: tuple[Storage, Storage],
) -> None:
    a, b = pair
    new = new_response()
    await a.responses.create(new)
    await a.jobs.claim("worker-a", 1, 30.0)
    await b.jobs.wait_for_jobs(0.05)
    waiter = asyncio.create_task(b.jobs.wait_for_jobs(300.0))
    await asyncio.sleep(0.05)
    assert not waiter.done()

    assert await a.jobs.requeue(new.id, "worker-a") is True

    await asyncio.wait_for(waiter, 5.0)
    [job] = await b.jobs.claim("worker-b", 10, 30.0)
    assert (job.response_id, job.attempt) == (new.id, 2)


async def test_watch_revoked_fires_in_every_process_once(
    pair: tuple[Storage, Storage], admin: redis.Redis, prefix: str
) -> None:
    a, b = pair
    seen_a: list[str] = []
    seen_b: list[str] = []
    marked = {"a": asyncio.Event(), "b": asyncio.Event()}

    def watcher(name: str, seen: list[str]) -> Callable[[str], None]:
        def revoked(response_id: str) -> None:
            seen.append(response_id)
            if response_id == "resp_marker":
                marked[name].set()

        return revoked

    a.jobs.watch_revoked(watcher("a", seen_a))
    b.jobs.watch_revoked(watcher("b", seen_b))
    cancelled, deleted, unclaimed = await started(a), await started(a), await started(a)
    await a.jobs.claim("worker", 2, 30.0)
    await asyncio.sleep(0.05)  # both subscriptions are confirmed by now

    await a.responses.terminate(cancelled.id, ResponseStatus.CANCELLED)
    assert seen_a == [cancelled.id]  # at once, in the process that cancelled
    await b.responses.delete(deleted.id)
    assert deleted.id in seen_b  # at once, too
    await a.responses.terminate(unclaimed.id, ResponseStatus.CANCELLED)  # queued job: revoked too
    # Messages reach a subscriber in the order they were published: once the marker
    # is in, every echo is.
    await admin.publish(f"{prefix}:revoked", "someone resp_marker")
    await asyncio.wait_for(asyncio.gather(marked["a"].wait(), marked["b"].wait()), 5.0)

    everyone = sorted([cancelled.id, deleted.id, unclaimed.id])
    for seen in (seen_a, seen_b):  # each once: a process skips the echo of its own
        assert sorted(seen[:-1]) == everyone


async def test_watch_revoked_is_not_fired_by_a_response_that_finished(
    pair: tuple[Storage, Storage],
) -> None:
    a, b = pair
    seen: list[str] = []
    b.jobs.watch_revoked(seen.append)
    script = await started(a)
    await asyncio.sleep(0.05)

    await script.append(a, script.complete())
    await a.responses.terminate(script.id, ResponseStatus.CANCELLED)  # already terminal
    await a.responses.delete(script.id)  # its job went with the completion
    await asyncio.sleep(0.1)

    assert seen == []


# --- scripts and connections --------------------------------------------------------


async def test_scripts_are_loaded_again_after_script_flush(
    pair: tuple[Storage, Storage], admin: redis.Redis
) -> None:
    a, b = pair
    script = await started(a)

    await admin.script_flush()
    events = script.text("after", "flush")
    await asyncio.gather(
        script.append(a, events),
        b.jobs.claim("w", 10, 30.0),
        b.events.read_after(script.id, -1, 100),
    )

    assert (await read_all(b, script.id))[-2:] == events
    assert [c.owner for c in await a.jobs.claimed()] == ["w"]


async def test_commands_connect_again_after_the_connection_is_killed(
    pair: tuple[Storage, Storage], admin: redis.Redis, prefix: str
) -> None:
    a, _ = pair
    script = await started(a)

    assert await kill_connections(admin, f"tether:{prefix}:commands") == 2
    await asyncio.sleep(0.05)
    events = script.text("again")
    for _ in range(3):  # a command racing the kill may fail; the next one reconnects
        try:
            await script.append(a, events)
            break
        except StorageError:
            await asyncio.sleep(0.05)

    assert (await read_all(a, script.id))[-1] == events[-1]


async def test_wakeups_come_back_after_their_connection_is_killed(
    pair: tuple[Storage, Storage], admin: redis.Redis, prefix: str
) -> None:
    a, b = pair
    script = await started(a)
    await b.jobs.wait_for_jobs(0.05)
    last = script.fold.last_seq
    waiter = asyncio.create_task(b.events.wait(script.id, last, 300.0))
    await asyncio.sleep(0.05)

    assert await kill_connections(admin, f"tether:{prefix}:wakeups") >= 1
    await script.append(a, script.text("x"))  # its message may be lost to B

    assert await asyncio.wait_for(waiter, 5.0) is True
    later = asyncio.create_task(b.events.wait(script.id, last + 1, 300.0))
    jobs = asyncio.create_task(b.jobs.wait_for_jobs(300.0))
    await asyncio.sleep(0.3)  # resubscribed by now
    await script.append(a, script.text("y"))
    await a.responses.create(new_response())
    assert await asyncio.wait_for(later, 5.0) is True
    await asyncio.wait_for(jobs, 5.0)


# --- retention and keys -------------------------------------------------------------


async def response_keys(admin: redis.Redis, prefix: str, response_id: str) -> list[str]:
    keys = Keys(prefix)
    names = [
        keys.response(response_id),
        keys.events(response_id),
        keys.input(response_id),
        keys.input_index(response_id),
        keys.job(response_id),
    ]
    return [name for name in names if await admin.exists(name)]


async def test_finished_responses_expire_after_retention(prefix: str, admin: redis.Redis) -> None:
    storage = await open_with_fresh_prefix(REDIS_URL, prefix, retention="600")
    try:
        running, completed, cancelled = [await started(storage) for _ in range(3)]
        await completed.append(storage, completed.complete())
        await storage.responses.terminate(cancelled.id, ResponseStatus.CANCELLED)

        for finished in (completed, cancelled):
            names = await response_keys(admin, prefix, finished.id)
            assert len(names) == 4  # the job is gone; response, events and input stay
            for name in names:
                assert 590 <= await admin.ttl(name) <= 600
        for name in await response_keys(admin, prefix, running.id):
            assert await admin.ttl(name) == -1  # kept while it runs
    finally:
        await storage.close()


async def test_finished_responses_are_kept_without_retention(
    pair: tuple[Storage, Storage], admin: redis.Redis, prefix: str
) -> None:
    a, _ = pair
    script = await started(a)
    await script.append(a, script.complete())

    for name in await response_keys(admin, prefix, script.id):
        assert await admin.ttl(name) == -1


async def test_delete_leaves_no_key_of_the_response(
    pair: tuple[Storage, Storage], admin: redis.Redis, prefix: str
) -> None:
    a, _ = pair
    script = await started(a)
    await a.jobs.claim("w", 1, 30.0)

    await a.responses.delete(script.id)

    assert await response_keys(admin, prefix, script.id) == []
    assert not [k async for k in admin.scan_iter(match=f"{prefix}:*{script.id}*")]
    assert await admin.hlen(Keys(prefix).leases) == 0


async def test_upgrade_indexes_responses_finished_under_an_older_schema(
    prefix: str, admin: redis.Redis
) -> None:
    """Schema 5 added the retention indexes; a store upgraded from 4 gets its finished
    responses indexed, so retention deletes them like any other (running ones not)."""
    storage = await open_with_fresh_prefix(REDIS_URL, prefix)
    try:
        old, running = await started(storage), await started(storage)
        await old.append(storage, old.complete())
        keys = Keys(prefix)
        await admin.zrem(keys.finished, old.id)  # as written by schema 4
        await admin.zrem(keys.logs, old.id)
        await admin.set(keys.schema, 4)

        upgraded = await open_redis(url_with_prefix(REDIS_URL, prefix))
        try:
            assert upgraded.schema_version == SCHEMA_VERSION
            assert await admin.zrange(keys.finished, 0, -1) == [old.id.encode()]
            assert await admin.zrange(keys.logs, 0, -1) == [old.id.encode()]
            later = time.time() + 60
            assert await upgraded.responses.expire(later, later, 100) == 1
            assert await upgraded.responses.get(old.id) is None
            assert await upgraded.responses.get(running.id) is not None
        finally:
            await upgraded.close()
    finally:
        await storage.close()


# --- URL and schema -----------------------------------------------------------------


def test_parse_url_takes_prefix_and_retention_and_passes_the_rest_on() -> None:
    config = parse_url("redis://h:6380/2?prefix=app.one&retention=86400&socket_connect_timeout=3")

    assert (config.prefix, config.retention) == ("app.one", 86400)
    assert config.url == "redis://h:6380/2?socket_connect_timeout=3"
    assert parse_url("redis://h").prefix == "tether"
    assert parse_url("redis://h").retention == 0


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("redis://h/0?prefix=a*b", "prefix"),
        ("redis://h/0?prefix=", "prefix"),
        ("redis://h/0?retention=1d", "whole seconds"),
        ("redis://h/0?retention=-5", "whole seconds"),
        ("http://h/0", "redis://"),
    ],
)
def test_parse_url_refuses_bad_settings_saying_what_to_write(url: str, words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_url(url)

    assert words in str(caught.value)


async def test_migrate_sets_the_schema_version_once(prefix: str, admin: redis.Redis) -> None:
    url = url_with_prefix(REDIS_URL, prefix)
    try:
        assert await asyncio.gather(*(migrate(url) for _ in range(5))) == [SCHEMA_VERSION] * 5
        assert await admin.get(Keys(prefix).schema) == str(SCHEMA_VERSION).encode()
        storage = await open_redis(url)
        assert storage.schema_version == SCHEMA_VERSION
        await storage.close()
    finally:
        await admin.delete(Keys(prefix).schema)


async def test_a_store_of_a_newer_schema_is_refused(prefix: str, admin: redis.Redis) -> None:
    url = url_with_prefix(REDIS_URL, prefix)
    await admin.set(Keys(prefix).schema, 99)
    try:
        with pytest.raises(ConfigError, match="newer"):
            await migrate(url)
        with pytest.raises(ConfigError, match="upgrade Tether"):
            await open_redis(url)
    finally:
        await admin.delete(Keys(prefix).schema)


async def test_repr_states_the_prefix_and_traffic(pair: tuple[Storage, Storage]) -> None:
    a, _ = pair
    await started(a)

    text = repr(a.events)

    assert "prefix='tether_test_" in text and "commands=" in text and "connected=True" in text


async def test_a_follower_of_a_deleted_response_gets_not_found(
    pair: tuple[Storage, Storage],
) -> None:
    """B keeps the events of the responses it follows in memory; a delete (here or
    there) must not leave them readable."""
    a, b = pair
    here, there = await started(a), await started(a)
    for script in (here, there):
        waiter = asyncio.create_task(b.events.wait(script.id, script.fold.last_seq, 300.0))
        await asyncio.sleep(0.05)
        await script.append(a, script.text("x"))
        assert await asyncio.wait_for(waiter, 5.0) is True
        assert len(await b.events.read_after(script.id, 0, 100)) == script.fold.last_seq

    await b.responses.delete(here.id)
    await a.responses.delete(there.id)
    await asyncio.wait_for(b.events.wait(there.id, there.fold.last_seq, 300.0), 5.0)

    for script in (here, there):
        with pytest.raises(NotFoundError):
            await b.events.read_after(script.id, 0, 100)

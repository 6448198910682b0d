"""What only the PostgreSQL backend promises: the store URL and its schema, versioned
migrations that several processes may run at once, and wake-ups across processes
(LISTEN/NOTIFY) that survive a dropped LISTEN connection.

Two `Storage` instances opened on the same schema stand for two processes: each has
its own pool, LISTEN connection and in-process wake-ups.

Sections: fixtures · the URL · migrations · wake-ups across processes · the LISTEN
connection · group commit.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest

from tests.support.postgres_admin import drop_schema, open_in_fresh_schema, with_schema
from tests.support.services import POSTGRES_URL, require_service, unique_name
from tests.support.stores import new_response, read_all, seqs, started
from tether.domain import events as ev
from tether.domain.response import ResponseStatus
from tether.errors import AppendConflictError, ConfigError, NotFoundError, StoreUnavailableError
from tether.storage.base import Storage
from tether.storage.postgres import listen, log, migrate, open_postgres, parse_url
from tether.storage.postgres.database import PostgresDatabase
from tether.storage.postgres.log import PostgresEventLog
from tether.storage.postgres.schema import LATEST

# --- fixtures -------------------------------------------------------------------


@pytest.fixture
def schema() -> str:
    require_service("PostgreSQL", POSTGRES_URL)
    return unique_name("tether_test")


@pytest.fixture
async def dropped(schema: str) -> AsyncIterator[str]:
    """The URL of a schema that does not exist yet, dropped at the end."""
    await drop_schema(POSTGRES_URL, schema)
    yield with_schema(POSTGRES_URL, schema)
    await drop_schema(POSTGRES_URL, schema)


@pytest.fixture
async def pair(schema: str) -> AsyncIterator[tuple[Storage, Storage]]:
    """Two "processes" on one schema."""
    first = await open_in_fresh_schema(POSTGRES_URL, schema)
    second = await open_postgres(with_schema(POSTGRES_URL, schema))
    try:
        yield first, second
    finally:
        await second.close()
        await first.close()


def database(storage: Storage) -> PostgresDatabase:
    assert isinstance(storage.events, PostgresEventLog)
    return storage.events.db


async def admin(sql: str, *args: object) -> object:
    conn = await asyncpg.connect(parse_url(POSTGRES_URL).dsn)
    try:
        return await conn.fetchval(sql, *args)
    finally:
        await conn.close()


async def eventually(condition: object, seconds: float = 5.0) -> None:
    """Until `condition()` holds (polling every 10 ms), or fail."""
    assert callable(condition)
    async with asyncio.timeout(seconds):
        while not condition():  # noqa: ASYNC110 -- a state of another object, not an event
            await asyncio.sleep(0.01)


# --- the URL ----------------------------------------------------------------------


def test_postgres_url_schema_is_taken_out_of_the_dsn() -> None:
    target = parse_url("postgresql://u@h:5433/db?sslmode=disable&schema=mine")

    assert target.schema == "mine"
    assert target.dsn == "postgresql://u@h:5433/db?sslmode=disable"
    assert (target.events_channel, target.jobs_channel) == ("mine.events", "mine.jobs")


def test_postgres_url_default_schema_is_tether() -> None:
    assert parse_url("postgres://u@h/db").schema == "tether"


@pytest.mark.parametrize("schema", ["1abc", "a-b", "a;drop", "", "x" * 49])
def test_postgres_url_bad_schema_is_a_config_error(schema: str) -> None:
    with pytest.raises(ConfigError, match=r"\?schema=NAME"):
        parse_url(f"postgresql://u@h/db?schema={schema}")


async def test_postgres_unreachable_server_is_a_storage_error_saying_so() -> None:
    from tether.errors import StorageError

    with pytest.raises(StorageError, match="PostgreSQL"):
        await open_postgres("postgresql://nobody@127.0.0.1:1/db")


# --- migrations -------------------------------------------------------------------


async def test_migrate_creates_the_schema_and_is_idempotent(dropped: str, schema: str) -> None:
    assert await migrate(dropped) == LATEST
    assert await migrate(dropped) == LATEST

    count = await admin(f'SELECT count(*) FROM "{schema}".schema_version')
    assert count == LATEST
    storage = await open_postgres(dropped)  # finds the schema current
    try:
        assert await storage.responses.get("resp_unknown") is None
    finally:
        await storage.close()


async def test_migrate_from_several_processes_at_once_applies_each_version_once(
    dropped: str, schema: str
) -> None:
    versions = await asyncio.gather(*(migrate(dropped) for _ in range(4)))

    assert versions == [LATEST] * 4
    rows = await admin(f'SELECT array_agg(version ORDER BY version) FROM "{schema}".schema_version')
    assert rows == list(range(1, LATEST + 1))


async def test_open_of_several_processes_at_once_on_a_new_schema(dropped: str) -> None:
    storages = await asyncio.gather(*(open_postgres(dropped) for _ in range(3)))
    try:
        new = new_response()
        await storages[0].responses.create(new)
        assert await storages[2].responses.get(new.id) is not None
    finally:
        for storage in storages:
            await storage.close()


async def test_open_refuses_a_schema_newer_than_the_code(dropped: str, schema: str) -> None:
    await migrate(dropped)
    await admin(f'INSERT INTO "{schema}".schema_version (version) VALUES ($1)', LATEST + 1)

    with pytest.raises(ConfigError, match="upgrade Tether"):
        await open_postgres(dropped)
    with pytest.raises(ConfigError, match="upgrade Tether"):
        await migrate(dropped)


async def test_schemas_keep_stores_apart(schema: str) -> None:
    first = await open_in_fresh_schema(POSTGRES_URL, schema)
    second = await open_in_fresh_schema(POSTGRES_URL, unique_name("tether_test"))
    try:
        new = new_response()
        await first.responses.create(new)
        waiter = asyncio.create_task(second.jobs.wait_for_jobs(0.3))

        assert await second.responses.get(new.id) is None
        assert await second.jobs.claim("w", 10, 30.0) == []
        await waiter  # no wake-up crosses schemas: it simply times out
    finally:
        await second.close()
        await first.close()


# --- wake-ups across processes ------------------------------------------------------


async def test_tail_is_woken_by_an_append_of_another_process(
    pair: tuple[Storage, Storage],
) -> None:
    here, there = pair
    script = await started(there)
    last = script.fold.last_seq
    assert seqs(await here.events.read_after(script.id, -1, 100)) == list(range(last + 1))
    waiter = asyncio.create_task(here.events.wait(script.id, last, 30.0))
    await asyncio.sleep(0.05)
    assert not waiter.done()

    events = script.text("far")
    await script.append(there, events)

    assert await asyncio.wait_for(waiter, 2.0) is True
    assert await here.events.read_after(script.id, last, 100) == events


async def test_read_after_sees_appends_of_another_process_without_waiting(
    pair: tuple[Storage, Storage],
) -> None:
    """A process that knows a response's head still sees what others append next."""
    here, there = pair
    script = await started(there)
    await read_all(here, script.id)

    for piece in ("a", "b", "c"):
        events = script.text(piece)
        await script.append(there, events)
        last = events[-1].seq
        await eventually(lambda last=last: database(here).heads.known(script.id) == last)
        assert await here.events.read_after(script.id, last - 1, 10) == events


async def test_wait_is_woken_by_terminate_and_delete_of_another_process(
    pair: tuple[Storage, Storage],
) -> None:
    here, there = pair
    cancelled, deleted = await started(there), await started(there)
    waiters = [
        asyncio.create_task(here.events.wait(s.id, s.fold.last_seq, 30.0))
        for s in (cancelled, deleted)
    ]
    await asyncio.sleep(0.05)

    await there.responses.terminate(cancelled.id, ResponseStatus.CANCELLED)
    await there.responses.delete(deleted.id)

    assert await asyncio.wait_for(asyncio.gather(*waiters), 2.0) == [True, True]
    [event] = await here.events.read_after(cancelled.id, cancelled.fold.last_seq, 10)
    assert event.type == ev.CANCELLED
    with pytest.raises(NotFoundError):
        await here.events.read_after(deleted.id, -1, 10)


async def test_wait_for_jobs_is_woken_by_a_create_of_another_process(
    pair: tuple[Storage, Storage],
) -> None:
    here, there = pair
    await here.jobs.wait_for_jobs(0.01)
    waiter = asyncio.create_task(here.jobs.wait_for_jobs(30.0))
    await asyncio.sleep(0.05)
    assert not waiter.done()

    await there.responses.create(new_response())

    await asyncio.wait_for(waiter, 2.0)
    [job] = await here.jobs.claim("w", 10, 30.0)
    assert job.attempt == 1


async def test_wait_for_jobs_is_woken_by_a_requeue_of_another_process(
    pair: tuple[Storage, Storage],
) -> None:
    here, there = pair
    new = new_response()
    await there.responses.create(new)
    await there.jobs.claim("gone", 10, 30.0)
    await here.jobs.wait_for_jobs(0.2)  # the create's wake-up
    waiter = asyncio.create_task(here.jobs.wait_for_jobs(30.0))
    await asyncio.sleep(0.05)

    assert await there.jobs.requeue(new.id, "gone") is True

    await asyncio.wait_for(waiter, 2.0)
    [job] = await here.jobs.claim("w", 10, 30.0)
    assert (job.response_id, job.attempt) == (new.id, 2)


async def test_watch_revoked_fires_for_terminate_and_delete_of_another_process(
    pair: tuple[Storage, Storage],
) -> None:
    here, there = pair
    heard_here: list[str] = []
    heard_there: list[str] = []
    here.jobs.watch_revoked(heard_here.append)
    there.jobs.watch_revoked(heard_there.append)
    cancelled, deleted, finished = await started(there), await started(there), await started(there)
    await here.jobs.claim("worker-here", 10, 30.0)

    await there.responses.terminate(cancelled.id, ResponseStatus.CANCELLED)
    await there.responses.delete(deleted.id)
    await finished.append(there, finished.complete())

    await eventually(lambda: len(heard_here) == 2)
    await asyncio.sleep(0.1)  # nothing more comes: a finished job is not revoked
    assert heard_here == [cancelled.id, deleted.id]
    assert heard_there == [cancelled.id, deleted.id]  # each process hears it once


async def test_claims_of_two_processes_take_each_job_once(pair: tuple[Storage, Storage]) -> None:
    there = pair[1]
    ids = set()
    for _ in range(30):
        new = new_response()
        await there.responses.create(new)
        ids.add(new.id)

    claims = await asyncio.gather(
        *(storage.jobs.claim(f"w{i}", 4, 30.0) for i in range(5) for storage in pair)
    )

    claimed = [job.response_id for jobs in claims for job in jobs]
    assert sorted(claimed) == sorted(ids)


async def test_append_race_between_processes_has_one_winner(
    pair: tuple[Storage, Storage],
) -> None:
    here, there = pair
    script = await started(there)
    seq = script.next_seq
    first = ev.encode(ev.text_delta(script.item_id, 0, 0, "here", seq))
    second = ev.encode(ev.text_delta(script.item_id, 0, 0, "there", seq))

    results = await asyncio.gather(
        here.events.append(script.id, [first], None, ResponseStatus.IN_PROGRESS),
        there.events.append(script.id, [second], None, ResponseStatus.IN_PROGRESS),
        return_exceptions=True,
    )

    assert sorted(type(r).__name__ for r in results) == ["AppendConflictError", "NoneType"]
    winner = first if results[0] is None else second
    assert (await read_all(here, script.id))[-1] == winner
    assert (await read_all(there, script.id))[-1] == winner


async def test_an_append_whose_answer_was_lost_is_seen_by_this_processs_readers(
    pair: tuple[Storage, Storage], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The append committed but its connection died before the answer (a restart): this
    process skips its own notices, so it must not trust the head it knew — its readers
    and waiters look at the table and find the events."""
    here, _ = pair
    script = await started(here)
    last = script.fold.last_seq
    assert await here.events.read_after(script.id, last, 10) == []  # the head is known
    assert database(here).heads.known(script.id) == last
    waiter = asyncio.create_task(here.events.wait(script.id, last, 30.0))
    await asyncio.sleep(0.02)
    call = log.AppendWriter._call

    async def answer_lost(writer: log.AppendWriter, batch: list[object]) -> list[bool]:
        await call(writer, batch)  # type: ignore[arg-type]
        raise StoreUnavailableError("PostgreSQL append failed: connection was closed")

    monkeypatch.setattr(log.AppendWriter, "_call", answer_lost)
    events = script.text("committed")
    with pytest.raises(StoreUnavailableError):
        await script.append(here, events)

    assert await asyncio.wait_for(waiter, 2.0) is True
    assert await here.events.read_after(script.id, last, 10) == events


async def test_tails_read_this_processs_recent_appends_without_a_query(
    pair: tuple[Storage, Storage], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Events this process appended are read from its window, not the table."""
    here, _ = pair
    script = await started(here)
    events = script.text("a", "b")
    await script.append(here, events)
    queries: list[str] = []
    fetch = asyncpg.Pool.fetch

    async def counted(pool: asyncpg.Pool, query: str, *args: object) -> object:
        queries.append(query)
        return await fetch(pool, query, *args)

    monkeypatch.setattr(asyncpg.Pool, "fetch", counted)
    assert await here.events.read_after(script.id, events[0].seq - 1, 10) == events
    assert await here.events.read_after(script.id, events[0].seq, 1) == events[1:]
    assert queries == []
    assert await here.events.read_after(script.id, -1, 100) == await read_all(here, script.id)
    assert queries  # from before the window: the table


async def test_the_window_never_hides_appends_of_another_process(
    pair: tuple[Storage, Storage],
) -> None:
    """A response continued by another process (its first runner died): reads past
    what this process appended come from the table, whole and in order."""
    here, there = pair
    script = await started(here)
    mine = script.text("mine")
    await script.append(here, mine)
    theirs = script.text("theirs") + script.complete()
    await script.append(there, theirs)

    assert await here.events.read_after(script.id, mine[-1].seq, 10) == theirs
    # Within the window it answers what it holds; the tail then asks for the rest.
    assert await here.events.read_after(script.id, mine[0].seq - 1, 10) == mine
    assert seqs(await read_all(here, script.id)) == list(range(script.next_seq))


async def test_the_window_goes_with_a_delete_of_any_process(
    pair: tuple[Storage, Storage],
) -> None:
    here, there = pair
    script = await started(here)
    await script.append(here, script.text("a"))
    assert await there.responses.delete(script.id)

    await eventually(lambda: database(here).heads.recent.read(script.id, 0, 10) is None)
    with pytest.raises(NotFoundError):
        await here.events.read_after(script.id, 0, 10)


# --- the LISTEN connection ----------------------------------------------------------


async def kill_listener(storage: Storage) -> None:
    listener = database(storage).listener
    pid = listener.server_pid
    assert pid is not None
    assert await admin("SELECT pg_terminate_backend($1)", pid) is True


async def test_listen_connection_reconnects_and_tails_keep_waking(
    pair: tuple[Storage, Storage],
) -> None:
    here, there = pair
    script = await started(there)
    await read_all(here, script.id)
    listener = database(here).listener

    await kill_listener(here)
    await eventually(lambda: listener.reconnects == 1)

    for piece in ("after", "reconnect"):
        last = script.fold.last_seq
        waiter = asyncio.create_task(here.events.wait(script.id, last, 30.0))
        await asyncio.sleep(0.02)
        await script.append(there, script.text(piece))
        assert await asyncio.wait_for(waiter, 2.0) is True
    assert len(await read_all(here, script.id)) == script.fold.last_seq + 1


async def test_tails_fall_back_to_polling_while_the_listen_connection_is_down(
    pair: tuple[Storage, Storage], monkeypatch: pytest.MonkeyPatch
) -> None:
    here, there = pair
    script = await started(there)
    last = script.fold.last_seq
    await read_all(here, script.id)
    db = database(here)
    down = asyncio.Event()

    async def refuse() -> asyncpg.Connection:
        down.set()
        raise OSError("the network is down (test)")

    monkeypatch.setattr(db.listener, "_connect", refuse)
    monkeypatch.setattr(log, "FALLBACK_POLL_SECONDS", 0.1)
    monkeypatch.setattr(listen, "RETRY_SECONDS", (0.05,))
    waiter = asyncio.create_task(here.events.wait(script.id, last, 30.0))
    await kill_listener(here)
    await asyncio.wait_for(down.wait(), 2.0)
    assert db.heads.known(script.id) is None  # nothing is trusted now

    events = script.text("polled")
    await script.append(there, events)

    assert await asyncio.wait_for(waiter, 2.0) is True
    assert await here.events.read_after(script.id, last, 10) == events
    assert "reconnecting" in repr(db.listener)


async def test_jobs_enqueued_while_the_listen_connection_was_down_wake_the_worker(
    pair: tuple[Storage, Storage], monkeypatch: pytest.MonkeyPatch
) -> None:
    here, there = pair
    listener = database(here).listener
    connect = listener._connect
    down = asyncio.Event()

    async def refuse() -> asyncpg.Connection:
        down.set()
        raise OSError("the network is down (test)")

    monkeypatch.setattr(listen, "RETRY_SECONDS", (0.05,))
    monkeypatch.setattr(listener, "_connect", refuse)
    await kill_listener(here)
    await asyncio.wait_for(down.wait(), 2.0)
    await here.jobs.wait_for_jobs(0.01)
    new = new_response()
    await there.responses.create(new)  # its notice is lost
    waiter = asyncio.create_task(here.jobs.wait_for_jobs(30.0))
    await asyncio.sleep(0.1)
    assert not waiter.done()

    monkeypatch.setattr(listener, "_connect", connect)

    await asyncio.wait_for(waiter, 2.0)
    assert listener.reconnects == 1
    [job] = await here.jobs.claim("w", 10, 30.0)
    assert job.response_id == new.id


async def test_close_with_the_listen_connection_down_returns(
    schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = await open_in_fresh_schema(POSTGRES_URL, schema)
    db = database(storage)

    async def refuse() -> asyncpg.Connection:
        raise OSError("the network is down (test)")

    monkeypatch.setattr(db.listener, "_connect", refuse)
    await kill_listener(storage)
    await eventually(lambda: not db.heads.trusted)

    await asyncio.wait_for(storage.close(), 5.0)


# --- group commit -------------------------------------------------------------------


async def test_appends_of_one_loop_step_share_a_call(pair: tuple[Storage, Storage]) -> None:
    here, _ = pair
    scripts = [await started(here) for _ in range(20)]
    assert isinstance(here.events, PostgresEventLog)
    writer = here.events.writer
    calls, appends = writer.calls, writer.appends

    await asyncio.gather(*(s.append(here, s.text("x")) for s in scripts))

    assert writer.appends - appends == 20
    assert writer.calls - calls <= 2
    for script in scripts:
        assert (await read_all(here, script.id))[-1].seq == script.fold.last_seq


async def test_two_appends_to_one_response_in_one_loop_step_are_checked_in_turn(
    pair: tuple[Storage, Storage],
) -> None:
    here, _ = pair
    script = await started(here)
    first, second = script.text("one"), script.text("two")
    repeat = [ev.StoredEvent(second[0].seq, second[0].type, second[0].frame)]

    results = await asyncio.gather(
        here.events.append(script.id, first, None, ResponseStatus.IN_PROGRESS),
        here.events.append(script.id, second, None, ResponseStatus.IN_PROGRESS),
        here.events.append(script.id, repeat, None, ResponseStatus.IN_PROGRESS),
        return_exceptions=True,
    )

    assert results[0] is None and results[1] is None
    assert isinstance(results[2], AppendConflictError)
    assert (await read_all(here, script.id))[-2:] == first + second

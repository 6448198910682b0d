"""What only the SQLite backend promises: a file that outlives the process, owned by
one process at a time, and a bounded in-memory tail in front of the event table."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import orjson
import pytest

from tests.support.stores import Script, new_response, read_all, seqs
from tether.domain import events as ev
from tether.domain.fold import fold_all
from tether.domain.response import ResponseStatus
from tether.errors import ConfigError, StorageError
from tether.storage.base import Storage
from tether.storage.registry import open_storage
from tether.storage.window import WINDOW_LIMIT

OpenStore = Callable[[], Awaitable[Storage]]


@pytest.fixture
async def open_store(tmp_path: Path) -> AsyncIterator[OpenStore]:
    """Opens the same SQLite file each call; closes what is still open at the end."""
    opened: list[Storage] = []
    url = f"sqlite:///{tmp_path}/t.db"

    async def open_() -> Storage:
        storage = await open_storage(url)
        opened.append(storage)
        return storage

    yield open_
    for storage in opened:
        await storage.close()


async def test_sqlite_data_survives_close_and_reopen(open_store: OpenStore) -> None:
    first = await open_store()
    done_new, running_new = new_response(), new_response(background=True)
    await first.responses.create(done_new)
    await first.responses.create(running_new)
    done, running = Script(done_new), Script(running_new)
    await done.append(first, done.start() + done.text("kept"))
    await done.append(first, done.complete())
    await running.append(first, running.start() + running.text("half"))
    before = {
        rid: (await first.responses.get(rid), await read_all(first, rid))
        for rid in (done.id, running.id)
    }
    await first.close()

    second = await open_store()

    for rid, (stored, log) in before.items():
        assert await second.responses.get(rid) == stored
        assert await read_all(second, rid) == log
    page = await second.responses.input_items(done.id, after=None, limit=10, order="asc")
    assert page.items == done_new.input_items
    [job] = await second.jobs.claim("w1", 10, 30.0)
    assert (job.response_id, job.payload) == (running.id, running_new.job)
    more = running.text(" more")
    await running.append(second, more)  # the log continues where it stopped
    assert (await read_all(second, running.id))[-1] == more[-1]


async def test_sqlite_second_open_of_same_file_raises_config_error(
    open_store: OpenStore,
) -> None:
    first = await open_store()

    with pytest.raises(ConfigError, match="Another Tether process"):
        await open_store()

    await first.close()
    reopened = await open_store()  # the lock goes with the close
    assert await reopened.responses.get("resp_unknown") is None


async def test_sqlite_reads_before_the_recent_tail_come_from_the_database(
    open_store: OpenStore,
) -> None:
    storage = await open_store()
    new = new_response()
    await storage.responses.create(new)
    script = Script(new)
    await script.append(storage, script.start())
    for start in range(0, WINDOW_LIMIT + 100, 100):
        await script.append(storage, script.text(*(f"{i} " for i in range(start, start + 100))))
    await script.append(storage, script.complete())
    total = script.fold.last_seq + 1
    recent = storage.events._db.recent[new.id]  # type: ignore[attr-defined]
    assert recent.first_seq > 1  # precondition: the in-memory window was trimmed

    whole = await storage.events.read_after(new.id, -1, total + 10)
    paged = await read_all(storage, new.id, page=333)
    around = await storage.events.read_after(new.id, recent.first_seq - 5, 10)

    assert seqs(whole) == list(range(total))
    assert paged == whole
    assert seqs(around) == list(range(recent.first_seq - 4, recent.first_seq + 6))
    stored = await storage.responses.get(new.id)
    assert stored is not None
    assert fold_all([e.payload() for e in whole]) == orjson.loads(stored.snapshot)


async def test_sqlite_tail_after_reopen_reads_older_events_from_database(
    open_store: OpenStore,
) -> None:
    first = await open_store()
    new = new_response()
    await first.responses.create(new)
    script = Script(new)
    await script.append(first, script.start() + script.text("a", "b"))
    await first.close()
    second = await open_store()

    more = script.text("c")
    await script.append(second, more)  # starts a fresh recent tail at this event

    log = await read_all(second, new.id)
    assert seqs(log) == list(range(script.fold.last_seq + 1))
    assert log[-1] == more[-1]


async def test_sqlite_terminate_after_reopen_uses_stored_snapshot(
    open_store: OpenStore,
) -> None:
    first = await open_store()
    new = new_response()
    await first.responses.create(new)
    script = Script(new)
    await script.append(first, script.start() + script.text("par", "tial"))
    await first.close()
    second = await open_store()

    result = await second.responses.terminate(
        new.id, ResponseStatus.FAILED, {"code": "server_error", "message": "restarted"}
    )

    assert result is not None and result.status is ResponseStatus.FAILED
    log = await read_all(second, new.id)
    assert [e.type for e in log[-2:]] == [ev.ERROR, ev.FAILED]
    snapshot = log[-1].payload()["response"]
    assert snapshot["output"][0]["content"][0]["text"] == "partial"


async def test_sqlite_wait_sees_events_committed_before_reopen(open_store: OpenStore) -> None:
    first = await open_store()
    new = new_response()
    await first.responses.create(new)
    await first.close()
    second = await open_store()

    assert await second.events.wait(new.id, -1, 0.3) is True


@pytest.mark.parametrize(
    "url",
    ["sqlite://relative.db", "sqlite:///", "sqlite:t.db", "mysql://localhost/db", "nonsense"],
)
async def test_sqlite_bad_url_raises_config_error(url: str) -> None:
    with pytest.raises(ConfigError):
        await open_storage(url)


async def test_sqlite_bad_synchronous_raises_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="synchronous"):
        await open_storage(f"sqlite:///{tmp_path}/t.db", sqlite_synchronous="SOMETIMES")


async def test_sqlite_failed_batch_commits_nothing_and_later_appends_still_fit(
    open_store: OpenStore,
) -> None:
    store = await open_store()
    new = new_response()
    await store.responses.create(new)
    script = Script(new)
    db = store.events._db  # type: ignore[attr-defined]
    events = script.start()

    # The append and a broken statement share one group transaction: both fail.
    appended = store.events.append(script.id, events, script.snapshot(), script.fold.status)
    broken = db.submit(lambda conn: conn.execute("INSERT INTO no_such_table VALUES (1)"))
    for outcome in (appended, broken):
        with pytest.raises(StorageError):
            await outcome

    assert seqs(await read_all(store, script.id)) == [0]
    await store.events.append(script.id, events, script.snapshot(), script.fold.status)
    assert seqs(await read_all(store, script.id)) == [0, 1, 2, 3]

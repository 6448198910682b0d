"""What only the SQLite backend promises about conversations: they and a response's
link to its conversation outlive the process, and a file written before
conversations existed is upgraded in place."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from tests.support.stores import Script, new_response, read_all, user_items
from tether.domain.response import ResponseStatus
from tether.storage.base import Storage
from tether.storage.registry import open_storage
from tether.storage.sqlite.database import MIGRATIONS
from tether.storage.sqlite.rows import insert_events

OpenStore = Callable[[], Awaitable[Storage]]


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "t.db"


@pytest.fixture
async def open_store(path: Path) -> AsyncIterator[OpenStore]:
    """Opens the same SQLite file each call; closes what is still open at the end."""
    opened: list[Storage] = []

    async def open_() -> Storage:
        storage = await open_storage(f"sqlite:///{path}")
        opened.append(storage)
        return storage

    yield open_
    for storage in opened:
        await storage.close()


async def test_sqlite_conversations_survive_close_and_reopen(open_store: OpenStore) -> None:
    first = await open_store()
    made = await first.conversations.create("conv_1", {"k": "v"}, user_items("one"), 1700000000)
    await first.conversations.add_items("conv_1", user_items("two"))
    items = (await first.conversations.list_items("conv_1", after=None, limit=9, order="asc")).items
    await first.close()

    second = await open_store()

    assert await second.conversations.get("conv_1") == made
    page = await second.conversations.list_items("conv_1", after=None, limit=9, order="asc")
    assert page.items == items


async def test_sqlite_response_link_to_its_conversation_survives_reopen(
    open_store: OpenStore,
) -> None:
    first = await open_store()
    await first.conversations.create("conv_1", {}, [], int(time.time()))
    new = new_response(conversation_id="conv_1", items=user_items("question"))
    await first.responses.create(new)
    script = Script(new)
    await script.append(first, script.start() + script.text("answer"))
    await first.close()

    second = await open_store()  # the writer learns the link from the file, not from memory
    await script.append(second, script.complete())

    page = await second.conversations.list_items("conv_1", after=None, limit=9, order="asc")
    assert [item["content"][0]["text"] for item in page.items] == ["question", "answer"]


async def test_sqlite_file_from_before_conversations_is_upgraded(
    path: Path, open_store: OpenStore
) -> None:
    new = new_response()
    with sqlite3.connect(path) as conn:  # the file as the first schema wrote it
        conn.executescript(MIGRATIONS[0])
        conn.execute(
            "INSERT INTO responses (id, status, snapshot, snapshot_seq, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (new.id, new.status.value, new.snapshot, 0, new.created_at, new.created_at),
        )
        insert_events(conn, 1, new.events)
        conn.execute("PRAGMA user_version=1")
    conn.close()

    storage = await open_store()

    script = Script(new)
    await script.append(storage, script.start() + script.text("old"))
    await script.append(storage, script.complete())
    stored = await storage.responses.get(new.id)
    assert stored is not None and stored.status is ResponseStatus.COMPLETED
    assert (await read_all(storage, new.id))[0] == new.events[0]
    await storage.conversations.create("conv_1", {}, user_items("new"), int(time.time()))
    assert (await storage.conversations.get_item("conv_1", "msg_nope")) is None
    with sqlite3.connect(path) as check:
        assert check.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    check.close()

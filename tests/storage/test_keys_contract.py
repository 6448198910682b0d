"""The projects-and-keys contract (`KeyStore`, and the owner every response and
conversation carries, `tether/storage/base.py`), run against every backend of
`tests.support.stores.OPENERS`.

Sections: keys · owners of responses · owners of conversations.
"""

from __future__ import annotations

import dataclasses
import sqlite3
import time
from pathlib import Path

import pytest

from tests.support.stores import CreateResponse, Script, new_response, user_items
from tether.domain.ids import new_id
from tether.domain.response import ResponseStatus
from tether.errors import InvalidRequestError
from tether.storage.apikeys import PREFIX, parse
from tether.storage.base import DEFAULT_PROJECT, KeyStore, Principal, Storage


def secret_of(text: str) -> str:
    """The secret of a key's text `tk-<16 hex digits>-<secret>` (it may hold '-')."""
    return text[len(PREFIX) + 17 :]


def keys_of(storage: Storage) -> KeyStore:
    assert storage.keys is not None, f"the {storage.name} backend has no key store"
    return storage.keys


# --- keys -----------------------------------------------------------------------


async def test_keys_lookup_answers_the_project_of_a_created_key(storage: Storage) -> None:
    keys = keys_of(storage)
    key_id, text = await keys.create("acme", "ci")
    other_id, other = await keys.create("beta")
    assert text.startswith(f"{PREFIX}{key_id}-")
    assert await keys.lookup(text) == Principal("acme", key_id)
    assert await keys.lookup(other) == Principal("beta", other_id)


async def test_keys_lookup_refuses_a_wrong_secret_an_unknown_id_and_junk(
    storage: Storage,
) -> None:
    keys = keys_of(storage)
    key_id, text = await keys.create("acme")
    assert await keys.lookup(text[:-1] + ("A" if text[-1] != "A" else "B")) is None
    assert await keys.lookup(f"{PREFIX}{'0' * 16}-{secret_of(text)}") is None
    for junk in ("", "tk-", f"tk-{key_id}", f"tk-{key_id}-", "sk-abc", text.upper()):
        assert await keys.lookup(junk) is None, junk


async def test_keys_list_shows_records_oldest_first_and_never_secrets(storage: Storage) -> None:
    keys = keys_of(storage)
    first, first_text = await keys.create("acme", "first")
    second, second_text = await keys.create("beta")
    listed = await keys.list()
    assert [(k.id, k.project, k.name, k.revoked_at) for k in listed] == [
        (first, "acme", "first", None),
        (second, "beta", None, None),
    ]
    assert abs(listed[0].created_at - time.time()) < 60
    for text in (first_text, second_text):
        assert secret_of(text) not in repr(listed)


async def test_keys_revoke_stops_the_key_for_good(storage: Storage) -> None:
    keys = keys_of(storage)
    key_id, text = await keys.create("acme")
    kept_id, kept = await keys.create("acme")
    assert await keys.revoke(key_id) is True
    assert await keys.lookup(text) is None
    assert await keys.lookup(kept) == Principal("acme", kept_id)
    revoked_at = {k.id: k.revoked_at for k in await keys.list()}
    assert revoked_at[kept_id] is None
    first_revocation = revoked_at[key_id]
    assert first_revocation is not None
    assert await keys.revoke(key_id) is True  # again: still revoked, at the first time
    assert {k.id: k.revoked_at for k in await keys.list()}[key_id] == first_revocation
    assert await keys.lookup(text) is None


async def test_keys_revoke_of_an_unknown_id_answers_false(storage: Storage) -> None:
    assert await keys_of(storage).revoke("0123456789abcdef") is False


@pytest.mark.parametrize("project", ["", "a b", "x" * 65, "acme/1", "é"])
async def test_keys_create_refuses_a_bad_project_name(storage: Storage, project: str) -> None:
    with pytest.raises(InvalidRequestError) as refused:
        await keys_of(storage).create(project)
    assert refused.value.param == "project"
    assert await keys_of(storage).list() == []


async def test_keys_sqlite_file_holds_no_secret(tmp_path: Path) -> None:
    """Keys are stored hashed: the secret is nowhere in the database file."""
    from tests.support.stores import OPENERS

    storage = await OPENERS["sqlite"](tmp_path)
    try:
        _, text = await keys_of(storage).create("acme")
    finally:
        await storage.close()
    parsed = parse(text)
    assert parsed is not None
    assert stored_digests(tmp_path) == [parsed[1]]
    assert files_holding(tmp_path, secret_of(text).encode()) == []


def stored_digests(directory: Path) -> list[bytes]:
    with sqlite3.connect(directory / "t.db") as conn:
        return [row[0] for row in conn.execute("SELECT digest FROM api_keys")]


def files_holding(directory: Path, secret: bytes) -> list[Path]:
    return [path for path in directory.glob("t.db*") if secret in path.read_bytes()]


# --- owners of responses --------------------------------------------------------


async def test_response_owner_is_answered_by_get_and_terminate(storage: Storage) -> None:
    owned = dataclasses.replace(new_response(), project="acme")
    await storage.responses.create(owned)
    stored = await storage.responses.get(owned.id)
    assert stored is not None and stored.project == "acme"
    script = Script(owned)
    await script.append(storage, script.start())
    stored = await storage.responses.get(owned.id)  # folded past the snapshot
    assert stored is not None and stored.project == "acme"
    ended = await storage.responses.terminate(owned.id, ResponseStatus.CANCELLED)
    assert ended is not None and ended.project == "acme"
    ended = await storage.responses.terminate(owned.id, ResponseStatus.CANCELLED)
    assert ended is not None and ended.project == "acme"


async def test_response_without_a_project_belongs_to_the_default_one(
    storage: Storage, create: CreateResponse
) -> None:
    new = await create()
    stored = await storage.responses.get(new.id)
    assert stored is not None and stored.project == DEFAULT_PROJECT


# --- owners of conversations ----------------------------------------------------


async def test_conversation_owner_is_answered_by_every_read(storage: Storage) -> None:
    conversations = storage.conversations
    conversation_id = new_id("conv")
    items = user_items("one", "two")
    made = await conversations.create(conversation_id, {}, items, int(time.time()), "acme")
    assert made.project == "acme"
    got = await conversations.get(conversation_id)
    assert got is not None and got.project == "acme"
    updated = await conversations.update_metadata(conversation_id, {"k": "v"})
    assert updated is not None and updated.project == "acme"
    after_delete = await conversations.delete_item(conversation_id, items[0]["id"])
    assert after_delete is not None and after_delete.project == "acme"


async def test_conversation_without_a_project_belongs_to_the_default_one(
    storage: Storage,
) -> None:
    conversation_id = new_id("conv")
    await storage.conversations.create(conversation_id, {}, [], int(time.time()))
    got = await storage.conversations.get(conversation_id)
    assert got is not None and got.project == DEFAULT_PROJECT

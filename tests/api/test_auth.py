"""API keys at the door (`tether/api/auth.py`, `tether/api/admin.py`): in-process apps
on the in-memory store (SQLite where a key must exist before start-up).

Sections: helpers · open mode · keys · the admin key · start-up rules · the cache.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

import pytest
from starlette.testclient import TestClient

from tether.api.app import create_app
from tether.api.auth import Authenticator, check_exposure, is_loopback, static_keys
from tether.errors import ConfigError
from tether.providers.registry import ModelConfig
from tether.settings import Settings
from tether.storage.base import KeyStore, Principal
from tether.storage.registry import open_storage

ACME_KEY = "acme-static-key-0123456789"
BETA_KEY = "beta-static-key-0123456789"
ADMIN_KEY = "admin-key-0123456789abcdef"
MODELS = (ModelConfig("fake", "fake", {"output_tokens": 3}),)


# --- helpers --------------------------------------------------------------------


def settings(**changes: Any) -> Settings:
    return replace(Settings(store="memory://", models=MODELS), **changes)


@contextmanager
def running(**changes: Any) -> Iterator[TestClient]:
    with TestClient(create_app(settings(**changes)), raise_server_exceptions=True) as client:
        yield client


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def store_keys(client: TestClient) -> KeyStore:
    keys = client.app.state.tether.storage.keys  # type: ignore[attr-defined]
    assert keys is not None
    return keys  # type: ignore[no-any-return]


class Answer(Protocol):
    """An HTTP answer, of httpx or of the test client's."""

    status_code: int

    def json(self) -> Any: ...


def assert_invalid_key(answer: Answer) -> None:
    assert answer.status_code == 401
    error = answer.json()["error"]
    assert (error["type"], error["code"]) == ("invalid_request_error", "invalid_api_key")


# --- open mode ----------------------------------------------------------------------


def test_open_mode_serves_every_request_as_the_default_project() -> None:
    with running() as client:
        assert client.get("/v1/models").status_code == 200
        made = client.post("/v1/conversations", json={}, headers=bearer("anything")).json()
        assert client.get(f"/v1/conversations/{made['id']}").status_code == 200
        stored = client.app.state.tether.storage  # type: ignore[attr-defined]
        found = client.portal.call(stored.conversations.get, made["id"])  # type: ignore[union-attr]
        assert found.project == "default"


def test_open_mode_requires_keys_once_they_appear_in_the_store() -> None:
    with running(key_cache_seconds=0.0) as client:
        assert client.get("/v1/models").status_code == 200
        _, key = client.portal.call(store_keys(client).create, "acme")  # type: ignore[union-attr]
        assert_invalid_key(client.get("/v1/models"))
        assert client.get("/v1/models", headers=bearer(key)).status_code == 200
        client.portal.call(store_keys(client).revoke, key.split("-")[1])  # type: ignore[union-attr]
        assert_invalid_key(client.get("/v1/models"))  # never open again


# --- keys ---------------------------------------------------------------------------


def test_a_missing_key_is_a_401_that_says_how_to_send_one() -> None:
    with running(api_keys=f"acme={ACME_KEY}") as client:
        answer = client.get("/v1/models")
        assert_invalid_key(answer)
        assert "Authorization: Bearer" in answer.json()["error"]["message"]
        assert_invalid_key(client.get("/v1/models", headers={"Authorization": ACME_KEY}))


def test_a_wrong_key_is_a_401_that_shows_only_a_masked_key() -> None:
    wrong = "tk-0123456789abcdef-not-the-secret-at-all"
    with running(api_keys=f"acme={ACME_KEY}") as client:
        answer = client.get("/v1/responses/resp_x", headers=bearer(wrong))
        assert_invalid_key(answer)
        message = answer.json()["error"]["message"]
        assert "Incorrect API key provided" in message
        assert wrong not in message and "not-the-secret" not in message


def test_health_and_the_openapi_document_need_no_key() -> None:
    with running(api_keys=f"acme={ACME_KEY}") as client:
        assert client.get("/healthz").status_code == 200
        assert client.get("/openapi.json").status_code == 200


def test_static_keys_reach_the_routes_as_their_project() -> None:
    with running(api_keys=f"acme={ACME_KEY}, beta={BETA_KEY}") as client:
        made = client.post("/v1/conversations", json={}, headers=bearer(ACME_KEY)).json()
        path = f"/v1/conversations/{made['id']}"
        assert client.get(path, headers=bearer(ACME_KEY)).status_code == 200
        assert client.get(path, headers=bearer(BETA_KEY)).status_code == 404


@pytest.mark.parametrize(
    "entry", ["acme", "acme=short", "=0123456789abcdefgh", "a b=0123456789abcdefgh"]
)
def test_static_keys_refuse_a_malformed_entry(entry: str) -> None:
    with pytest.raises(ConfigError, match="api_keys"):
        static_keys(settings(api_keys=entry))


def test_static_keys_name_their_key_without_showing_it() -> None:
    found = static_keys(settings(api_keys=f"acme={ACME_KEY}", admin_key=ADMIN_KEY))
    assert found[ADMIN_KEY].admin
    acme = found[ACME_KEY]
    assert acme.project == "acme" and acme.key_id.startswith("static-")
    assert ACME_KEY not in acme.key_id


# --- the admin key ------------------------------------------------------------------


def test_admin_key_creates_lists_and_revokes_keys() -> None:
    with running(admin_key=ADMIN_KEY) as client:
        made = client.post("/admin/keys", json={"project": "acme"}, headers=bearer(ADMIN_KEY))
        assert made.status_code == 200
        created = made.json()
        key = created["key"]
        assert (created["object"], created["project"]) == ("api_key", "acme")
        assert key.startswith(f"tk-{created['id']}-")
        assert client.get("/v1/models", headers=bearer(key)).status_code == 200
        listed = client.get("/admin/keys", headers=bearer(ADMIN_KEY)).json()["data"]
        assert [(k["id"], k["revoked_at"]) for k in listed] == [(created["id"], None)]
        assert key.split("-", 2)[2] not in str(listed)
        revoked = client.delete(f"/admin/keys/{created['id']}", headers=bearer(ADMIN_KEY))
        assert revoked.json() == {"object": "api_key", "id": created["id"], "revoked": True}
        assert_invalid_key(client.get("/v1/models", headers=bearer(key)))  # at once
        gone = client.delete("/admin/keys/0123456789abcdef", headers=bearer(ADMIN_KEY))
        assert gone.status_code == 404


def test_admin_key_refuses_a_bad_new_key() -> None:
    with running(admin_key=ADMIN_KEY) as client:
        bodies: list[Any] = [{}, {"project": "a b"}, {"project": "acme", "scope": "all"}, []]
        for body in bodies:
            answer = client.post("/admin/keys", json=body, headers=bearer(ADMIN_KEY))
            assert answer.status_code == 400, body
            assert answer.json()["error"]["type"] == "invalid_request_error"


def test_admin_key_owns_nothing_and_project_keys_manage_nothing() -> None:
    with running(admin_key=ADMIN_KEY, api_keys=f"acme={ACME_KEY}") as client:
        answer = client.get("/v1/models", headers=bearer(ADMIN_KEY))
        assert answer.status_code == 403
        assert answer.json()["error"]["code"] == "insufficient_permissions"
        assert client.get("/admin/keys", headers=bearer(ACME_KEY)).status_code == 403
        assert_invalid_key(client.get("/admin/keys"))


def test_admin_routes_need_the_admin_key_even_in_open_mode() -> None:
    with running() as client:
        assert_invalid_key(client.get("/admin/keys"))
        assert client.get("/v1/models").status_code == 200


# --- start-up rules -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("::1", True), ("localhost", True), ("0.0.0.0", False),
     ("10.1.2.3", False), ("example.org", False)],
)  # fmt: skip
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_a_public_address_without_keys_refuses_to_start() -> None:
    with pytest.raises(ConfigError, match="--insecure-no-auth"), running(host="0.0.0.0"):
        pass


def test_a_public_address_starts_with_a_key_or_when_told_it_is_insecure() -> None:
    with running(host="0.0.0.0", api_keys=f"acme={ACME_KEY}") as client:
        assert_invalid_key(client.get("/v1/models"))
    with running(host="0.0.0.0", insecure_no_auth=True) as client:
        assert client.get("/v1/models").status_code == 200


async def test_check_exposure_looks_for_keys_in_the_store(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path}/t.db"
    public = settings(host="0.0.0.0", store=store)
    with pytest.raises(ConfigError, match=r"Refusing to serve 0\.0\.0\.0"):
        await check_exposure(public)
    storage = await open_storage(store)
    assert storage.keys is not None
    await storage.keys.create("acme")
    await storage.close()
    await check_exposure(public)
    await check_exposure(
        settings(host="0.0.0.0", store=f"sqlite:///{tmp_path}/u.db", insecure_no_auth=True)
    )


def test_a_key_made_before_start_up_makes_keys_required(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path}/t.db"

    async def make() -> str:
        storage = await open_storage(store)
        assert storage.keys is not None
        _, key = await storage.keys.create("acme")
        await storage.close()
        return key

    key = asyncio.run(make())
    with running(store=store) as client:
        assert_invalid_key(client.get("/v1/models"))
        assert client.get("/v1/models", headers=bearer(key)).status_code == 200


# --- the cache ------------------------------------------------------------------------


class CountingKeys:
    """A `KeyStore` that counts lookups."""

    def __init__(self, inner: KeyStore) -> None:
        self.inner = inner
        self.lookups = 0

    async def lookup(self, key: str) -> Principal | None:
        self.lookups += 1
        return await self.inner.lookup(key)

    async def list(self) -> list[Any]:
        return await self.inner.list()


async def test_lookups_are_cached_for_key_cache_seconds() -> None:
    storage = await open_storage("memory://")
    assert storage.keys is not None
    key_id, key = await storage.keys.create("acme")
    counting = CountingKeys(storage.keys)
    auth = Authenticator(settings(key_cache_seconds=3600.0))
    await auth.open(counting)  # type: ignore[arg-type]
    assert auth.required
    for _ in range(50):
        assert await auth.authenticate(key, "/v1/models") == Principal("acme", key_id)
    assert counting.lookups == 1
    await storage.keys.revoke(key_id)
    assert await auth.authenticate(key, "/v1/models") == Principal("acme", key_id)  # cached
    auth.forget(key_id)
    with pytest.raises(Exception, match="Incorrect API key"):
        await auth.authenticate(key, "/v1/models")
    assert counting.lookups == 2


async def test_unknown_keys_are_cached_too() -> None:
    storage = await open_storage("memory://")
    assert storage.keys is not None
    await storage.keys.create("acme")
    counting = CountingKeys(storage.keys)
    auth = Authenticator(settings(key_cache_seconds=3600.0))
    await auth.open(counting)  # type: ignore[arg-type]
    for key in ["tk-0123456789abcdef-wrong"] * 5 + ["sk-not-ours"] * 5:
        with pytest.raises(Exception, match="Incorrect API key"):
            await auth.authenticate(key, "/v1/models")
    assert counting.lookups == 2  # once each

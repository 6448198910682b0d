"""Managing API keys, over the store's `KeyStore`: the admin key's HTTP routes and
what the `tether keys` commands do.

    POST   /admin/keys          {"project": "acme", "name": "ci"} → the key, shown once
    GET    /admin/keys          every key (never a secret), revoked ones included
    DELETE /admin/keys/{id}     revoke a key for good

Only the admin key (setting `admin_key`) may call these (see `auth.py`). A key
revoked here stops working at once on this process, and within
`key_cache_seconds` on the others.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TypeVar

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tether.api.auth import Authenticator
from tether.api.context import context, read_body
from tether.api.routing import route
from tether.domain.types import JSONObject
from tether.errors import ConfigError, InvalidRequestError, NotFoundError
from tether.settings import Settings
from tether.storage.base import ApiKey, KeyStore
from tether.storage.registry import open_storage

T = TypeVar("T")


def key_record(key: ApiKey) -> JSONObject:
    return {
        "object": "api_key",
        "id": key.id,
        "project": key.project,
        "name": key.name,
        "created_at": int(key.created_at),
        "revoked_at": None if key.revoked_at is None else int(key.revoked_at),
    }


def _keys_of(request: Request) -> KeyStore:
    keys = context(request).storage.keys
    if keys is None:
        raise ConfigError("this store keeps no API keys")
    return keys


def _json(body: object) -> Response:
    return Response(orjson.dumps(body), media_type="application/json")


def _parse_new_key(body: bytes) -> tuple[str, str | None]:
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        parsed = None
    if not isinstance(parsed, dict):
        raise InvalidRequestError(
            'Send a JSON object: {"project": "NAME"} (and optionally "name").'
        )
    unknown = sorted(set(parsed) - {"project", "name"})
    if unknown:
        raise InvalidRequestError(
            f"Unknown parameter: '{unknown[0]}'. A key takes 'project' and 'name'.",
            param=unknown[0],
        )
    project, name = parsed.get("project"), parsed.get("name")
    if not isinstance(project, str):
        raise InvalidRequestError("'project' is required: the project the key belongs to.")
    if name is not None and not isinstance(name, str):
        raise InvalidRequestError("'name' must be a string or null.", param="name")
    return project, name


async def create_key(request: Request) -> Response:
    project, name = _parse_new_key(await read_body(request))
    keys = _keys_of(request)
    key_id, text = await keys.create(project, name)
    record = ApiKey(key_id, project, name, time.time())
    return _json({**key_record(record), "key": text})


async def list_keys(request: Request) -> Response:
    listed = [key_record(key) for key in await _keys_of(request).list()]
    return _json({"object": "list", "data": listed})


async def revoke_key(request: Request) -> Response:
    key_id = request.path_params["key_id"]
    if not await _keys_of(request).revoke(key_id):
        raise NotFoundError(f"No API key with id '{key_id}'; see GET /admin/keys.")
    auth: Authenticator = request.app.state.auth
    auth.forget(key_id)
    return _json({"object": "api_key", "id": key_id, "revoked": True})


routes: list[Route] = [
    route("/admin/keys", GET=list_keys, POST=create_key),
    route("/admin/keys/{key_id}", DELETE=revoke_key),
]


# --- the `tether keys` commands ------------------------------------------------------


async def _with_keys(settings: Settings, action: Callable[[KeyStore], Awaitable[T]]) -> T:
    storage = await open_storage(settings.store, sqlite_synchronous=settings.sqlite_synchronous)
    try:
        if storage.keys is None:
            raise ConfigError(f"The store {storage.name} keeps no API keys.")
        return await action(storage.keys)
    finally:
        await storage.close()


async def create_key_command(settings: Settings, project: str, name: str | None) -> str:
    """Make a key of `project` in the settings' store; answers its text."""
    _, text = await _with_keys(settings, lambda keys: keys.create(project, name))
    return text


async def list_keys_command(settings: Settings) -> list[ApiKey]:
    return await _with_keys(settings, lambda keys: keys.list())


async def revoke_key_command(settings: Settings, key_id: str) -> bool:
    return await _with_keys(settings, lambda keys: keys.revoke(key_id))


def listing(keys: list[ApiKey]) -> str:
    """The keys as a table: id, project, created, revoked, name (times in UTC)."""
    rows = [("ID", "PROJECT", "CREATED", "REVOKED", "NAME")]
    rows += [
        (key.id, key.project, _when(key.created_at), _when(key.revoked_at), key.name or "-")
        for key in keys
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return "\n".join(
        "  ".join([*(cell.ljust(width) for cell, width in zip(row, widths, strict=False)), row[4]])
        for row in rows
    )


def _when(stamp: float | None) -> str:
    if stamp is None:
        return "-"
    return datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

"""API keys at the door: who makes each request, decided before any route runs.

- A request names its key in `Authorization: Bearer <key>`. A key is one of the
  store's (`tether keys create`, `POST /admin/keys`), a static one from the settings
  (`api_keys = "project=key,…"`), or the admin key (`admin_key`), which manages keys
  under `/admin/` and may do nothing else (403); project keys get 403 there.
- A missing or unknown key is a 401 (`invalid_api_key`). `/healthz` and
  `/openapi.json` need no key. A WebSocket handshake is refused with the same
  answer; an open socket checks its key again at every `response.create`.
- With no key anywhere (no static key, no admin key, none ever made in the store)
  Tether runs open: every request is project "default". It does so only on a
  loopback address, unless `insecure_no_auth`. Once a key is made in the store, keys
  are required within `key_cache_seconds`, for good (revoking every key does not
  open the server again).
- Lookups are cached per process for `key_cache_seconds` (found and not found), so a
  request costs one dict lookup; a revoked key stops working within that time (at
  once on the process that revoked it over HTTP).

The middleware puts the request's `Principal` in the ASGI scope; routes read it with
`principal(request)`. It also counts the request against the key's rate limit
(`limits.py`).
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import math
import time
from typing import TYPE_CHECKING

import orjson
from starlette.requests import HTTPConnection
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from tether.errors import APIError, ConfigError, StorageError
from tether.settings import Settings
from tether.storage.apikeys import check_project
from tether.storage.base import DEFAULT_PROJECT, KeyStore, Principal
from tether.storage.registry import open_storage

if TYPE_CHECKING:
    from tether.api.limits import Limits

logger = logging.getLogger("tether.api")

OPEN_PATHS = frozenset({"/healthz", "/openapi.json"})
SCOPE_KEY = "tether.principal"
OPEN = Principal(DEFAULT_PROJECT, "open")  # every request while Tether runs open
ADMIN = Principal("", "admin", admin=True)
MIN_KEY_LENGTH = 16
MAX_CACHED = 10_000  # key lookups remembered per process


class AuthenticationError(APIError):
    status_code = 401
    error_type = "invalid_request_error"


class PermissionDeniedError(APIError):
    status_code = 403
    error_type = "invalid_request_error"


class KeyCheckUnavailableError(APIError):
    status_code = 503
    error_type = "server_error"


def principal(request: HTTPConnection) -> Principal:
    """Who makes `request`, or opened a WebSocket (set by `AuthMiddleware`)."""
    found: Principal = request.scope[SCOPE_KEY]
    return found


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def static_keys(settings: Settings) -> dict[str, Principal]:
    """Key text → principal of the settings' `api_keys` and `admin_key`. Raises
    `ConfigError` for a malformed entry or a key shorter than 16 characters."""
    keys: dict[str, Principal] = {}
    for entry in filter(None, (part.strip() for part in settings.api_keys.split(","))):
        project, equals, key = (part.strip() for part in entry.partition("="))
        try:
            check_project(project)
        except APIError as exc:
            raise ConfigError(f"api_keys: {exc.message}") from None
        if not equals or len(key) < MIN_KEY_LENGTH:
            raise ConfigError(
                f"api_keys: the entry for project {project!r} needs a key of at least "
                f"{MIN_KEY_LENGTH} characters: 'project=key,project2=key2'."
            )
        keys[key] = Principal(project, "static-" + hashlib.sha256(key.encode()).hexdigest()[:12])
    if settings.admin_key:
        if len(settings.admin_key) < MIN_KEY_LENGTH:
            raise ConfigError(f"admin_key must have at least {MIN_KEY_LENGTH} characters.")
        keys[settings.admin_key] = ADMIN
    return keys


async def has_keys(store: KeyStore | None) -> bool:
    """Whether `store` has ever had a key: revoking every key does not open a server."""
    return store is not None and bool(await store.list())


def exposure_error(settings: Settings) -> ConfigError:
    return ConfigError(
        f"Refusing to serve {settings.host} without API keys: anyone who can reach it could "
        "read every response. Create a key (`tether keys create --project NAME`), set "
        "api_keys or admin_key, bind 127.0.0.1, or pass --insecure-no-auth if the network "
        "is trusted."
    )


async def check_exposure(settings: Settings) -> None:
    """Raise `ConfigError` when `settings` would serve a non-loopback address with no
    key at all (what `tether serve` checks before it binds)."""
    if is_loopback(settings.host) or settings.insecure_no_auth or static_keys(settings):
        return
    if settings.zero_data_retention:  # no store is opened: only static keys exist
        raise exposure_error(settings)
    storage = await open_storage(settings.store, sqlite_synchronous=settings.sqlite_synchronous)
    try:
        found = await has_keys(storage.keys)
    finally:
        await storage.close()
    if not found:
        raise exposure_error(settings)


class Authenticator:
    """Answers the principal of a key, from a per-process cache of lookups."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._ttl = settings.key_cache_seconds
        static = static_keys(settings)
        # key text → (principal or None, monotonic time it expires); static keys never do
        self._known: dict[str, tuple[Principal | None, float]] = {
            key: (found, math.inf) for key, found in static.items()
        }
        self._store: KeyStore | None = None
        self.required = bool(static)
        self._recheck_at = math.inf

    def __repr__(self) -> str:
        return f"<Authenticator required={self.required} cached={len(self._known)}>"

    async def open(self, store: KeyStore | None) -> None:
        """Start answering from `store`; decide whether keys are required. Raises
        `ConfigError` when none are and the address is not a loopback one."""
        self._store = store
        if not self.required and await has_keys(store):
            self.required = True
        if self.required:
            return
        settings = self._settings
        if not is_loopback(settings.host) and not settings.insecure_no_auth:
            raise exposure_error(settings)
        self._recheck_at = time.monotonic() + self._ttl
        logger.warning(
            "No API keys are configured: Tether serves %s without authentication, every "
            "request as project '%s'%s. Create one with `tether keys create --project NAME`.",
            settings.host,
            DEFAULT_PROJECT,
            " (--insecure-no-auth)" if not is_loopback(settings.host) else ", loopback only",
        )

    async def authenticate(self, key: str | None, path: str) -> Principal:
        """The principal of `key` on `path`. Raises `AuthenticationError` (401) or
        `PermissionDeniedError` (403)."""
        admin_path = path == "/admin" or path.startswith("/admin/")
        if not self.required and not admin_path and not await self._keys_appeared():
            return OPEN
        if key is None:
            raise AuthenticationError(
                "You didn't provide an API key. Send it in the Authorization header: "
                "'Authorization: Bearer YOUR_KEY'.",
                code="invalid_api_key",
            )
        found = await self._lookup(key)
        if found is None:
            raise AuthenticationError(
                f"Incorrect API key provided: {_masked(key)}. Use a key made with `tether "
                "keys create` (or one of the server's api_keys).",
                code="invalid_api_key",
            )
        if found.admin != admin_path:
            raise PermissionDeniedError(
                "The admin key manages keys under /admin/keys and nothing else; use a "
                "project's key."
                if found.admin
                else "Managing keys needs the admin key (setting admin_key).",
                code="insufficient_permissions",
            )
        return found

    def forget(self, key_id: str) -> None:
        """Drop cached lookups of key `key_id` (it was just revoked)."""
        for key, (found, _) in list(self._known.items()):
            if found is not None and found.key_id == key_id:
                del self._known[key]

    async def _lookup(self, key: str) -> Principal | None:
        now = time.monotonic()
        cached = self._known.get(key)
        if cached is not None and cached[1] > now:
            return cached[0]
        if self._store is None:
            return None
        try:
            found = await self._store.lookup(key)
        except StorageError as exc:
            raise KeyCheckUnavailableError(
                f"Tether could not check the API key: {exc}. Try again shortly."
            ) from exc
        if len(self._known) >= MAX_CACHED:
            self._evict(now)
        self._known[key] = (found, now + self._ttl)
        return found

    def _evict(self, now: float) -> None:
        """Forget expired lookups, then the oldest, down to 90 % of the cache."""
        for key, (_, expires) in list(self._known.items()):
            if expires <= now:
                del self._known[key]
        excess = len(self._known) - MAX_CACHED * 9 // 10
        for key in [k for k, (_, expires) in self._known.items() if expires != math.inf][
            : max(excess, 0)
        ]:
            del self._known[key]

    async def _keys_appeared(self) -> bool:
        """While open: whether keys were created in the store since (checked once per
        `key_cache_seconds`); from then on keys are required."""
        now = time.monotonic()
        if now < self._recheck_at:
            return False
        self._recheck_at = now + self._ttl
        try:
            appeared = await has_keys(self._store)
        except StorageError as exc:
            logger.warning("could not check the store for API keys: %s", exc)
            appeared = False
        if appeared:
            self.required = True
            logger.warning("API keys were created in the store: keys are required from now on.")
        return appeared


def _masked(key: str) -> str:
    return f"{key[:6]}****{key[-4:]}" if len(key) >= 16 else "****"


def bearer(scope: Scope) -> str | None:
    """The key of `Authorization: Bearer <key>`, or None."""
    headers: list[tuple[bytes, bytes]] = scope["headers"]
    for name, value in headers:
        if name == b"authorization":
            scheme, _, credentials = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and credentials.strip():
                return credentials.strip()
            return None
    return None


class AuthMiddleware:
    """Pure ASGI middleware: the request's principal into the scope, or a 401/403/429."""

    def __init__(self, app: ASGIApp, auth: Authenticator, limits: Limits) -> None:
        self.app = app
        self.auth = auth
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        try:
            found = await self.auth.authenticate(bearer(scope), scope["path"])
            self.limits.count_request(found)
        except APIError as exc:
            await _refuse(scope, receive, send, exc)
            return
        scope[SCOPE_KEY] = found
        await self.app(scope, receive, send)


async def _refuse(scope: Scope, receive: Receive, send: Send, error: APIError) -> None:
    """The error as JSON with its status; a WebSocket handshake gets the same answer
    (the client's handshake fails with it), or a close with 1008 (policy violation)
    where the server cannot answer a handshake with an HTTP response."""
    if scope["type"] == "websocket" and "websocket.http.response" not in scope.get(
        "extensions", {}
    ):
        await send({"type": "websocket.close", "code": 1008, "reason": error.message[:120]})
        return
    # (uvicorn's websockets-sansio logs a spurious "ASGI callable returned without
    # completing handshake" after a denial response: Kludex/uvicorn#3138.)
    headers = getattr(error, "headers", None)
    answer = Response(
        orjson.dumps(error.to_dict()),
        status_code=error.status_code,
        media_type="application/json",
        headers=headers,
    )
    await answer(scope, receive, send)

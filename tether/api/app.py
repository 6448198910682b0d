"""The ASGI application: routes, error mapping, API keys at the door (`auth`), and
the lifespan that opens the stores, builds the providers and runs the worker."""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tether.api import admin, conversations, responses, websocket
from tether.api.auth import Authenticator, AuthMiddleware
from tether.api.context import Context, context
from tether.api.limits import Limits
from tether.api.openapi import openapi_json
from tether.errors import APIError, StorageError
from tether.jobs.worker import Worker
from tether.providers.registry import ProviderRegistry
from tether.settings import Settings
from tether.storage.memory import open_memory
from tether.storage.registry import open_storage

logger = logging.getLogger("tether.api")


def _error(
    message: str, status: int, error_type: str, headers: Mapping[str, str] | None = None
) -> Response:
    body = {"error": {"message": message, "type": error_type, "param": None, "code": None}}
    return Response(
        orjson.dumps(body), status_code=status, media_type="application/json", headers=headers
    )


async def api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, APIError)
    return Response(
        orjson.dumps(exc.to_dict()),
        status_code=exc.status_code,
        media_type="application/json",
        headers=getattr(exc, "headers", None),  # e.g. a 429's Retry-After
    )


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        message = (
            f"Unknown path {request.url.path}: see the README for the endpoints Tether serves."
        )
        return _error(message, 404, "invalid_request_error")
    if exc.status_code == 405:
        message = f"Method {request.method} is not allowed on {request.url.path}."
        return _error(message, 405, "invalid_request_error", exc.headers)
    return _error(str(exc.detail), exc.status_code, "invalid_request_error")


async def storage_error(request: Request, exc: Exception) -> Response:
    """The store failed (unreachable, full): 503, which the SDKs retry, saying why."""
    logger.error("the store failed on %s %s: %s", request.method, request.url.path, exc)
    reason = str(exc).rstrip(".")
    message = (
        f"Tether's store failed: {reason}. Retry the request; if this goes on, check the "
        "store (see the server log)."
    )
    return _error(message, 503, "server_error")


async def server_error(request: Request, exc: Exception) -> Response:
    logger.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return _error("Tether hit an internal error; see the server log.", 500, "server_error")


async def list_models(request: Request) -> Response:
    ctx = context(request)
    data = [
        {"id": name, "object": "model", "created": 0, "owned_by": "tether"}
        for name in ctx.providers
    ]
    return Response(orjson.dumps({"object": "list", "data": data}), media_type="application/json")


async def health(request: Request) -> Response:
    return Response(b'{"status":"ok"}', media_type="application/json")


class RequestId:
    """Pure ASGI middleware: an `x-request-id` header on every answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = f"req_{secrets.token_hex(16)}".encode()

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id)]
            await send(message)

        await self.app(scope, receive, send_with_id)


def create_app(settings: Settings) -> Starlette:
    """The app; raises `ConfigError` for malformed static keys (`api_keys`, `admin_key`)."""
    auth = Authenticator(settings)
    limits = Limits(settings)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        providers = ProviderRegistry.from_models(settings.models)
        if settings.zero_data_retention:
            storage = open_memory("memory")  # the configured store is never opened
        else:
            storage = await open_storage(
                settings.store, sqlite_synchronous=settings.sqlite_synchronous
            )
        try:
            await auth.open(storage.keys)  # refuses to serve a public address without keys
        except BaseException:
            await storage.close()
            await providers.aclose()
            raise
        memory = storage if settings.zero_data_retention else open_memory()
        # store=false responses live in this process's memory, so this process always
        # generates them; stored ones only when it runs a worker (not with --no-worker).
        both = [storage] if storage is memory else [storage, memory]
        worker = Worker(both if settings.worker else [memory], providers, settings)
        await worker.start()
        app.state.tether = Context(settings, storage, memory, providers, worker)
        try:
            yield
        finally:
            await worker.stop(settings.shutdown_grace_seconds)
            await providers.aclose()
            await memory.close()
            if storage is not memory:
                await storage.close()

    app = Starlette(
        routes=[
            *responses.routes,
            *websocket.routes,
            *conversations.routes,
            *admin.routes,
            Route("/v1/models", list_models, methods=["GET"]),
            Route("/healthz", health, methods=["GET"]),
            Route("/openapi.json", openapi_json, methods=["GET"]),
        ],
        lifespan=lifespan,
        exception_handlers={
            APIError: api_error,
            StorageError: storage_error,
            HTTPException: http_error,
            Exception: server_error,
        },
    )
    app.state.auth = auth
    app.state.limits = limits
    app.add_middleware(AuthMiddleware, auth=auth, limits=limits)
    app.add_middleware(RequestId)
    return app

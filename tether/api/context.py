"""What the routes share: settings, the stores, the models and the worker."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import HTTPConnection, Request

from tether.errors import PayloadTooLargeError
from tether.jobs.worker import Worker
from tether.providers.registry import ProviderRegistry
from tether.settings import Settings
from tether.storage.base import Storage


@dataclass(frozen=True)
class Context:
    settings: Settings
    storage: Storage  # stored responses (store=true)
    memory: Storage  # store=false responses, in memory only
    providers: ProviderRegistry
    worker: Worker


def context(request: HTTPConnection) -> Context:
    """The context of a request or a WebSocket connection."""
    ctx: Context = request.app.state.tether
    return ctx


async def read_body(request: Request) -> bytes:
    """The request body, refused with a 413 beyond `max_body_bytes` (before it is all
    read, when the client says its length)."""
    limit = context(request).settings.max_body_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(limit: int) -> PayloadTooLargeError:
    return PayloadTooLargeError(
        f"The request body is larger than this server accepts ({limit} bytes; setting "
        "max_body_bytes). Send less input (e.g. images by URL instead of inline data), or "
        "raise the limit.",
        code="request_too_large",
    )

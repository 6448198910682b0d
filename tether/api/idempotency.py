"""The `Idempotency-Key` header of `POST /v1/responses`: a retried create answers with
the response its first attempt created, instead of generating a second one.

- The key is 1 to 255 characters (else 400), scoped to the caller's project. It is
  claimed by `ResponseStore.create` in the response's own transaction and keeps
  answering for `idempotency_seconds` (24 h by default); then it is free again.
- Requests are the same when their bodies are the same JSON: the body is hashed
  (SHA-256) in a canonical form — parsed, then serialized by orjson with keys sorted
  at every level and no whitespace — so key order and spacing do not matter, while
  any value that differs does. The same key with another body → 409
  `idempotency_key_reused`, with `x-should-retry: false` (the SDK retries 409s).
- `store=false` with a key → 400: such a response lives only in the memory of one
  process and only while its connection does, so a retry (which comes because the
  connection broke) could never be answered with it.
- A replayed answer carries `Idempotent-Replayed: true`. A key whose response was
  deleted answers 404 until it lapses.
"""

from __future__ import annotations

import hashlib
import time

import orjson
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tether.errors import ConflictError, InvalidRequestError, NotFoundError
from tether.storage.base import IdempotencyClaim

HEADER = "idempotency-key"
MAX_KEY_LENGTH = 255
REPLAYED = (b"idempotent-replayed", b"true")


def read_key(request: Request) -> str | None:
    """The request's `Idempotency-Key`, or None without one. Raises
    `InvalidRequestError` for an empty or too long key, or for more than one."""
    values = request.headers.getlist(HEADER)
    if not values:
        return None
    if len(values) > 1:
        raise InvalidRequestError(
            f"The request has {len(values)} Idempotency-Key headers; send exactly one."
        )
    key = values[0].strip()
    if not key:
        raise InvalidRequestError(
            "The Idempotency-Key header is empty: send a unique value per request (e.g. a "
            "UUID), the same on every retry of it, or leave the header out."
        )
    if len(key) > MAX_KEY_LENGTH:
        raise InvalidRequestError(
            f"The Idempotency-Key header is {len(key)} characters long; it may have at most "
            f"{MAX_KEY_LENGTH} (a UUID is 36)."
        )
    return key


def body_hash(body: bytes) -> bytes:
    """SHA-256 of the JSON body in its canonical form (see the module docstring)."""
    canonical = orjson.dumps(orjson.loads(body), option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).digest()


def claim(key: str, body: bytes, *, store: bool, window_seconds: float) -> IdempotencyClaim:
    """What the create claims for `key` (within the project of the response). Raises
    `InvalidRequestError` for a `store=false` request (see the module docstring)."""
    if not store:
        raise InvalidRequestError(
            "An Idempotency-Key needs a stored response, but this request has 'store' set "
            "to false: such a response lives only as long as its connection, so a retry "
            "could not be answered with it. Set 'store' to true (the default), or leave "
            "out the Idempotency-Key header.",
            param="store",
        )
    return IdempotencyClaim(key, body_hash(body), time.time() + window_seconds)


class KeyReusedError(ConflictError):
    """The 409 for a key already used with another request body. It says
    `x-should-retry: false`: the SDK retries a 409 unless told not to."""

    def __init__(self, key: str) -> None:
        super().__init__(
            f"The Idempotency-Key {key!r} was already used with a different request body. "
            "Send a new key for a new request; a retry must repeat its request's body.",
            code="idempotency_key_reused",
        )
        self.headers = {"x-should-retry": "false"}


def response_gone(key: str, response_id: str) -> NotFoundError:
    """What a retry gets when the response its key created was deleted since."""
    return NotFoundError(
        f"Response with id '{response_id}' not found: it was created for the "
        f"Idempotency-Key {key!r} and has been deleted since. Send a new key to create "
        "another response."
    )


def replayed(answer: ASGIApp) -> ASGIApp:
    """`answer` with the `Idempotent-Replayed: true` header."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        async def send_marked(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), REPLAYED]
            await send(message)

        await answer(scope, receive, send_marked)

    return app

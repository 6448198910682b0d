"""WebSocket mode of `/v1/responses` (the SDK's `client.responses.connect()`).

The client sends `response.create` events — the body of `POST /v1/responses` plus
`"type": "response.create"` and, optionally, a `stream_id` lane — and gets each
response's events as JSON text frames: the very JSON of the SSE `data:` lines, with
the same sequence numbers, plus `stream_id` when the create named one.

- A turn is a create (`responses.start_response`: the validation, context, per-key
  limits and job of `POST /v1/responses`) whose event log is read by a `tail`. Turns
  run one at a time per connection, in the order their events arrive, so each lane
  is FIFO too. `stream` is implied and ignored; `background: true` and
  `generate: false` are 400s. The key is checked again, and counted against its
  rate limit, at every create.
- The connection remembers the latest response of each lane. A create whose
  `previous_response_id` is one of them continues it even with `store: false` (such
  a response stays in this process's memory while it is remembered, and is dropped
  when its lane moves on or the connection closes). Any other id must be a stored
  one of the key's project, else `previous_response_not_found` (400); under zero
  data retention nothing is stored. A create that fails evicts the response of its
  own lane that it continued.
- A create that fails gets an error frame, `{"type": "error", "status": <http
  status>, "error": {type, code, message, param}, "stream_id"?}`, and the connection
  stays open for the next one — unless the key stopped working (401, then a close
  with 1008).
- A client that leaves mid-turn stops only its tail: a stored response runs to its
  end and stays readable and resumable; a `store: false` one is cancelled.
- After `websocket_max_seconds` the connection gets the error
  `websocket_connection_limit_reached` and is closed.

Sections: the route · the session (read, turns, the lanes' latest responses, frames).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from tether.api.auth import AuthenticationError, Authenticator, bearer, principal
from tether.api.context import context
from tether.api.limits import Limits, RateLimitError
from tether.api.responses import Started, ephemeral_end, follow, start_response
from tether.api.schemas import parse_create_request
from tether.api.turns import previous_response_not_found
from tether.domain.events import StoredEvent
from tether.errors import APIError, InvalidRequestError, NotFoundError, StorageError
from tether.storage.base import ResponseStore, Storage

logger = logging.getLogger("tether.websocket")

CREATE = "response.create"
MAX_PENDING = 64  # creates that may wait behind the running one
MAX_LANES = 32  # distinct named stream_ids per connection (the default lane is free)
STREAM_ID = re.compile(r"[A-Za-z0-9_.\-]{1,256}")
POLICY_VIOLATION = 1008

T = TypeVar("T")


# --- the route ----------------------------------------------------------------------


async def serve(websocket: WebSocket) -> None:
    """One connection (the key was checked by `AuthMiddleware` at the handshake)."""
    await websocket.accept()
    await _Session(websocket).run()


routes = [WebSocketRoute("/v1/responses", serve)]


# --- the session --------------------------------------------------------------------


class _End(Exception):
    """The session is over: the client left (`code` None) or the server closes."""

    def __init__(self, code: int | None = None) -> None:
        super().__init__(code)
        self.code = code


class _Expired(_End):
    def __init__(self) -> None:
        super().__init__(1000)


@dataclass(frozen=True, slots=True)
class _Latest:
    """The latest response of a lane: where it lives, and whether it is stored."""

    response_id: str
    storage: Storage
    stored: bool


class _Session:
    """One socket: a reader that queues the client's events, and the turns it runs
    one after the other."""

    def __init__(self, websocket: WebSocket) -> None:
        self._ws = websocket
        self._ctx = context(websocket)
        self._auth: Authenticator = websocket.app.state.auth
        self._limits: Limits = websocket.app.state.limits
        self._key = bearer(websocket.scope)
        self._inbox: asyncio.Queue[str] = asyncio.Queue()
        self._gone = asyncio.Event()
        self._sending = asyncio.Lock()
        self._latest: dict[str | None, _Latest] = {}  # lane → its latest response
        self._lanes: set[str] = set()
        limit = self._ctx.settings.websocket_max_seconds
        now = asyncio.get_running_loop().time()
        self._deadline = now + limit if limit > 0 else math.inf

    def __repr__(self) -> str:
        return (
            f"<WebSocketSession project={principal(self._ws).project!r} "
            f"pending={self._inbox.qsize()} lanes={len(self._lanes)} "
            f"latest={[latest.response_id for latest in self._latest.values()]}>"
        )

    async def run(self) -> None:
        reader = asyncio.ensure_future(self._read())
        try:
            while True:
                await self._turn(await self._until(self._inbox.get()))
        except _End as end:
            if isinstance(end, _Expired):
                with contextlib.suppress(_End):
                    await self._send_error(self._limit_reached(), None)
            if end.code is not None:
                with contextlib.suppress(Exception):
                    await self._ws.close(end.code)
        finally:
            await _stop(reader)
            for latest in list(self._latest.values()):
                await self._drop(latest)
            self._latest.clear()

    async def _read(self) -> None:
        """Queue the client's events until it leaves; refuse the ones beyond
        `MAX_PENDING`."""
        try:
            while True:
                message = await self._ws.receive()
                if message["type"] == "websocket.disconnect":
                    return
                text = message.get("text")
                if text is None:
                    text = (message.get("bytes") or b"").decode("utf-8", "replace")
                if self._inbox.qsize() >= MAX_PENDING:
                    await self._send_error(_too_many_pending(), _lane_of(text))
                    continue
                self._inbox.put_nowait(text)
        except (_End, WebSocketDisconnect, RuntimeError, OSError):
            return
        finally:
            self._gone.set()

    async def _until(self, work: Coroutine[Any, Any, T]) -> T:
        """The result of `work`, unless the client leaves first (`_End`) or the
        connection's time is up (`_Expired`); `work` is cancelled then."""
        task = asyncio.ensure_future(work)
        gone = asyncio.ensure_future(self._gone.wait())
        left = self._deadline - asyncio.get_running_loop().time()
        try:
            await asyncio.wait(
                {task, gone},
                timeout=None if left == math.inf else max(left, 0.0),
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            await _stop(task)
            await _stop(gone)
        if self._gone.is_set():
            raise _End()
        if task.cancelled():
            raise _Expired()
        return task.result()

    # --- one turn -------------------------------------------------------------------

    async def _turn(self, text: str) -> None:
        lane: str | None = None
        previous: str | None = None
        try:
            data = _create_event(text)
            previous = _previous_id(data)
            lane = _stream_id(data)
            self._open_lane(lane)
            await self._check_key()
            params = parse_create_request(
                _create_body(data),
                known_models=self._ctx.providers,
                hosted_tools=self._ctx.providers.hosted_tools,
                zero_data_retention=self._ctx.settings.zero_data_retention,
            )
            where = self._previous_store(params.previous_response_id)
            started = await start_response(self._ws, params, previous=where)
        except APIError as exc:
            await self._evict(lane, previous)
            await self._send_error(exc, lane)
            if isinstance(exc, AuthenticationError):
                raise _End(POLICY_VIOLATION) from None
            return
        except _End:
            raise
        except StorageError as exc:
            logger.error("the store failed on a WebSocket response.create: %s", exc)
            await self._evict(lane, previous)
            await self._send_error(_store_failed(exc), lane)
            return
        except Exception:
            logger.exception("WebSocket response.create failed")
            await self._evict(lane, previous)
            await self._send_error(_internal_error(), lane)
            return
        await self._remember(lane, _Latest(started.response_id, started.storage, params.store))
        await self._stream(started, lane, stored=params.store)

    async def _check_key(self) -> None:
        """The key may have been revoked since the handshake; each create also counts
        against its rate limit."""
        found = await self._auth.authenticate(self._key, self._ws.url.path)
        self._limits.count_request(found)

    def _open_lane(self, lane: str | None) -> None:
        if lane is None or lane in self._lanes:
            return
        if len(self._lanes) >= MAX_LANES:
            raise InvalidRequestError(
                f"This connection has used {MAX_LANES} different stream_ids, the most one "
                "connection takes. Reuse one of them, or open another connection.",
                param="stream_id",
                code="websocket_stream_limit_reached",
            )
        self._lanes.add(lane)

    async def _stream(self, started: Started, lane: str | None, *, stored: bool) -> None:
        """Send the response's events up to its terminal one. If the client leaves
        (or time is up), a `store: false` response is cancelled; a stored one runs on."""
        suffix = None if lane is None else b',"stream_id":' + orjson.dumps(lane) + b"}"
        batches = follow(self._ctx, started.storage, started.response_id, -1)
        try:
            ended = await self._until(self._send_events(batches, suffix))
        except _End:
            if not stored:
                latest = self._latest.pop(lane, None)
                if latest is not None:
                    await self._drop(latest)
            raise
        except StorageError as exc:  # the store failed under the tail: say so, keep the socket
            logger.error("the store failed streaming %s: %s", started.response_id, exc)
            resume = f"Resume it with GET /v1/responses/{started.response_id}?stream=true"
            await self._send_error(_store_failed(exc, resume if stored else "Retry"), lane)
            return
        except Exception:
            logger.exception("WebSocket stream of %s failed", started.response_id)
            await self._send_error(_internal_error(), lane)
            return
        finally:
            with contextlib.suppress(Exception):
                await batches.aclose()  # type: ignore[attr-defined]
        if not ended:
            gone = NotFoundError(
                f"Response '{started.response_id}' was deleted, or its event log expired, "
                "while it streamed; there is nothing more to send."
            )
            await self._send_error(gone, lane)

    async def _send_events(
        self, batches: AsyncIterator[list[StoredEvent] | None], suffix: bytes | None
    ) -> bool:
        """Whether the terminal event was sent (the log may end without one: deleted)."""
        async for batch in batches:
            if batch is None:
                continue  # a quiet stream: uvicorn's pings keep the socket alive
            texts = [_event_text(event, suffix) for event in batch]
            async with self._sending:
                for text in texts:
                    await self._send_text(text)
            if batch[-1].terminal:
                return True
        return False

    # --- the lanes' latest responses ------------------------------------------------

    def _previous_store(self, response_id: str | None) -> ResponseStore | None:
        """Where `previous_response_id` is read: a lane's latest response where it
        lives; any other id from the store (None), which has no `store: false` ones."""
        if response_id is None:
            return None
        for latest in self._latest.values():
            if latest.response_id == response_id:
                return latest.storage.responses
        if self._ctx.settings.zero_data_retention:
            raise previous_response_not_found(response_id)
        return None

    async def _remember(self, lane: str | None, latest: _Latest) -> None:
        replaced = self._latest.get(lane)
        self._latest[lane] = latest
        if replaced is not None:
            await self._drop(replaced)

    async def _evict(self, lane: str | None, previous: str | None) -> None:
        """A failed create forgets the latest response of its lane if it continued it
        (another lane's stays: a failed fork leaves its source alone)."""
        latest = self._latest.get(lane)
        if previous is not None and latest is not None and latest.response_id == previous:
            del self._latest[lane]
            await self._drop(latest)

    async def _drop(self, latest: _Latest) -> None:
        """A `store: false` response is gone once no lane remembers it (cancelled
        first if it still runs); a stored one stays."""
        if latest.stored:
            return
        try:
            await ephemeral_end(self._ctx, latest.storage, latest.response_id)(True)
        except Exception:
            logger.exception("could not drop response %s", latest.response_id)

    # --- frames ---------------------------------------------------------------------

    async def _send_error(self, error: APIError, lane: str | None) -> None:
        body: dict[str, Any] = error.to_dict()["error"]  # type: ignore[assignment]
        headers = getattr(error, "headers", None)
        if headers:
            body["headers"] = {name.lower(): value for name, value in headers.items()}
        frame: dict[str, Any] = {"type": "error", "status": error.status_code, "error": body}
        if lane is not None:
            frame["stream_id"] = lane
        async with self._sending:
            await self._send_text(orjson.dumps(frame).decode())

    async def _send_text(self, text: str) -> None:
        """Raises `_End` when the client is gone."""
        try:
            await self._ws.send({"type": "websocket.send", "text": text})
        except (WebSocketDisconnect, RuntimeError, OSError):
            self._gone.set()
            raise _End() from None

    def _limit_reached(self) -> InvalidRequestError:
        minutes = self._ctx.settings.websocket_max_seconds / 60
        return InvalidRequestError(
            f"This WebSocket connection reached its maximum duration of {minutes:g} minutes "
            "(setting websocket_max_seconds). Open a new connection: continue a stored "
            "response with its previous_response_id, or start a new chain with the full "
            "context (responses with store: false were only kept by this connection).",
            code="websocket_connection_limit_reached",
        )


async def _stop(task: asyncio.Future[Any]) -> None:
    if not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


def _event_text(event: StoredEvent, suffix: bytes | None) -> str:
    """The event's stored JSON, with `"stream_id": …` added before its closing brace."""
    data = event.data if suffix is None else event.data[:-1] + suffix
    return data.decode()


# --- the client's events --------------------------------------------------------------


def _create_event(text: str) -> dict[str, Any]:
    """The event as a JSON object; raises `InvalidRequestError` unless it is a
    `response.create`."""
    example = 'Send JSON objects such as {"type": "response.create", "model": …, "input": …}.'
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise InvalidRequestError(f"The event is not valid JSON. {example}") from None
    if not isinstance(data, dict):
        raise InvalidRequestError(f"The event is not a JSON object. {example}")
    kind = data.get("type")
    if kind != CREATE:
        got = "no 'type'" if kind is None else f"type {kind!r}"
        raise InvalidRequestError(
            f"Unsupported event: got {got}. This server takes '{CREATE}' events over "
            "WebSocket (steering and injection are not supported).",
            param="type",
            code="invalid_value",
        )
    return data


def _previous_id(data: dict[str, Any]) -> str | None:
    value = data.get("previous_response_id")
    return value if isinstance(value, str) else None


def _stream_id(data: dict[str, Any]) -> str | None:
    value = data.get("stream_id")
    if value is None:
        return None
    if not isinstance(value, str) or STREAM_ID.fullmatch(value) is None:
        raise InvalidRequestError(
            "Invalid 'stream_id': expected 1 to 256 ASCII letters, digits, '_', '-' or "
            "'.'; leave it out for the default lane.",
            param="stream_id",
            code="invalid_stream_id",
        )
    return value


def _create_body(data: dict[str, Any]) -> bytes:
    """The body of the equivalent `POST /v1/responses` (with `stream` implied).
    Raises `InvalidRequestError` for `background: true` and `generate: false`."""
    body = {k: v for k, v in data.items() if k not in ("type", "stream_id", "generate")}
    if data.get("generate") not in (None, True):
        raise InvalidRequestError(
            "'generate': false (a warm-up that prepares a response without output) is "
            "not supported by this server. Leave 'generate' out.",
            param="generate",
            code="unsupported_parameter",
        )
    if body.pop("background", None) not in (None, False):
        raise InvalidRequestError(
            "Background mode is not available over WebSocket, where every response "
            "streams on the socket. Leave 'background' out, or create the response with "
            "POST /v1/responses and 'background': true.",
            param="background",
            code="unsupported_parameter",
        )
    body["stream"] = True  # implied: every WebSocket response streams
    return orjson.dumps(body)


def _lane_of(text: str) -> str | None:
    """The valid `stream_id` of an event, if it has one (for an error about it)."""
    try:
        data = orjson.loads(text)
        return _stream_id(data) if isinstance(data, dict) else None
    except (orjson.JSONDecodeError, InvalidRequestError):
        return None


def _too_many_pending() -> RateLimitError:
    return RateLimitError(
        f"This connection already has {MAX_PENDING} response.create events waiting behind "
        "the running response. Send the next one after a response has ended, or open "
        "another connection.",
        retry_after=1,
    )


def _internal_error() -> APIError:
    return APIError("Tether hit an internal error; see the server log.")


class _StoreUnavailableError(APIError):
    status_code = 503
    error_type = "server_error"


def _store_failed(exc: StorageError, advice: str = "Send the create again") -> APIError:
    reason = str(exc).rstrip(".")
    return _StoreUnavailableError(
        f"Tether's store failed: {reason}. {advice}; if this goes on, check the store "
        "(see the server log)."
    )

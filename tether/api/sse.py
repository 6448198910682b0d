"""Server-sent events: the streaming ASGI response.

Each event's frame (`event: <type>\\ndata: <json>\\n\\n`) was built once, when it
was encoded (`StoredEvent.frame`); the frames of one batch go out in one write.
Heartbeats are SSE comments (`: keepalive`), which every SSE client ignores.

When the store fails under a stream for good (see `tail`), the stream ends with an
`error` frame that is not part of the log — it carries no `sequence_number`, so a
client resumes after the last event it received — then ends as usual: a clear
failure instead of a cut connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import orjson
from starlette.types import Message, Receive, Scope, Send

from tether.domain.events import StoredEvent
from tether.errors import StorageError

logger = logging.getLogger("tether.sse")

KEEPALIVE = b": keepalive\n\n"
DONE = b"data: [DONE]\n\n"


def frames(batch: list[StoredEvent]) -> bytes:
    if len(batch) == 1:
        return batch[0].frame
    return b"".join([event.frame for event in batch])


def stream_error(message: str) -> bytes:
    """An `error` frame outside the log (no `sequence_number`), in the hybrid shape of
    `events.error`: the official SDKs raise it as an error."""
    error = {"type": "server_error", "code": "server_error", "message": message, "param": None}
    payload = {"type": "error", "code": "server_error", "message": message, "param": None}
    return b"event: error\ndata: " + orjson.dumps({**payload, "error": error}) + b"\n\n"


class EventStream:
    """An ASGI response streaming a tail as SSE until its end or the client leaves.

    `on_end(disconnected)` runs once the stream is over, with whether the client left
    before the end.
    """

    media_type = b"text/event-stream; charset=utf-8"

    def __init__(
        self,
        batches: AsyncIterator[list[StoredEvent] | None],
        *,
        done_marker: bool,
        headers: list[tuple[bytes, bytes]] | None = None,
        on_end: Callable[[bool], Awaitable[None]] | None = None,
    ) -> None:
        self._batches = batches
        self._done_marker = done_marker
        self._headers = headers or []
        self._on_end = on_end

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", self.media_type),
                    (b"cache-control", b"no-cache"),
                    (b"x-accel-buffering", b"no"),
                    *self._headers,
                ],
            }
        )
        # The body goes out from this task; a watcher of the client's disconnect cancels
        # it. (A task of its own per stream cost memory for every open stream.)
        me = asyncio.current_task()
        assert me is not None
        left = False
        sending = True

        def on_disconnect(watcher: asyncio.Future[None]) -> None:
            nonlocal left
            if sending and not watcher.cancelled() and watcher.exception() is None:
                left = True
                me.cancel()

        gone = asyncio.ensure_future(_wait_disconnect(receive))
        gone.add_done_callback(on_disconnect)
        try:
            await self._send_body(send)
        except asyncio.CancelledError:
            if not left or me.uncancel() > 0:
                raise  # cancelled from elsewhere (shutdown), not by the client leaving
        except Exception:
            logger.exception("stream failed")
        finally:
            sending = False
            if not gone.done():
                gone.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await gone
            with contextlib.suppress(Exception):
                await self._batches.aclose()  # type: ignore[attr-defined]
        if self._on_end is not None:
            await self._on_end(left)

    async def _send_body(self, send: Send) -> None:
        try:
            async for batch in self._batches:
                chunk = KEEPALIVE if batch is None else frames(batch)
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except StorageError as exc:
            logger.error("stream ended early, the store failed: %s", exc)
            body = stream_error(str(exc))
            await send({"type": "http.response.body", "body": body, "more_body": True})
        await send(
            {
                "type": "http.response.body",
                "body": DONE if self._done_marker else b"",
                "more_body": False,
            }
        )


async def _wait_disconnect(receive: Receive) -> None:
    while True:
        message: Message = await receive()
        if message["type"] == "http.disconnect":
            return

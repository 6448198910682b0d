"""The runner: one response's generation, from provider deltas to appended events.

It numbers each event where it is appended, encodes it once, folds it into the
snapshot and queues it for the log. Appends are pipelined: at most one append of
this response is in flight; events produced meanwhile go in the next one, so
batches grow by themselves under load and stay single events when idle. The
runner never waits for readers; it waits for the log only when too many events
are unconfirmed (backpressure) and at the end.

A lost compare-and-append (`AppendConflictError`) means someone else ended the
response (cancel, sweep, delete): the runner stops without writing more. An append
that failed because the store was unreachable is sent again once it is back, for up
to `outage_seconds` (`outage.py`); the events produced meanwhile wait behind it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import fields, replace
from typing import Any

import orjson

from tether.domain import events as ev
from tether.domain.encoding import dumps
from tether.domain.fold import Fold
from tether.domain.response import ResponseStatus, usage
from tether.domain.types import JSONObject
from tether.errors import AppendConflictError, ProviderError, StorageError, StoreUnavailableError
from tether.jobs.checks import check_output
from tether.jobs.outage import append_through_outage
from tether.jobs.output import Output
from tether.providers.base import (
    Annotation,
    EndItem,
    Finish,
    GenerationRequest,
    ModelProvider,
    OutputItem,
    ReasoningDelta,
    RefusalDelta,
    Started,
    TextDelta,
    ToolCallDelta,
    Usage,
)
from tether.storage.base import EventLog, StoredResponse

logger = logging.getLogger("tether.runner")

LOST_WORKER_MESSAGE = (
    "The worker generating this response stopped (it crashed or was killed) before the "
    "response finished, and this model cannot continue a partial response. Retry the request."
)
MAX_UNCONFIRMED = 512  # events queued for the log before the runner waits for it
SNAPSHOT_EVERY = 256  # events between stored snapshots (besides every status change)


class Runner:
    """Runs one response to a terminal event. `run` never raises but for cancellation."""

    def __init__(
        self,
        log: EventLog,
        provider: ModelProvider,
        stored: StoredResponse,
        request: GenerationRequest,
        *,
        started: bool = False,
        max_seconds: float = 0.0,
        outage_seconds: float = 0.0,
    ) -> None:
        """`started`: an earlier attempt already emitted `response.in_progress` (its
        worker died); this run continues the response instead of starting it.
        `max_seconds` (0: none) bounds the generation; beyond it the response fails.
        `outage_seconds` (0: none): how long an append is retried while the store is
        unreachable."""
        self.response_id = stored.id
        self._max_seconds = max_seconds
        self._outage_seconds = outage_seconds
        self._started = started
        self._log = log
        self._provider = provider
        self._request = request
        self._fold = Fold(orjson.loads(stored.snapshot), stored.last_seq)
        self._pending: list[ev.StoredEvent] = []
        self._inflight: asyncio.Future[None] | None = None
        self._sent: tuple[list[ev.StoredEvent], bytes | None, ResponseStatus] | None = None
        self._resend: asyncio.Future[None] | None = None  # an append sent again (outage)
        self._scheduled = False
        self._unsnapshotted = 0
        self._error: BaseException | None = None

    def __repr__(self) -> str:
        return (
            f"<Runner {self.response_id} seq={self._fold.last_seq} pending={len(self._pending)} "
            f"inflight={self._inflight is not None}>"
        )

    async def run(self) -> None:
        """Raises `StorageError` when the log itself failed (the caller ends the response
        through the store), and `CancelledError` when interrupted."""
        try:
            try:
                async with asyncio.timeout(self._max_seconds or None):
                    await self._generate()
            except TimeoutError:
                await self._fail(
                    "server_error",
                    f"The response was still generating after {self._max_seconds:g} seconds, "
                    "the most this server allows (setting max_generation_seconds); it was "
                    "stopped. Ask for less output (max_output_tokens), or raise the limit.",
                )
            except ProviderError as exc:
                await self._fail(exc.code, exc.message)
            except (AppendConflictError, StorageError, asyncio.CancelledError):
                raise
            except Exception:
                logger.exception("runner for %s failed", self.response_id)
                await self._fail(
                    "server_error",
                    "Tether hit an internal error while generating this response; "
                    "see the server log.",
                )
        except AppendConflictError:
            logger.debug("response %s was ended elsewhere; runner stops", self.response_id)
        finally:
            if self._resend is not None and not self._resend.done():
                self._resend.cancel()  # interrupted: nothing may be appended after us

    async def _generate(self) -> None:
        snapshot = self._fold.snapshot()
        request = self._request
        output = Output(self, len(snapshot["output"]), max_calls=_max_calls(request))
        if self._started and snapshot["output"]:
            request = self._continue(output, snapshot["output"])
        # A provider with a queue says when a slot took the request: the response
        # stays `queued` until then.
        waiting = not self._started and getattr(self._provider, "reports_start", False)
        if not self._started and not waiting:
            self._start()
        text, dispatch = output.text, self._dispatch(output)
        reported: Usage | None = None
        finish = "stop"
        async for delta in self._provider.stream(request):
            if waiting:
                waiting = False
                self._start()
                if type(delta) is Started:
                    continue
            if type(delta) is TextDelta:
                text(delta)
                if len(self._pending) >= MAX_UNCONFIRMED:
                    await self._confirm()
            elif type(delta) is Usage:
                reported = delta
            elif type(delta) is Finish:
                finish = delta.reason
            elif type(delta) is Started:
                continue  # a continued response started long ago
            else:
                dispatch[type(delta)](delta)
                if len(self._pending) >= MAX_UNCONFIRMED:
                    await self._confirm()
        if waiting:
            self._start()
        incomplete = finish in ("length", "content_filter")
        output.close("incomplete" if incomplete else "completed")
        final = self._fold.snapshot()
        if not incomplete and (broken := check_output(request, final["output"])) is not None:
            raise ProviderError(broken)
        if reported is not None:
            final["usage"] = usage(
                reported.input_tokens,
                reported.output_tokens,
                reported.reasoning_tokens,
                reported.cached_tokens,
            )
        if incomplete:
            reason = "max_output_tokens" if finish == "length" else "content_filter"
            final["status"] = ResponseStatus.INCOMPLETE.value
            final["incomplete_details"] = {"reason": reason}
            self.emit(ev.lifecycle(ev.INCOMPLETE, final, self.next_seq()))
        else:
            final["status"] = ResponseStatus.COMPLETED.value
            final["completed_at"] = int(time.time())
            self.emit(ev.lifecycle(ev.COMPLETED, final, self.next_seq()))
        await self._drain()

    def _start(self) -> None:
        snapshot = self._fold.snapshot()
        snapshot["status"] = ResponseStatus.IN_PROGRESS.value
        self.emit(ev.lifecycle(ev.IN_PROGRESS, snapshot, self.next_seq()))

    def _continue(self, output: Output, items: list[JSONObject]) -> GenerationRequest:
        """The request that continues a response whose worker died mid-output: the
        provider goes on inside the open message. Raises `ProviderError` (the response
        fails) where that cannot be done."""
        last = items[-1]
        content = last.get("content") or []
        if (
            getattr(self._provider, "supports_continuation", False)
            and last.get("type") == "message"
            and last.get("status") == "in_progress"
            and content
            and content[-1].get("type") == "output_text"
        ):
            output.resume_message(last)
            # Every earlier part and item is already in the log; only the open text goes on.
            return replace(self._request, continuation=content[-1].get("text", ""))
        raise ProviderError(LOST_WORKER_MESSAGE)

    @staticmethod
    def _dispatch(output: Output) -> dict[type, Callable[[Any], None]]:
        """The handler of each content delta other than text."""
        return {
            RefusalDelta: output.refusal,
            ReasoningDelta: output.reasoning,
            ToolCallDelta: output.tool_call,
            Annotation: output.annotation,
            OutputItem: output.item,
            EndItem: output.end_item,
        }

    async def _fail(self, code: str, message: str) -> None:
        """End with `error` + `response.failed` (raises what the log raised, if it failed)."""
        self.emit(ev.error(code, message, self.next_seq()))
        final = self._fold.snapshot()
        final["status"] = ResponseStatus.FAILED.value
        final["error"] = {"code": code, "message": message}
        self.emit(ev.lifecycle(ev.FAILED, final, self.next_seq()))
        await self._drain()

    # --- the log --------------------------------------------------------------

    def next_seq(self) -> int:
        return self._fold.last_seq + 1

    def emit(self, event: JSONObject) -> None:
        if self._error is not None:
            raise self._error
        stored = ev.encode(event)
        self._fold.apply(event)
        self._pending.append(stored)
        if self._inflight is None and not self._scheduled:
            # Flush once this loop step is over, so events emitted together share an append.
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        """Start one append of everything pending (no task: a future and a callback)."""
        self._scheduled = False
        if self._inflight is not None or not self._pending or self._error is not None:
            return
        batch, self._pending = self._pending, []
        # The stored snapshot is refreshed with every status change and every
        # SNAPSHOT_EVERY events; readers fold the few events past it.
        snapshot = None
        self._unsnapshotted += len(batch)
        if self._unsnapshotted >= SNAPSHOT_EVERY or any(
            e.type in ev.LIFECYCLE_TYPES for e in batch
        ):
            snapshot = dumps(self._fold.snapshot())
            self._unsnapshotted = 0
        status = self._fold.status
        self._sent = (batch, snapshot, status)
        appended = asyncio.ensure_future(
            self._log.append(self.response_id, batch, snapshot, status)
        )
        self._inflight = appended
        appended.add_done_callback(self._flushed)

    def _flushed(self, appended: asyncio.Future[None]) -> None:
        """The append finished. Idempotent: `_confirm` may get here before the callback."""
        if self._inflight is not appended:
            return
        self._inflight = None
        if appended.cancelled():
            self._error = asyncio.CancelledError()
        elif (error := appended.exception()) is not None:
            if (
                isinstance(error, StoreUnavailableError)
                and self._outage_seconds > 0
                and appended is not self._resend
            ):
                self._send_again(error)
            else:
                self._error = error
        else:
            self._flush()

    def _send_again(self, error: StoreUnavailableError) -> None:
        """The store was unreachable: send the last batch again once it is back."""
        assert self._sent is not None
        batch, snapshot, status = self._sent
        resend = asyncio.ensure_future(
            append_through_outage(
                self._log, self.response_id, batch, snapshot, status, error, self._outage_seconds
            )
        )
        self._inflight = self._resend = resend
        resend.add_done_callback(self._flushed)

    async def _confirm(self) -> None:
        """Wait for the append in flight, and for its resends while the store is
        unreachable (backpressure); raise what it raised."""
        appended = self._inflight
        while appended is not None:
            if not appended.done():
                await asyncio.wait([appended])  # cancelling us does not cancel the append
            self._flushed(appended)
            appended = self._inflight if self._inflight is self._resend else None
        if self._error is not None:
            raise self._error

    async def _drain(self) -> None:
        """Until everything emitted is appended."""
        while self._pending or self._inflight is not None:
            if self._inflight is None:
                self._flush()
            await self._confirm()
        if self._error is not None:
            raise self._error


def _max_calls(request: GenerationRequest) -> int | None:
    """How many function calls the response may make: `max_tool_calls`, and one when
    `parallel_tool_calls` is off."""
    limits = [request.max_tool_calls] if request.max_tool_calls is not None else []
    if not request.parallel_tool_calls:
        limits.append(1)
    return min(limits) if limits else None


_REQUEST_FIELDS = tuple(f.name for f in fields(GenerationRequest))


def request_from_payload(payload: bytes) -> GenerationRequest:
    data: dict[str, Any] = orjson.loads(payload)
    values = {name: data[name] for name in _REQUEST_FIELDS if data.get(name) is not None}
    values["include"] = tuple(values.get("include", ()))
    return GenerationRequest(**values)


def start_from_payload(response_id: str, payload: bytes) -> StoredResponse | None:
    """The response as it was created, if the payload carries it: a job's first attempt
    starts from it without reading the store (a cancel in between still wins: the
    runner's first append then conflicts)."""
    start = orjson.loads(payload).get("start")
    if start is None:
        return None
    snapshot = start["snapshot"]
    return StoredResponse(
        response_id, ResponseStatus(snapshot["status"]), dumps(snapshot), start["last_seq"]
    )


def payload_from_request(
    request: GenerationRequest, start: tuple[JSONObject, int] | None = None
) -> bytes:
    """The job's payload: the generation request and, optionally, the created response
    (snapshot, last seq) to start from."""
    data: JSONObject = {name: getattr(request, name) for name in _REQUEST_FIELDS}
    data["extra"] = dict(request.extra)
    if start is not None:
        data["start"] = {"snapshot": start[0], "last_seq": start[1]}
    return dumps(data)

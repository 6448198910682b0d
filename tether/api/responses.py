"""The `/v1/responses` routes: create, retrieve (JSON or stream), cancel, delete,
input items. (Its WebSocket mode, in `websocket.py`, creates through `start_response`.)

Every answer that carries events is a tail of the response's log (`tail`): the
creating request's stream, a resume, and the wait of a blocking create. Stored
responses go to the configured store and outlive their connection; `store=false`
responses live in memory and are cancelled when their client goes away.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace

import orjson
from starlette.requests import HTTPConnection, Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from tether.api import idempotency
from tether.api.auth import principal
from tether.api.context import Context, context, read_body
from tether.api.limits import RateLimitError, admit_response
from tether.api.owners import owned_response
from tether.api.routing import route
from tether.api.schemas import (
    CreateRequest,
    parse_create_request,
    parse_list_query,
    parse_retrieve_query,
)
from tether.api.sse import EventStream
from tether.api.turns import build_turn, provider_refusal
from tether.domain import events as ev
from tether.domain.encoding import dumps
from tether.domain.ids import response_id as new_response_id
from tether.domain.response import ResponseStatus, build_response
from tether.domain.types import JSONObject
from tether.errors import (
    EventsExpiredError,
    InvalidRequestError,
    ProviderError,
    response_not_found,
)
from tether.jobs.runner import payload_from_request
from tether.providers.base import GenerationRequest
from tether.providers.tokens import count_tokens
from tether.storage.base import (
    IdempotencyClaim,
    IdempotencyConflictError,
    NewResponse,
    ResponseStore,
    Storage,
)
from tether.streaming.tail import tail

JSON_TYPE = "application/json"


def json_response(body: bytes, status: int = 200) -> Response:
    return Response(body, status_code=status, media_type=JSON_TYPE)


def follow(
    ctx: Context, storage: Storage, response_id: str, after: int
) -> AsyncIterator[list[ev.StoredEvent] | None]:
    """`tail` with this server's settings: keepalives, patience with a failing store,
    and the worker's word on the responses it abandoned."""
    return tail(
        storage,
        response_id,
        after,
        heartbeat=ctx.settings.heartbeat_seconds,
        outage_seconds=ctx.settings.store_outage_seconds,
        abandoned=ctx.worker.why_abandoned,
    )


# --- create ---------------------------------------------------------------------


async def create_response(request: Request) -> ASGIApp:
    ctx = context(request)
    key = idempotency.read_key(request)
    body = await read_body(request)
    params = parse_create_request(
        body,
        known_models=ctx.providers,
        hosted_tools=ctx.providers.hosted_tools,
        zero_data_retention=ctx.settings.zero_data_retention,
    )
    if params.background:
        await _check_queue(ctx)
    claim = None
    if key is not None:
        # Claimed within the response's project (`NewResponse.project`).
        claim = idempotency.claim(
            key, body, store=params.store, window_seconds=ctx.settings.idempotency_seconds
        )
    try:
        started = await start_response(request, params, claim=claim)
    except IdempotencyConflictError as held:
        assert claim is not None
        if held.body_hash != claim.body_hash:
            raise idempotency.KeyReusedError(claim.key) from None
        return await _replay(ctx, params, claim.key, held.response_id)
    storage, response_id = started.storage, started.response_id
    if params.background and not params.stream:
        return json_response(orjson.dumps(started.snapshot))
    if params.stream:
        return EventStream(
            follow(ctx, storage, response_id, -1),
            done_marker=ctx.settings.sse_done,
            on_end=None if params.store else ephemeral_end(ctx, storage, response_id),
        )
    return _Blocking(ctx, storage, response_id, params.store)


@dataclass(frozen=True, slots=True)
class Started:
    """A response just created with its job: the store it lives in (the configured
    one, or memory for `store=false`), its id and its first snapshot."""

    storage: Storage
    response_id: str
    snapshot: JSONObject


async def start_response(
    conn: HTTPConnection,
    params: CreateRequest,
    *,
    claim: IdempotencyClaim | None = None,
    previous: ResponseStore | None = None,
) -> Started:
    """Create a validated request's response — its context, its first events and its
    job, in one transaction — for `POST /v1/responses` and for a WebSocket
    `response.create` alike. Raises what `build_turn` raises, `RateLimitError` (429)
    when the key has too many responses in flight, and `IdempotencyConflictError`
    when `claim`'s key is held already. `previous`: see `build_turn`."""
    ctx = context(conn)
    turn = await build_turn(ctx, params, project=principal(conn).project, previous=previous)
    storage = ctx.storage if params.store else ctx.memory
    snapshot, events = _new_response(params)
    response_id = snapshot["id"]
    generation = _generation_request(params, turn.input_items)
    if generation.max_output_tokens is None:
        # The model's ceiling is the limit of a request that sets none (echoed as null).
        ceiling = ctx.providers.max_output_tokens(params.model)
        generation = replace(generation, max_output_tokens=ceiling)
    await admit_response(conn, storage, response_id)  # 429 when the key has too many
    await storage.responses.create(
        NewResponse(
            id=response_id,
            snapshot=dumps(snapshot),
            status=ResponseStatus(snapshot["status"]),
            input_items=turn.input_items,
            events=events,
            created_at=time.time(),
            job=payload_from_request(generation, start=(snapshot, events[-1].seq)),
            conversation_id=params.conversation_id,
            conversation_items=turn.new_items if params.conversation_id else [],
            idempotency=claim,
            project=principal(conn).project,
        )
    )
    return Started(storage, response_id, snapshot)


async def _replay(ctx: Context, params: CreateRequest, key: str, response_id: str) -> ASGIApp:
    """Answer a retry as its first attempt is answered (its body, so its mode, is the
    same): the whole stream from the first event, the final snapshot once the response
    has ended, or — in background — the snapshot as it is now. Keys need `store=true`,
    so the response is in the store."""
    stored = await ctx.storage.responses.get(response_id)
    if stored is None:
        raise idempotency.response_gone(key, response_id)
    answer: ASGIApp
    if params.background and not params.stream:
        answer = json_response(stored.snapshot)
    elif params.stream:
        batches = follow(ctx, ctx.storage, response_id, -1)
        answer = EventStream(batches, done_marker=ctx.settings.sse_done)
    else:
        answer = _Blocking(ctx, ctx.storage, response_id, store=True)
    return idempotency.replayed(answer)


class _QueueGauge:
    """The queue depth, counted at most every `EVERY` seconds while it is far below the
    limit (a count per create would cost a query per create)."""

    EVERY = 0.5

    def __init__(self) -> None:
        self.count, self.at = 0, -1e9

    async def depth(self, ctx: Context, limit: int) -> int:
        """The depth, counting this create (admitted ones raise the estimate)."""
        now = time.monotonic()
        if self.count >= limit // 2 or now - self.at >= self.EVERY:
            self.count, self.at = await ctx.storage.jobs.queued_count(), now
        self.count += 1
        return self.count - 1


_gauge = _QueueGauge()


async def _check_queue(ctx: Context) -> None:
    """Background work waits in the job queue: refuse it when the queue is full."""
    limit = ctx.settings.max_queued_jobs
    if limit and await _gauge.depth(ctx, limit) >= limit:
        raise RateLimitError(
            f"The background queue is full: {limit} responses are waiting for a worker "
            "(setting max_queued_jobs). Retry later, or add workers.",
            retry_after=5,
        )


def _new_response(params: CreateRequest) -> tuple[JSONObject, list[ev.StoredEvent]]:
    snapshot = build_response(
        response_id=new_response_id(),
        model=params.model,
        created_at=int(time.time()),
        background=params.background,
        store=params.store,
        settings=params.settings,
    )
    events = [ev.encode(ev.lifecycle(ev.CREATED, snapshot, 0))]
    if params.background:
        events.append(ev.encode(ev.lifecycle(ev.QUEUED, snapshot, 1)))
    return snapshot, events


def _snapshot_of(event: ev.StoredEvent) -> bytes:
    """The response snapshot a lifecycle event carries."""
    return orjson.dumps(orjson.loads(event.data)["response"])


def _generation_request(params: CreateRequest, items: list[JSONObject]) -> GenerationRequest:
    return GenerationRequest(
        model=params.model,
        input_items=items,
        instructions=params.instructions,
        max_output_tokens=params.max_output_tokens,
        temperature=params.temperature,
        top_p=params.top_p,
        tools=params.tools,
        tool_choice=params.tool_choice,
        parallel_tool_calls=params.parallel_tool_calls,
        max_tool_calls=params.max_tool_calls,
        text_format=params.text_format,
        reasoning=params.reasoning,
        top_logprobs=params.top_logprobs,
        include=params.include,
        extra=params.extra,
    )


def ephemeral_end(
    ctx: Context, storage: Storage, response_id: str
) -> Callable[[bool], Awaitable[None]]:
    """For `store=false`: drop the response once its one client is done with it; if
    the client left early, cancel the generation first."""

    async def end(disconnected: bool) -> None:
        if disconnected:
            await storage.responses.terminate(response_id, ResponseStatus.CANCELLED)
            ctx.worker.interrupt(response_id)
        await storage.responses.delete(response_id)

    return end


class _Blocking:
    """A non-streaming create: wait for the terminal event, answer the final snapshot.

    A `store=false` response is cancelled if the client leaves while waiting."""

    def __init__(self, ctx: Context, storage: Storage, response_id: str, store: bool) -> None:
        self._ctx, self._storage, self._id, self._store = ctx, storage, response_id, store

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        finished = asyncio.ensure_future(self._terminal())
        gone = asyncio.ensure_future(_disconnected(receive))
        await asyncio.wait({finished, gone}, return_when=asyncio.FIRST_COMPLETED)
        if not finished.done():
            finished.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await finished
            if not self._store:
                await ephemeral_end(self._ctx, self._storage, self._id)(True)
            return
        gone.cancel()
        terminal = finished.result()
        if not self._store:
            await self._storage.responses.delete(self._id)
        if terminal is None:
            body = orjson.dumps(response_not_found(self._id).to_dict())
            await json_response(body, 404)(scope, receive, send)
            return
        await json_response(_snapshot_of(terminal))(scope, receive, send)

    async def _terminal(self) -> ev.StoredEvent | None:
        # Keepalives are of no use here, but each one is also when the tail learns that
        # the worker abandoned the response (the store failed): the answer is then a 503.
        async for batch in follow(self._ctx, self._storage, self._id, -1):
            if batch and batch[-1].terminal:
                return batch[-1]
        return None


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


# --- retrieve, cancel, delete, input items ----------------------------------------


async def retrieve_response(request: Request) -> Response | EventStream:
    ctx = context(request)
    response_id = request.path_params["response_id"]
    query = parse_retrieve_query(request.query_params.multi_items())
    stored = await owned_response(request, response_id)
    if not query.stream:
        return json_response(stored.snapshot)
    after = -1 if query.starting_after is None else query.starting_after
    if stored.status.terminal and after >= stored.last_seq:
        batches = _empty()
    else:
        if stored.status.terminal:
            await _check_log_kept(ctx.storage, response_id, after)
        batches = follow(ctx, ctx.storage, response_id, after)
    return EventStream(batches, done_marker=ctx.settings.sse_done)


async def _check_log_kept(storage: Storage, response_id: str, after: int) -> None:
    """A finished response's event log may have expired (retention): answer a 400
    before the stream starts rather than break it."""
    try:
        await storage.events.read_after(response_id, after, 1)
    except EventsExpiredError:
        raise InvalidRequestError(
            f"The event log of response '{response_id}' expired after its retention "
            "period, so its stream can no longer be resumed. The response itself is "
            f"still retrievable with GET /v1/responses/{response_id} (without stream).",
            param="stream",
            code="stream_expired",
        ) from None


async def _empty() -> AsyncIterator[list[ev.StoredEvent] | None]:
    return
    yield


async def cancel_response(request: Request) -> Response:
    ctx = context(request)
    response_id = request.path_params["response_id"]
    stored = await owned_response(request, response_id)
    if not stored.status.terminal:
        result = await ctx.storage.responses.terminate(response_id, ResponseStatus.CANCELLED)
        if result is None:
            raise response_not_found(response_id)
        stored = result
        ctx.worker.interrupt(response_id)
    if stored.status is not ResponseStatus.CANCELLED:
        article = "an" if stored.status is ResponseStatus.INCOMPLETE else "a"
        raise InvalidRequestError(f"Cannot cancel {article} {stored.status.value} response.")
    return json_response(stored.snapshot)


async def delete_response(request: Request) -> Response:
    ctx = context(request)
    response_id = request.path_params["response_id"]
    await owned_response(request, response_id)
    if not await ctx.storage.responses.delete(response_id):
        raise response_not_found(response_id)
    ctx.worker.interrupt(response_id)
    return json_response(orjson.dumps({"id": response_id, "object": "response", "deleted": True}))


async def list_input_items(request: Request) -> Response:
    ctx = context(request)
    response_id = request.path_params["response_id"]
    query = parse_list_query(request.query_params.multi_items())
    await owned_response(request, response_id)
    page = await ctx.storage.responses.input_items(
        response_id, after=query.after, limit=query.limit, order=query.order
    )
    body = {
        "object": "list",
        "data": page.items,
        "first_id": page.items[0]["id"] if page.items else None,
        "last_id": page.items[-1]["id"] if page.items else None,
        "has_more": page.has_more,
    }
    return json_response(orjson.dumps(body))


async def count_input_tokens(request: Request) -> Response:
    """`POST /v1/responses/input_tokens`: the tokens the input of such a create would
    take — by the model's tokenizer when its provider can count, else estimated."""
    ctx = context(request)
    params = parse_create_request(
        await read_body(request),
        known_models=ctx.providers,
        hosted_tools=ctx.providers.hosted_tools,
        zero_data_retention=ctx.settings.zero_data_retention,
    )
    turn = await build_turn(ctx, params, fit=False, project=principal(request).project)
    provider = ctx.providers.get(params.model)
    try:
        tokens = await count_tokens(provider, _generation_request(params, turn.input_items))
    except ProviderError as exc:
        raise provider_refusal(exc) from exc
    body = {"object": "response.input_tokens", "input_tokens": tokens}
    return json_response(orjson.dumps(body))


routes = [
    Route("/v1/responses/input_tokens", count_input_tokens, methods=["POST"]),
    Route("/v1/responses", create_response, methods=["POST"]),
    route("/v1/responses/{response_id}", GET=retrieve_response, DELETE=delete_response),
    Route("/v1/responses/{response_id}/cancel", cancel_response, methods=["POST"]),
    Route("/v1/responses/{response_id}/input_items", list_input_items, methods=["GET"]),
]

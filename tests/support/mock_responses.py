"""A mock Responses API upstream that speaks real SSE over HTTP.

`POST /v1/responses` streams (it answers only `stream: true`) real Responses events,
numbered from 0, according to the request's `model`:

    text-N         one message of N text deltas `w0 `, `w1 `, …; `max_output_tokens`
                   cuts it and ends with `response.incomplete` (max_output_tokens);
                   with `include: ["message.output_text.logprobs"]` deltas carry logprobs
    echo           the last user message back, word by word
    slow-N         like text-N, 50 ms between deltas
    two-messages   two message items, `a1 a2` then `b1 b2`
    refusal        a message with a refusal in two deltas
    reasoning      a reasoning item with two summary parts (plus `encrypted_content`
                   when `include` asks for `reasoning.encrypted_content`), then text
    reasoning-raw  a reasoning item with `reasoning_text` deltas (as vLLM), then text
    tool-call      one function call, its arguments in three deltas
    tool-calls-2   two function calls one after the other
    args-at-done   a function call whose arguments come only in `arguments.done`
    whole-items    a reasoning item and a message that come whole in `output_item.done`
    web-search     a `web_search_call` item, then text with a `url_citation` annotation
    filtered       text, then `response.incomplete` (content_filter)
    failed-CODE    one delta, then `response.failed` with error code CODE
    error-event    one delta, an `error` event of the nested shape, `response.failed`
    error-flat     one delta, an `error` event of the documented flat shape
    drop-after-N   N deltas, then the connection is dropped
    no-terminal    two deltas, then the body ends without a terminal event
    malformed      one delta, then a `data:` line that is not JSON
    noisy          `keepalive`, comments, CRLF lines and unknown events around text-2,
                   ending with `data: [DONE]`
    status-N       HTTP N with an OpenAI-shaped JSON error body, before any stream

Like an upstream with `store: false`, the mock knows no item ids: an input item with
an `id` is answered with 404, except a `reasoning` item with `encrypted_content`.
Usage counts words: input words (instructions and input text), one output token per
delta; `cached_tokens` is half the input when `prompt_cache_key` is set.

`POST /v1/responses/input_tokens` answers `{"object": "response.input_tokens",
"input_tokens": <input words>}`, 400 for a key OpenAI's endpoint does not take, and
HTTP N for a model `status-N`.

Every request is recorded as `{"path", "body", "headers"}`; `GET /_requests` lists
them (newest last) and `GET /_streams` answers `{"open": n}`. Run it in-process with
`run_mock_responses()` (yields `http://127.0.0.1:PORT/v1`) or as its own process:
`python -m tests.support.mock_responses --port 8002`. The event streams themselves are
built in `tests.support.mock_responses_scripts`.

Sections: the app, running it, helpers.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import re
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.support.mock_responses_scripts import input_items, input_words, script

_COUNT_KEYS = frozenset(
    {"model", "input", "previous_response_id", "tools", "text", "reasoning", "truncation"}
    | {"instructions", "personality", "conversation", "tool_choice", "parallel_tool_calls"}
)


class MockDropError(Exception):
    """Raised inside a response body to make the server abort the connection."""


class _QuietDrops(logging.Filter):
    """Keeps uvicorn from logging a traceback for every intended connection drop."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], MockDropError))


def create_app() -> Starlette:
    """A fresh mock upstream with its own request record."""
    uvicorn_errors = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _QuietDrops) for f in uvicorn_errors.filters):
        uvicorn_errors.addFilter(_QuietDrops())
    requests: list[dict[str, Any]] = []
    open_streams = [0]

    async def record(request: Request) -> dict[str, Any]:
        body: dict[str, Any] = orjson.loads(await request.body())
        requests.append({"path": request.url.path, "body": body, "headers": dict(request.headers)})
        return body

    async def responses(request: Request) -> Response:
        body = await record(request)
        model = str(body.get("model", ""))
        if match := re.fullmatch(r"status-(\d+)", model):
            return _error(int(match.group(1)), f"mock upstream error {match.group(1)}")
        if body.get("stream") is not True:
            return _error(400, "the mock answers only stream: true")
        for item in input_items(body):
            if "id" in item and not (item["type"] == "reasoning" and "encrypted_content" in item):
                return _error(404, f"Item with id '{item['id']}' not found.")
        scripted = script(model, body)
        if scripted is None:
            return _error(404, f"The model '{model}' does not exist")
        frames, delay, drop = scripted
        stream = _tracked(_send(frames, delay, drop), open_streams)
        return StreamingResponse(stream, media_type="text/event-stream")

    async def input_tokens(request: Request) -> Response:
        body = await record(request)
        if match := re.fullmatch(r"status-(\d+)", str(body.get("model", ""))):
            return _error(int(match.group(1)), f"mock upstream error {match.group(1)}")
        if unknown := sorted(set(body) - _COUNT_KEYS):
            return _error(400, f"Unknown parameter: '{unknown[0]}'.")
        return JSONResponse({"object": "response.input_tokens", "input_tokens": input_words(body)})

    async def list_requests(request: Request) -> Response:
        return JSONResponse(requests)

    async def streams(request: Request) -> Response:
        return JSONResponse({"open": open_streams[0]})

    return Starlette(
        routes=[
            Route("/v1/responses", responses, methods=["POST"]),
            Route("/v1/responses/input_tokens", input_tokens, methods=["POST"]),
            Route("/_requests", list_requests, methods=["GET"]),
            Route("/_streams", streams, methods=["GET"]),
        ]
    )


async def recorded_requests(base_url: str) -> list[dict[str, Any]]:
    """The requests the mock at `base_url` (as yielded by `run_mock_responses`) received,
    oldest first."""
    async with httpx.AsyncClient() as client:
        response = await client.get(f"{base_url.removesuffix('/v1')}/_requests")
        response.raise_for_status()
        result: list[dict[str, Any]] = response.json()
        return result


async def open_streams(base_url: str) -> int:
    """How many response streams the mock at `base_url` is still producing."""
    async with httpx.AsyncClient() as client:
        response = await client.get(f"{base_url.removesuffix('/v1')}/_streams")
        return int(response.json()["open"])


@contextmanager
def run_mock_responses() -> Iterator[str]:
    """Serve a fresh mock on a free 127.0.0.1 port in a background thread; yields
    `http://127.0.0.1:PORT/v1`."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        create_app(), log_config=None, log_level="warning", timeout_graceful_shutdown=1
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the mock Responses upstream did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


# --- helpers --------------------------------------------------------------------------------


async def _send(frames: list[bytes], delay: float, drop: bool) -> AsyncIterator[bytes]:
    for frame in frames:
        if delay:
            await asyncio.sleep(delay)
        yield frame
    if drop:
        await asyncio.sleep(0.05)  # let the frames leave before the connection goes
        raise MockDropError("mock upstream drops the connection mid-stream")


async def _tracked(chunks: AsyncIterator[bytes], counter: list[int]) -> AsyncIterator[bytes]:
    counter[0] += 1
    try:
        async for chunk in chunks:
            yield chunk
    finally:
        counter[0] -= 1


def _error(status: int, message: str) -> Response:
    code = "rate_limit_exceeded" if status == 429 else None
    error = {"message": message, "type": "invalid_request_error", "param": None, "code": code}
    return JSONResponse({"error": error}, status_code=status)


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the mock Responses upstream.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8002)
    args = parser.parse_args()
    uvicorn.run(create_app(), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()

"""A mock Chat Completions upstream that speaks real SSE over HTTP.

`POST /v1/chat/completions` behaves according to the request's `model`:

    echo           the last user message back, word by word (honours `max_tokens`)
    words-N        N words `w0 w1 …` (honours `max_tokens`)
    slow-N         like words-N, 50 ms between chunks
    status-N       HTTP N with an OpenAI-shaped JSON error body, before any stream
    status-text-N  HTTP N with a plain-text body
    drop-after-N   N content chunks, then the connection is dropped (no finish, no [DONE])
    no-finish      2 content chunks, then `data: [DONE]` without a finish_reason
    error-chunk    1 content chunk, then `{"error": {"message": "mock mid-stream failure"}}`

Scripted models, each ending with a finish chunk, a usage chunk (with
`prompt_tokens_details.cached_tokens` = half the prompt words and
`completion_tokens_details.reasoning_tokens` = the reasoning chunks) and `[DONE]`:

    tool-call                 one call of the request's first tool (else `get_weather`),
                              id `call_mock0`: the name in the first chunk, the arguments
                              `{"city": "Paris"}` in three pieces; finish `tool_calls`
    tool-calls-parallel       two calls one after the other: `call_mock0` (first tool,
                              Paris) and `chatcmpl-tool-mock1` (second tool, else the
                              first, Tokyo)
    tool-calls-headers-first  the same two calls, but both first chunks (names, ids) in
                              one chunk before any arguments
    reasoning-content         `reasoning_content` "Thinking hard." in two chunks (vLLM,
                              DeepSeek), then content "Four."
    reasoning                 the same with the `reasoning` field, Ollama-style (every
                              chunk also has `role` and an empty `content`)
    refusal                   `refusal` "I can't help with that." in two chunks
    json-broken               needs `response_format` json_schema (else HTTP 400); answers
                              `{"unexpected": "field"}`, valid JSON that breaks the schema

Word streams send a role chunk, one chunk per word (each word but the last with a
trailing space), a finish chunk (`length` if `max_tokens` cut the words, else `stop`),
a usage chunk when `stream_options.include_usage` is set, then `data: [DONE]`. When the
request has `logprobs: true`, each word chunk carries `logprobs.content` for the word
(logprob -0.1 * (i + 1); `bytes` null for odd i, as some servers send) with
`top_logprobs` entries: the word, then `alt1`, `alt2`, ….

`POST /tokenize` (at the root, as on vLLM) answers `{"count", "max_model_len",
"tokens"}`, the count being the words of the messages' text; a `model` of `status-N`
answers HTTP N and `tokenize-no-count` an answer without `count`.

Every request is recorded as `{"path": …, "body": …, "headers": {lower-case name:
value}}`; `GET /_requests` lists them (newest last), `DELETE /_requests` clears them, and
`GET /_streams` answers `{"open": n}`, the number of response streams still running.

Run it in-process with `run_mock_chat()` (yields the base URL `http://127.0.0.1:PORT/v1`)
or as its own process: `python -m tests.support.mock_chat --port 8001`.
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
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

_SCRIPTED = (
    "tool-call",
    "tool-calls-parallel",
    "tool-calls-headers-first",
    "reasoning-content",
    "reasoning",
    "refusal",
    "json-broken",
)
_MODEL = re.compile(
    rf"(echo|no-finish|error-chunk|{'|'.join(_SCRIPTED)})"
    r"|(words|slow|status|status-text|drop-after)-(\d+)"
)
_CHAT_PATH = "/v1/chat/completions"


class MockUpstreamDropError(Exception):
    """Raised inside a response body to make the server abort the connection."""


class _QuietDrops(logging.Filter):
    """Keeps uvicorn from logging a traceback for every intended connection drop."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], MockUpstreamDropError))


def create_app() -> Starlette:
    """A fresh mock upstream with its own request record."""
    uvicorn_errors = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _QuietDrops) for f in uvicorn_errors.filters):
        uvicorn_errors.addFilter(_QuietDrops())
    requests: list[dict[str, Any]] = []
    open_streams = [0]

    async def chat_completions(request: Request) -> Response:
        body = await _recorded(request, requests)
        model = str(body.get("model", ""))
        match = _MODEL.fullmatch(model)
        if match is None:
            return _error(404, f"mock upstream has no model '{model}'")
        kind, number = match.group(1) or match.group(2), int(match.group(3) or 0)
        if kind == "status":
            return _error(number, f"mock upstream error {number}")
        if kind == "status-text":
            return PlainTextResponse(f"mock upstream plain failure {number}", status_code=number)
        format_type = (body.get("response_format") or {}).get("type")
        if kind == "json-broken" and format_type != "json_schema":
            return _error(400, "mock model json-broken needs response_format json_schema")
        chunks = _script(kind, number, body)
        return StreamingResponse(_tracked(chunks, open_streams), media_type="text/event-stream")

    async def tokenize(request: Request) -> Response:
        body = await _recorded(request, requests)
        model = str(body.get("model", ""))
        if match := re.fullmatch(r"status-(\d+)", model):
            return _error(int(match.group(1)), f"mock tokenizer error {match.group(1)}")
        count = sum(len(_text(m.get("content")).split()) for m in body.get("messages", []))
        if model == "tokenize-no-count":
            return JSONResponse({"tokens": list(range(count))})
        return JSONResponse({"count": count, "max_model_len": 4096, "tokens": list(range(count))})

    async def list_requests(request: Request) -> Response:
        return JSONResponse(requests)

    async def clear_requests(request: Request) -> Response:
        requests.clear()
        return Response(status_code=204)

    async def streams(request: Request) -> Response:
        return JSONResponse({"open": open_streams[0]})

    return Starlette(
        routes=[
            Route(_CHAT_PATH, chat_completions, methods=["POST"]),
            Route("/tokenize", tokenize, methods=["POST"]),
            Route("/_requests", list_requests, methods=["GET"]),
            Route("/_requests", clear_requests, methods=["DELETE"]),
            Route("/_streams", streams, methods=["GET"]),
        ]
    )


async def _recorded(request: Request, requests: list[dict[str, Any]]) -> dict[str, Any]:
    body: dict[str, Any] = orjson.loads(await request.body())
    requests.append({"path": request.url.path, "body": body, "headers": dict(request.headers)})
    return body


async def recorded_requests(base_url: str, path: str = _CHAT_PATH) -> list[dict[str, Any]]:
    """The requests to `path` (default: chat completions) the mock at `base_url` (as
    yielded by `run_mock_chat`) received, oldest first."""
    async with httpx.AsyncClient() as client:
        response = await client.get(f"{_root(base_url)}/_requests")
        response.raise_for_status()
        result: list[dict[str, Any]] = response.json()
        return [r for r in result if r["path"] == path]


async def open_streams(base_url: str) -> int:
    """How many response streams the mock at `base_url` is still producing."""
    async with httpx.AsyncClient() as client:
        response = await client.get(f"{_root(base_url)}/_streams")
        return int(response.json()["open"])


@contextmanager
def run_mock_chat() -> Iterator[str]:
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
            raise RuntimeError("the mock Chat Completions upstream did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


# --- scripts ------------------------------------------------------------------------------


def _script(kind: str, number: int, body: dict[str, Any]) -> AsyncIterator[bytes]:
    model = str(body["model"])
    if kind == "echo":
        return _words(model, _last_user_text(body["messages"]).split(), body)
    if kind in ("words", "slow"):
        words = [f"w{i}" for i in range(number)]
        return _words(model, words, body, delay=0.05 if kind == "slow" else 0.0)
    if kind == "drop-after":
        return _drop_after(model, number)
    if kind == "no-finish":
        return _frames([_chunk(model, {"content": "w0 "}), _chunk(model, {"content": "w1"})])
    if kind in _SCRIPTED:
        return _scripted(kind, body)
    return _frames(  # error-chunk
        [
            _chunk(model, {"content": "w0 "}),
            {"error": {"message": "mock mid-stream failure", "type": "server_error", "code": 500}},
        ]
    )


async def _words(
    model: str, words: list[str], body: dict[str, Any], delay: float = 0.0
) -> AsyncIterator[bytes]:
    max_tokens = body.get("max_tokens")
    reason = "stop"
    if max_tokens is not None and len(words) > max_tokens:
        words, reason = words[:max_tokens], "length"
    yield _frame(_chunk(model, {"role": "assistant", "content": ""}))
    for i, word in enumerate(words):
        if delay:
            await asyncio.sleep(delay)
        text = word if i == len(words) - 1 else f"{word} "
        chunk = _chunk(model, {"content": text})
        if body.get("logprobs"):
            top = int(body.get("top_logprobs") or 0)
            chunk["choices"][0]["logprobs"] = _word_logprobs(text, i, top)
        yield _frame(chunk)
    yield _frame(_chunk(model, {}, finish_reason=reason))
    if (body.get("stream_options") or {}).get("include_usage"):
        prompt = sum(len(_text(m.get("content")).split()) for m in body["messages"])
        usage = {
            "prompt_tokens": prompt,
            "completion_tokens": len(words),
            "total_tokens": prompt + len(words),
        }
        yield _frame({**_chunk(model, {}), "choices": [], "usage": usage})
    yield b"data: [DONE]\n\n"


def _scripted(kind: str, body: dict[str, Any]) -> AsyncIterator[bytes]:
    model = str(body["model"])
    tools = [t["function"]["name"] for t in body.get("tools") or []] or ["get_weather"]
    calls = [
        ("call_mock0", tools[0], ['{"ci', 'ty": "Pa', 'ris"}']),
        ("chatcmpl-tool-mock1", tools[-1], ['{"city"', ': "Tokyo"}']),
    ]
    deltas: list[dict[str, Any]] = [{"role": "assistant", "content": None}]
    finish = "stop"
    if kind == "tool-call":
        deltas += _call_deltas(0, *calls[0])
        finish = "tool_calls"
    elif kind == "tool-calls-parallel":
        deltas += _call_deltas(0, *calls[0]) + _call_deltas(1, *calls[1])
        finish = "tool_calls"
    elif kind == "tool-calls-headers-first":
        first, second = _call_deltas(0, *calls[0]), _call_deltas(1, *calls[1])
        deltas.append({"tool_calls": first[0]["tool_calls"] + second[0]["tool_calls"]})
        deltas += first[1:] + second[1:]
        finish = "tool_calls"
    elif kind == "reasoning-content":
        deltas += [{"reasoning_content": "Thinking "}, {"reasoning_content": "hard."}]
        deltas += [{"content": "Four"}, {"content": "."}]
    elif kind == "reasoning":
        empty = {"role": "assistant", "content": ""}
        deltas = [{**empty, "reasoning": "Thinking "}, {**empty, "reasoning": "hard."}]
        deltas += [{**empty, "content": "Four"}, {**empty, "content": "."}]
    elif kind == "refusal":
        deltas += [{"refusal": "I can't "}, {"refusal": "help with that."}]
    else:  # json-broken
        deltas += [{"content": '{"unexpected": '}, {"content": '"field"}'}]
    events = [_chunk(model, delta) for delta in deltas]
    events.append(_chunk(model, {}, finish_reason=finish))
    reasoning = sum(1 for d in deltas if d.get("reasoning") or d.get("reasoning_content"))
    prompt = sum(len(_text(m.get("content")).split()) for m in body["messages"])
    usage = {
        "prompt_tokens": prompt,
        "completion_tokens": len(deltas),
        "total_tokens": prompt + len(deltas),
        "prompt_tokens_details": {"cached_tokens": prompt // 2},
        "completion_tokens_details": {"reasoning_tokens": reasoning},
    }
    events.append({**_chunk(model, {}), "choices": [], "usage": usage})
    return _frames(events)


def _call_deltas(index: int, call_id: str, name: str, pieces: list[str]) -> list[dict[str, Any]]:
    """The chunks of one streamed tool call: id, name and empty arguments first."""
    function = {"name": name, "arguments": ""}
    first = {"index": index, "id": call_id, "type": "function", "function": function}
    rest = [{"index": index, "function": {"arguments": piece}} for piece in pieces]
    return [{"tool_calls": [first]}] + [{"tool_calls": [piece]} for piece in rest]


def _word_logprobs(word: str, i: int, top: int) -> dict[str, Any]:
    logprob = -0.1 * (i + 1)
    alternatives = [(f"alt{k}", logprob - k) for k in range(1, top)]
    entry = {
        "token": word,
        "logprob": logprob,
        "bytes": None if i % 2 else list(word.encode()),
        "top_logprobs": [
            {"token": token, "logprob": value, "bytes": list(token.encode())}
            for token, value in [(word, logprob), *alternatives][:top]
        ],
    }
    return {"content": [entry], "refusal": None}


async def _drop_after(model: str, count: int) -> AsyncIterator[bytes]:
    for i in range(count):
        yield _frame(_chunk(model, {"content": f"w{i} "}))
    await asyncio.sleep(0.05)  # let the chunks leave before the connection goes
    raise MockUpstreamDropError(f"mock upstream drops the connection after {count} chunks")


async def _frames(events: list[dict[str, Any]]) -> AsyncIterator[bytes]:
    for event in events:
        yield _frame(event)
    yield b"data: [DONE]\n\n"


async def _tracked(chunks: AsyncIterator[bytes], counter: list[int]) -> AsyncIterator[bytes]:
    counter[0] += 1
    try:
        async for chunk in chunks:
            yield chunk
    finally:
        counter[0] -= 1


def _chunk(model: str, delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-mock",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
    }


def _frame(event: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(event) + b"\n\n"


def _error(status: int, message: str) -> Response:
    error = {"message": message, "type": "server_error", "param": None, "code": str(status)}
    return JSONResponse({"error": error}, status_code=status)


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "".join(p.get("text", "") for p in content or [] if isinstance(p, dict))


def _last_user_text(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            return _text(message.get("content"))
    return ""


def _root(base_url: str) -> str:
    return base_url.rstrip("/").removesuffix("/v1")


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the mock Chat Completions upstream.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    args = parser.parse_args()
    uvicorn.run(create_app(), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()

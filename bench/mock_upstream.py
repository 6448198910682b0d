"""A fast, deterministic mock upstream: Chat Completions and Responses SSE streams.

    python -m bench.mock_upstream --port 8001

Endpoints (HTTP/1.1, keep-alive, chunked bodies; bound to 127.0.0.1 by default):

- `POST /v1/chat/completions` (`stream: true`): a role chunk, one chunk per token, a
  finish chunk, a usage chunk (when `stream_options.include_usage`), `data: [DONE]`.
  `max_tokens` cuts the stream (`finish_reason: "length"`).
- `POST /v1/responses` (`stream: true`): the real Responses event sequence, numbered
  from 0 — `response.created`, `response.in_progress`, `response.output_item.added`,
  `response.content_part.added`, one `response.output_text.delta` per token,
  `response.output_text.done`, `response.content_part.done`,
  `response.output_item.done`, `response.completed`. With `stream: false` it answers
  the completed response as JSON. Called directly, this endpoint is the benchmark's
  **baseline**: the physical limit of any gateway in front of it.
- `GET /healthz`, `GET /v1/models`.

The `model` name sets the stream: `t<N>-r<R>` is N tokens at R tokens per second;
R = 0 means no delay (`t256-r0`), `t100-r20` is 100 tokens at 20 tokens/s.

Speed: streams are rendered once per (endpoint, model, options) and cached. An
unpaced stream is written with one `transport.write` (headers, the whole body as a
single chunk, and the last chunk). A paced stream writes its head at once, then one
frame per token at absolute times `start + i / R` (so no drift accumulates; one timer
per millisecond serves every stream due in it), with the tail frames going out
together with the last token.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import re
import signal
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, cast

import httptools
import orjson

from bench.aio import run_fast
from bench.procstat import raise_nofile
from tether.providers.fake import LOREM

MODEL = re.compile(r"t(\d+)-r(\d+(?:\.\d+)?)")
CREATED_AT = 1_700_000_000
WORDS = LOREM  # the same words as Tether's fake model


# --- rendering -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Rendered:
    """A stream as HTTP/1.1 chunks: `head` goes out at once, `tokens[i]` at `i / rate`,
    `tail` with the last token. `body` is the whole stream as one chunk (unpaced)."""

    rate: float
    head: bytes
    tokens: tuple[bytes, ...]
    tail: bytes
    body: bytes


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def _rendered(rate: float, head: bytes, tokens: list[bytes], tail: bytes) -> Rendered:
    """Chunk-frame the SSE bytes of a stream, for paced and for unpaced writing."""
    body = _chunk(b"".join([head, *tokens, tail]))
    return Rendered(rate, _chunk(head), tuple(_chunk(t) for t in tokens), _chunk(tail), body)


def token_texts(count: int) -> list[str]:
    words = [WORDS[i % len(WORDS)] for i in range(count)]
    return [w + " " for w in words[:-1]] + words[-1:]


def parse_model(model: str) -> tuple[int, float] | None:
    match = MODEL.fullmatch(model)
    if match is None:
        return None
    return int(match.group(1)), float(match.group(2))


def _sse(data: dict[str, Any], event: str | None = None) -> bytes:
    payload = b"data: " + orjson.dumps(data) + b"\n\n"
    return payload if event is None else b"event: " + event.encode() + b"\n" + payload


@lru_cache(maxsize=256)
def render_chat(model: str, tokens: int, rate: float, usage: bool, cut: bool) -> Rendered:
    base = {"id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": CREATED_AT}
    base["model"] = model

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return _sse({**base, "choices": [choice]})

    head = chunk({"role": "assistant", "content": ""})
    frames = [chunk({"content": text}) for text in token_texts(tokens)]
    tail = chunk({}, "length" if cut else "stop")
    if usage:
        counts = {"prompt_tokens": 8, "completion_tokens": tokens, "total_tokens": 8 + tokens}
        tail += _sse({**base, "choices": [], "usage": counts})
    tail += b"data: [DONE]\n\n"
    return _rendered(rate, head, frames, tail)


def _snapshot(model: str, status: str, output: list[Any], tokens: int) -> dict[str, Any]:
    usage = None
    if status == "completed":
        usage = {
            "input_tokens": 8,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": 8 + tokens,
        }
    return {
        "id": "resp_mock",
        "object": "response",
        "created_at": CREATED_AT,
        "status": status,
        "background": False,
        "error": None,
        "incomplete_details": None,
        "instructions": None,
        "max_output_tokens": None,
        "model": model,
        "output": output,
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "store": False,
        "temperature": 1.0,
        "text": {"format": {"type": "text"}},
        "tool_choice": "auto",
        "tools": [],
        "top_p": 1.0,
        "truncation": "disabled",
        "usage": usage,
        "metadata": {},
    }


@lru_cache(maxsize=256)
def render_responses(model: str, tokens: int, rate: float) -> Rendered:
    texts = token_texts(tokens)
    full = "".join(texts)
    item_id = "msg_mock"
    seq = iter(range(1 << 30))

    def event(kind: str, **fields: Any) -> bytes:
        return _sse({"type": kind, "sequence_number": next(seq), **fields}, kind)

    def part(text: str) -> dict[str, Any]:
        return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}

    def item(status: str, content: list[Any]) -> dict[str, Any]:
        return {
            "id": item_id,
            "type": "message",
            "status": status,
            "role": "assistant",
            "content": content,
        }

    where = {"item_id": item_id, "output_index": 0, "content_index": 0}
    head = b"".join(
        [
            event("response.created", response=_snapshot(model, "in_progress", [], tokens)),
            event("response.in_progress", response=_snapshot(model, "in_progress", [], tokens)),
            event("response.output_item.added", output_index=0, item=item("in_progress", [])),
            event("response.content_part.added", **where, part=part("")),
        ]
    )
    frames = [
        event("response.output_text.delta", **where, delta=text, logprobs=[]) for text in texts
    ]
    done_item = item("completed", [part(full)])
    tail = b"".join(
        [
            event("response.output_text.done", **where, text=full, logprobs=[]),
            event("response.content_part.done", **where, part=part(full)),
            event("response.output_item.done", output_index=0, item=done_item),
            event(
                "response.completed",
                response=_snapshot(model, "completed", [done_item], tokens),
            ),
        ]
    )
    return _rendered(rate, head, frames, tail)


# --- HTTP ------------------------------------------------------------------------------

SSE_HEADERS = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
    b"transfer-encoding: chunked\r\n"
)
LAST_CHUNK = b"0\r\n\r\n"


def _json_response(status: int, body: Any, keep_alive: bool) -> bytes:
    raw = orjson.dumps(body)
    reason = {200: b"OK", 400: b"Bad Request", 404: b"Not Found"}.get(status, b"Error")
    return b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n%s\r\n%s" % (
        status,
        reason,
        len(raw),
        _connection(keep_alive),
        raw,
    )


def _connection(keep_alive: bool) -> bytes:
    return b"" if keep_alive else b"connection: close\r\n"


def _error(status: int, message: str, keep_alive: bool) -> bytes:
    body = {"error": {"message": message, "type": "invalid_request_error", "code": None}}
    return _json_response(status, body, keep_alive)


class MockProtocol(asyncio.Protocol):
    """One client connection: parses requests with httptools, answers one at a time."""

    def __init__(self) -> None:
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._url = b""
        self._body: list[bytes] = []
        self._pending: list[tuple[bytes, bytes, bytes, bool]] = []
        self._busy = False
        self._pacer: _Pacer | None = None

    # asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            self._close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        if self._pacer is not None:
            self._pacer.cancelled = True

    # httptools callbacks

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        method = self._parser.get_method()
        request = (method, self._url, b"".join(self._body), self._parser.should_keep_alive())
        self._url, self._body = b"", []
        self._pending.append(request)
        if not self._busy:
            self._next()

    # answering

    def _next(self) -> None:
        while self._pending and self._transport is not None:
            method, url, body, keep_alive = self._pending.pop(0)
            self._busy = True
            if not self._answer(method, url.split(b"?", 1)[0], body, keep_alive):
                return  # a paced stream is running; it calls _done when it ends
            self._busy = False

    def _done(self, keep_alive: bool) -> None:
        self._busy = False
        if not keep_alive:
            self._close()
        else:
            self._next()

    def _close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def _write(self, data: bytes) -> None:
        if self._transport is not None:
            self._transport.write(data)

    def _answer(self, method: bytes, path: bytes, body: bytes, keep_alive: bool) -> bool:
        """Answer a request; False when a paced stream is still being written."""
        if method == b"GET" and path == b"/healthz":
            self._write(_json_response(200, {"status": "ok"}, keep_alive))
        elif method == b"GET" and path == b"/v1/models":
            models = {"object": "list", "data": [{"id": "t<N>-r<R>", "object": "model"}]}
            self._write(_json_response(200, models, keep_alive))
        elif method == b"POST" and path in (b"/v1/chat/completions", b"/v1/responses"):
            return self._stream(path == b"/v1/responses", body, keep_alive)
        else:
            self._write(_error(404, f"mock upstream: no route {path.decode()}", keep_alive))
        if not keep_alive:
            self._close()
        return True

    def _stream(self, responses_api: bool, raw: bytes, keep_alive: bool) -> bool:
        try:
            request = orjson.loads(raw)
            model = str(request["model"])
        except (orjson.JSONDecodeError, KeyError, TypeError):
            self._write(_error(400, "mock upstream: send a JSON body with 'model'", keep_alive))
            return self._finish_now(keep_alive)
        spec = parse_model(model)
        if spec is None:
            message = f"mock upstream: model {model!r} is not t<N>-r<R> (e.g. t256-r0)"
            self._write(_error(404, message, keep_alive))
            return self._finish_now(keep_alive)
        tokens, rate = spec
        if responses_api:
            rendered = render_responses(model, tokens, rate)
            if not request.get("stream"):
                return self._responses_json(model, tokens, keep_alive)
        else:
            limit = request.get("max_tokens") or request.get("max_completion_tokens")
            cut = isinstance(limit, int) and limit < tokens
            usage = bool((request.get("stream_options") or {}).get("include_usage"))
            rendered = render_chat(model, limit if cut else tokens, rate, usage, cut)
        headers = SSE_HEADERS + _connection(keep_alive) + b"\r\n"
        if rate <= 0 or not rendered.tokens:
            self._write(headers + rendered.body + LAST_CHUNK)
            return self._finish_now(keep_alive)
        self._write(headers + rendered.head)
        self._pacer = _Pacer(rendered, self._write, lambda: self._paced_done(keep_alive))
        self._pacer.start()
        return False

    def _paced_done(self, keep_alive: bool) -> None:
        self._pacer = None
        self._done(keep_alive)

    def _responses_json(self, model: str, tokens: int, keep_alive: bool) -> bool:
        text = "".join(token_texts(tokens))
        part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
        item = {
            "id": "msg_mock",
            "type": "message",
            "status": "completed",
            "role": "assistant",
            "content": [part],
        }
        self._write(_json_response(200, _snapshot(model, "completed", [item], tokens), keep_alive))
        return self._finish_now(keep_alive)

    def _finish_now(self, keep_alive: bool) -> bool:
        if not keep_alive:
            self._close()
        return True


class _Scheduler:
    """Runs callbacks at absolute loop times, rounded up to the millisecond, with one
    timer per millisecond that has work (a libuv timer per token would cost more than
    the token's write)."""

    def __init__(self) -> None:
        self._slots: dict[int, list[Callable[[], None]]] = {}

    def at(self, when: float, callback: Callable[[], None]) -> None:
        slot = math.ceil(when * 1000)
        bucket = self._slots.get(slot)
        if bucket is None:
            bucket = self._slots[slot] = []
            asyncio.get_running_loop().call_at(slot / 1000, self._run, slot)
        bucket.append(callback)

    def _run(self, slot: int) -> None:
        for callback in self._slots.pop(slot, ()):
            callback()


_SCHEDULER = _Scheduler()


class _Pacer:
    """Writes token i of a paced stream at `start + i / rate` (absolute, so no drift)."""

    __slots__ = ("_done", "_index", "_loop", "_rendered", "_start", "_write", "cancelled")

    def __init__(
        self, rendered: Rendered, write: Callable[[bytes], None], done: Callable[[], None]
    ) -> None:
        self._rendered = rendered
        self._write, self._done = write, done
        self._loop = asyncio.get_running_loop()
        self._start = self._loop.time()
        self._index = 0
        self.cancelled = False

    def start(self) -> None:
        self._tick()

    def _tick(self) -> None:
        if self.cancelled:
            return
        rendered, tokens = self._rendered, self._rendered.tokens
        now = self._loop.time()
        # Send every token that is due (more than one only if the loop ran late).
        while self._index < len(tokens) and self._start + self._index / rendered.rate <= now:
            self._index += 1
            if self._index == len(tokens):
                self._write(tokens[-1] + rendered.tail + LAST_CHUNK)
                self._done()
                return
            self._write(tokens[self._index - 1])
        _SCHEDULER.at(self._start + self._index / rendered.rate, self._tick)


# --- the process -----------------------------------------------------------------------


async def serve(host: str, port: int, ready: Callable[[int], None] | None = None) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(MockProtocol, host, port, backlog=4096, reuse_address=True)
    bound = server.sockets[0].getsockname()[1]
    if ready is not None:
        ready(bound)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description="Tether benchmark mock upstream.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    args = parser.parse_args()
    raise_nofile()

    def ready(port: int) -> None:
        print(f"mock upstream listening on http://{args.host}:{port}/v1", flush=True)

    run_fast(serve(args.host, args.port, ready))


if __name__ == "__main__":
    main()

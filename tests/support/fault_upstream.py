"""A model upstream that fails on purpose, for the fault suite.

A raw asyncio HTTP/1.1 server — no framework, so that it can reset a connection, hang
or send broken bytes — speaking both Chat Completions (`POST /v1/chat/completions`)
and the Responses API (`POST /v1/responses`) as SSE, with chunked bodies and
keep-alive as real upstreams do.

What it does is written in the request itself: the text of the input holds
`plan=STEPS call=ID`. `STEPS` are joined by `+`, one per attempt of the call `ID`
(the last one repeats), so `plan=status-503+words-12` answers HTTP 503, then, when
Tether tries again, 12 words. Steps:

    words-N           N words `w0 `, `w1 `, … at once, then the finish (and usage)
    paced-N-MS        the same, MS milliseconds apart
    status-S          HTTP S with an OpenAI-shaped JSON error body
    status-S-after-X  the same with `Retry-After: X` (seconds)
    status-S-date-X   the same with `Retry-After` as an HTTP date X seconds ahead
    reset             reads the request, then resets the connection (RST), no byte sent
    reset-after-N     N words, then RST
    error-after-N-S   N words, then the upstream's in-band error for status S (chat:
                      an `error` chunk; Responses: `error` then `response.failed`;
                      429 has the code `rate_limit_exceeded`)
    hang              reads the request and answers nothing
    keepalive         HTTP 200, then an SSE comment every 0.1 s and never a token
    hang-after-N      N words, then nothing
    bad-json          HTTP 200, then a `data:` line that is not JSON
    bad-json-after-N  N words, then a `data:` line that is not JSON
    garbage-after-N   N words, then lines that are not SSE, then the body ends
    long-line         a `data:` line of 9 MiB (Tether reads lines of 8 MiB at most)

Every step but `words-N` and `paced-N-MS` is a fault; `faults` counts those served. `served(ID)`
lists the steps served for call `ID` with their times (`time.monotonic()`).

Use `with run_fault_upstream() as upstream:` (a background thread); `upstream.url`
is the base URL `http://127.0.0.1:PORT/v1`.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from email.utils import formatdate
from typing import Any

import orjson

_PLAN = re.compile(rb"plan=([A-Za-z0-9+.-]+)")
_CALL = re.compile(rb"call=([A-Za-z0-9_-]+)")
_STEP = re.compile(
    r"(words|reset-after|hang-after|bad-json-after|garbage-after)-(\d+)"
    r"|status-(\d+)(?:-(after|date)-(\d+))?"
    r"|(?:error-after|paced)-(\d+)-(\d+)"
    r"|(reset|hang|keepalive|bad-json|long-line)"
)
HANG_SECONDS = 60.0  # the longest a hanging step holds a connection
LONG_LINE = 9 * 1024 * 1024


@dataclass(frozen=True)
class Served:
    call: str
    step: str
    at: float


class FaultUpstream:
    """The server's state: what it served. Its methods run on the server's own loop,
    but for `served` and `faults`, which any thread may read."""

    def __init__(self) -> None:
        self.url = ""
        self._lock = threading.Lock()
        self._served: list[Served] = []
        self._connections: set[asyncio.Task[None]] = set()

    def served(self, call: str) -> list[Served]:
        with self._lock:
            return [s for s in self._served if s.call == call]

    @property
    def faults(self) -> int:
        with self._lock:
            return sum(not s.step.startswith(("words-", "paced-")) for s in self._served)

    # --- the connection --------------------------------------------------------------

    async def connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            while True:
                request = await _read_request(reader)
                if request is None:
                    break
                path, body = request
                if not await self._answer(path, body, reader, writer):
                    break
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._connections.discard(task)
            writer.close()

    async def close(self) -> None:
        for task in list(self._connections):
            task.cancel()

    async def _answer(
        self, path: str, body: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        """Serve one request; False when the connection is over."""
        plan, call = _PLAN.search(body), _CALL.search(body)
        if plan is None or call is None:
            writer.write(_status(400, "the input names no plan=… call=…"))
            return True
        steps = plan.group(1).decode().split("+")
        call_id = call.group(1).decode()
        with self._lock:
            attempt = sum(s.call == call_id for s in self._served)
            step = steps[min(attempt, len(steps) - 1)]
            self._served.append(Served(call_id, step, time.monotonic()))
        match = _STEP.fullmatch(step)
        if match is None:
            writer.write(_status(400, f"unknown step {step!r}"))
            return True
        stream = _Stream(writer, responses=path.endswith("/responses"), model=step)
        words, after, status, retry, retry_in, count_before, number, bare = match.groups()
        if status is not None:
            writer.write(_status(int(status), f"fault upstream: HTTP {status}", retry, retry_in))
            await writer.drain()
            return True
        if step.startswith("paced-"):
            await stream.start(int(count_before), pause=int(number) / 1000)
            await stream.finish(int(count_before))
            return await stream.end()
        if count_before is not None:  # error-after-N-S
            await stream.start(int(count_before))
            await stream.error(int(number))
            return await stream.end()
        if bare == "reset":
            _reset(writer)
            return False
        if bare == "hang":
            await _until_closed(reader)
            return False
        if bare == "keepalive":
            await stream.start(0)
            deadline = time.monotonic() + HANG_SECONDS
            while time.monotonic() < deadline and not writer.is_closing():
                await stream.raw(b": keepalive\n\n")
                await asyncio.sleep(0.1)
            return False
        if bare == "bad-json":
            await stream.start(0)
            await stream.raw(b"data: {not json\n\n")
            return await stream.end()
        if bare == "long-line":
            await stream.start(0)
            await stream.raw(b"data: " + b"x" * LONG_LINE + b"\n\n")
            return await stream.end()
        count = int(after)
        await stream.start(count)
        if words == "words":
            await stream.finish(count)
            return await stream.end()
        if words == "reset-after":
            await asyncio.sleep(0.05)  # let the words leave before the reset
            _reset(writer)
            return False
        if words == "hang-after":
            await _until_closed(reader)
            return False
        if words == "bad-json-after":
            await stream.raw(b"data: {not json\n\n")
        else:  # garbage-after
            await stream.raw(b"\x00\xff garbage\nthis is not SSE\n{\n\n")
        return await stream.end()


class _Stream:
    """One SSE answer in the dialect of the path: chunked, word by word."""

    def __init__(self, writer: asyncio.StreamWriter, *, responses: bool, model: str) -> None:
        self._writer = writer
        self._responses = responses
        self._model = model
        self._seq = 0

    async def start(self, words: int, pause: float = 0.0) -> None:
        self._writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
            b"transfer-encoding: chunked\r\n\r\n"
        )
        if self._responses:
            response = {"id": "resp_fault", "object": "response", "status": "in_progress"}
            await self._event({"type": "response.created", "response": response})
            item = {"id": "msg_fault", "type": "message", "role": "assistant", "content": []}
            await self._event(
                {"type": "response.output_item.added", "output_index": 0, "item": item}
            )
        for i in range(words):
            if pause and i:
                await asyncio.sleep(pause)
            await self._word(f"w{i} ")

    async def _word(self, text: str) -> None:
        if self._responses:
            delta = {"output_index": 0, "content_index": 0, "item_id": "msg_fault"}
            await self._event(
                {"type": "response.output_text.delta", **delta, "delta": text, "logprobs": []}
            )
        else:
            await self._event(_chunk(self._model, {"content": text}))

    async def finish(self, words: int) -> None:
        if not self._responses:
            await self._event(_chunk(self._model, {}, "stop"))
            usage = {"prompt_tokens": 1, "completion_tokens": words, "total_tokens": words + 1}
            await self._event({**_chunk(self._model, {}), "choices": [], "usage": usage})
            await self.raw(b"data: [DONE]\n\n")
            return
        text = "".join(f"w{i} " for i in range(words))
        part = {"type": "output_text", "text": text, "annotations": []}
        item = {"id": "msg_fault", "type": "message", "role": "assistant", "content": [part]}
        item["status"] = "completed"
        await self._event({"type": "response.output_item.done", "output_index": 0, "item": item})
        usage = {"input_tokens": 1, "output_tokens": words, "total_tokens": words + 1}
        response: dict[str, Any] = {"id": "resp_fault", "object": "response", "usage": usage}
        response["status"] = "completed"
        await self._event({"type": "response.completed", "response": response})

    async def error(self, status: int) -> None:
        code = "rate_limit_exceeded" if status == 429 else "server_error"
        message = f"fault upstream: error {status} after tokens"
        if not self._responses:
            await self._event({"error": {"message": message, "type": code, "code": status}})
            return
        error = {"code": code, "message": message}
        await self._event({"type": "error", "error": {**error, "type": code, "param": None}})
        response = {"id": "resp_fault", "object": "response", "status": "failed", "error": error}
        await self._event({"type": "response.failed", "response": response})

    async def _event(self, event: dict[str, Any]) -> None:
        if self._responses:
            event["sequence_number"] = self._seq
            self._seq += 1
            name = f"event: {event['type']}\n".encode()
            await self.raw(name + b"data: " + orjson.dumps(event) + b"\n\n")
        else:
            await self.raw(b"data: " + orjson.dumps(event) + b"\n\n")

    async def raw(self, data: bytes) -> None:
        self._writer.write(b"%x\r\n%s\r\n" % (len(data), data))
        await self._writer.drain()

    async def end(self) -> bool:
        self._writer.write(b"0\r\n\r\n")
        await self._writer.drain()
        return True


def _chunk(model: str, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fault",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def _status(
    status: int, message: str, retry: str | None = None, retry_in: str | None = None
) -> bytes:
    code = "rate_limit_exceeded" if status == 429 else str(status)
    body = orjson.dumps({"error": {"message": message, "type": "error", "code": code}})
    head = f"HTTP/1.1 {status} Fault\r\ncontent-type: application/json\r\n"
    if retry == "after":
        head += f"retry-after: {retry_in}\r\n"
    elif retry == "date":
        head += f"retry-after: {formatdate(time.time() + int(retry_in or 0), usegmt=True)}\r\n"
    return f"{head}content-length: {len(body)}\r\n\r\n".encode() + body


async def _read_request(reader: asyncio.StreamReader) -> tuple[str, bytes] | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    lines = head.decode("latin-1").split("\r\n")
    path = lines[0].split(" ")[1]
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    return path, await reader.readexactly(length)


async def _until_closed(reader: asyncio.StreamReader) -> None:
    """Hold the connection, sending nothing, until the client closes it."""
    with contextlib.suppress(TimeoutError, ConnectionError):
        async with asyncio.timeout(HANG_SECONDS):
            while await reader.read(65536):
                pass


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with RST instead of FIN, as a crashed upstream or a middlebox does."""
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


@contextlib.contextmanager
def run_fault_upstream() -> Iterator[FaultUpstream]:
    """Serve a `FaultUpstream` on a free 127.0.0.1 port in a background thread."""
    upstream = FaultUpstream()
    started = threading.Event()
    stop: list[asyncio.Event] = []
    loops: list[asyncio.AbstractEventLoop] = []

    async def serve() -> None:
        server = await asyncio.start_server(upstream.connection, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        upstream.url = f"http://127.0.0.1:{port}/v1"
        stop.append(asyncio.Event())
        loops.append(asyncio.get_running_loop())
        started.set()
        await stop[0].wait()
        server.close()
        await upstream.close()

    thread = threading.Thread(target=asyncio.run, args=(serve(),), daemon=True)
    thread.start()
    if not started.wait(10):
        raise RuntimeError("the fault upstream did not start")
    try:
        yield upstream
    finally:
        loops[0].call_soon_threadsafe(stop[0].set)
        thread.join(timeout=10)

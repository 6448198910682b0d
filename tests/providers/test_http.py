"""The lean upstream HTTP client against the mock upstream over real sockets."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from tests.support.server import free_port
from tether.providers.http import ConnectFailed, HTTPClient, ReadTimedOut, StreamingResponse


def body(model: str, text: str = "a b c") -> bytes:
    return orjson.dumps(
        {"model": model, "stream": True, "messages": [{"role": "user", "content": text}]}
    )


def client(url: str, read_timeout: float = 5.0) -> HTTPClient:
    headers = {"content-type": "application/json"}
    return HTTPClient(url, headers, connect_timeout=5.0, read_timeout=read_timeout)


async def read_all(response: StreamingResponse) -> bytes:
    return b"".join([chunk async for chunk in response.chunks()])


async def test_http_streams_the_body_and_reuses_the_connection(mock_chat_url: str) -> None:
    upstream = client(mock_chat_url)
    async with upstream.post("/chat/completions", body("echo")) as first:
        assert first.status == 200
        assert (b"content-type", b"text/event-stream; charset=utf-8") in first.headers
        assert (await read_all(first)).endswith(b"data: [DONE]\n\n")
        kept = first._connection
    async with upstream.post("/chat/completions", body("echo")) as second:
        assert second._connection is kept
        assert b'"content":"c"' in await read_all(second)
    await upstream.aclose()


async def test_http_reader_that_stops_at_done_still_keeps_the_connection(
    mock_chat_url: str,
) -> None:
    upstream = client(mock_chat_url)
    async with upstream.post("/chat/completions", body("echo")) as response:
        async for chunk in response.chunks():
            if b"[DONE]" in chunk:
                break
        kept = response._connection
    await asyncio.sleep(0.2)  # the body's terminator arrives while the connection lingers
    async with upstream.post("/chat/completions", body("echo")) as again:
        assert again._connection is kept
        await read_all(again)
    await upstream.aclose()


async def test_http_error_status_body_is_readable(mock_chat_url: str) -> None:
    upstream = client(mock_chat_url)
    async with upstream.post("/chat/completions", body("status-500")) as response:
        assert response.status == 500
        assert b"mock upstream error 500" in await response.read(1000)
    await upstream.aclose()


async def test_http_read_timeout_when_the_upstream_stalls(mock_chat_url: str) -> None:
    upstream = client(mock_chat_url, read_timeout=0.01)
    with pytest.raises(ReadTimedOut):
        async with upstream.post("/chat/completions", body("slow-5")) as response:
            await read_all(response)
    await upstream.aclose()


async def test_http_connect_failure_is_connect_failed() -> None:
    upstream = client(f"http://127.0.0.1:{free_port()}/v1")
    with pytest.raises(ConnectFailed):
        async with upstream.post("/chat/completions", body("echo")):
            pass

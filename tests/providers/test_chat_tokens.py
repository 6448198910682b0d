"""`ChatProvider.count_tokens` through the upstream's tokenize endpoint (`tokenize_url`),
against the mock upstream's vLLM-style `POST /tokenize` over real HTTP."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from tests.support.mock_chat import recorded_requests
from tether.errors import ProviderError
from tether.providers.base import GenerationRequest, TextDelta, TokenCounter
from tether.providers.chat import ChatProvider

MakeProvider = Callable[..., ChatProvider]
WEATHER = {"type": "function", "name": "get_weather", "parameters": {"type": "object"}}


@pytest.fixture
def tokenize_url(mock_chat_url: str) -> str:
    return mock_chat_url.removesuffix("/v1") + "/tokenize"


@pytest.fixture
async def make_provider(mock_chat_url: str, tokenize_url: str) -> AsyncIterator[MakeProvider]:
    providers: list[ChatProvider] = []

    def make(upstream_model: str = "echo", **options: Any) -> ChatProvider:
        options = {
            "base_url": mock_chat_url,
            "upstream_model": upstream_model,
            "tokenize_url": tokenize_url,
            **options,
        }
        providers.append(ChatProvider.from_options("tether-model", options))
        return providers[-1]

    yield make
    for provider in providers:
        await provider.aclose()


def request(*texts: str, **fields: Any) -> GenerationRequest:
    items = [
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": t}]}
        for t in texts
    ]
    return GenerationRequest(model="tether-model", input_items=items, **fields)


async def count(provider: ChatProvider, req: GenerationRequest) -> int:
    assert isinstance(provider, TokenCounter)
    return await provider.count_tokens(req)


async def count_error(provider: ChatProvider, req: GenerationRequest) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        await count(provider, req)
    return caught.value


def test_chat_counts_tokens_only_with_tokenize_url(tokenize_url: str) -> None:
    options = {"base_url": "http://127.0.0.1:1/v1"}
    plain = ChatProvider.from_options("m", options)
    counting = ChatProvider.from_options("m", {**options, "tokenize_url": tokenize_url})

    assert not isinstance(plain, TokenCounter)
    assert isinstance(counting, TokenCounter)
    assert counting.config.tokenize_url == tokenize_url


async def test_chat_count_tokens_posts_chat_messages_and_tools(
    make_provider: MakeProvider, mock_chat_url: str
) -> None:
    req = request("one two three", "four", instructions="be brief", tools=[WEATHER])

    tokens = await count(make_provider(), req)

    assert tokens == 6
    sent = (await recorded_requests(mock_chat_url, "/tokenize"))[-1]
    assert sent["body"] == {
        "model": "echo",
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "one two three"},
            {"role": "user", "content": "four"},
        ],
        "tools": [
            {
                "type": "function",
                "function": {"name": "get_weather", "parameters": {"type": "object"}},
            }
        ],
    }
    assert sent["headers"]["content-type"] == "application/json"


async def test_chat_count_tokens_provider_still_streams(make_provider: MakeProvider) -> None:
    deltas = [d async for d in make_provider().stream(request("still here"))]

    assert "".join(d.text for d in deltas if isinstance(d, TextDelta)) == "still here"


async def test_chat_count_tokens_reports_http_errors(make_provider: MakeProvider) -> None:
    error = await count_error(make_provider("status-503"), request("x"))

    assert error.status == 503
    assert "could not count tokens" in error.message
    assert "returned HTTP 503: mock tokenizer error 503" in error.message


async def test_chat_count_tokens_rejects_answer_without_count(
    make_provider: MakeProvider,
) -> None:
    error = await count_error(make_provider("tokenize-no-count"), request("a b"))

    assert "answered without a 'count'" in error.message


async def test_chat_count_tokens_reports_unreachable_tokenizer(
    make_provider: MakeProvider,
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/tokenize"

    error = await count_error(make_provider(tokenize_url=url), request("x"))

    assert f"tokenizer at {url} failed" in error.message


async def test_chat_count_tokens_rejects_input_it_cannot_send(
    make_provider: MakeProvider,
) -> None:
    part = {"type": "input_file", "file_url": "https://example.com/a.pdf"}
    item = {"type": "message", "role": "user", "content": [part]}
    req = GenerationRequest(model="tether-model", input_items=[item])

    error = await count_error(make_provider(), req)

    assert error.code == "invalid_prompt"
    assert "cannot fetch file URLs" in error.message

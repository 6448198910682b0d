"""`ChatProvider` against the mock Chat Completions upstream, over real HTTP."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from tests.support.mock_chat import open_streams, recorded_requests
from tether.errors import ConfigError, ProviderError
from tether.providers.base import Delta, Finish, GenerationRequest, TextDelta, Usage
from tether.providers.chat import ChatProvider
from tether.providers.chat_stream import ChatStreamReader

MakeProvider = Callable[..., ChatProvider]
SECRET = "sk-test-very-secret-0123456789"


@pytest.fixture
async def make_provider(mock_chat_url: str) -> AsyncIterator[MakeProvider]:
    """Providers for an upstream model of the mock; closed after the test."""
    providers: list[ChatProvider] = []

    def make(upstream_model: str, **options: Any) -> ChatProvider:
        options = {"base_url": mock_chat_url, "upstream_model": upstream_model, **options}
        provider = ChatProvider.from_options("tether-model", options)
        providers.append(provider)
        return provider

    yield make
    for provider in providers:
        await provider.aclose()


def user(text: str) -> dict[str, Any]:
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


def request(*items: dict[str, Any], **fields: Any) -> GenerationRequest:
    return GenerationRequest(model="tether-model", input_items=list(items), **fields)


async def collect(provider: ChatProvider, req: GenerationRequest) -> list[Delta]:
    return [delta async for delta in provider.stream(req)]


async def collect_until_error(
    provider: ChatProvider, req: GenerationRequest
) -> tuple[list[Delta], ProviderError]:
    deltas: list[Delta] = []
    with pytest.raises(ProviderError) as caught:
        async for delta in provider.stream(req):
            deltas.append(delta)
    return deltas, caught.value


def text_of(deltas: list[Delta]) -> str:
    return "".join(d.text for d in deltas if isinstance(d, TextDelta))


async def last_request(base_url: str) -> dict[str, Any]:
    return (await recorded_requests(base_url))[-1]


# --- streaming ----------------------------------------------------------------------------


async def test_chat_text_deltas_concatenate_to_the_answer(make_provider: MakeProvider) -> None:
    deltas = await collect(make_provider("echo"), request(user("the quick brown fox")))

    assert text_of(deltas) == "the quick brown fox"
    assert deltas[-1] == Finish("stop")


async def test_chat_reports_usage_before_finish(make_provider: MakeProvider) -> None:
    deltas = await collect(
        make_provider("echo"), request(user("one two three"), instructions="be brief")
    )

    assert deltas[-2:] == [
        Usage(input_tokens=5, output_tokens=3, reasoning_tokens=0),
        Finish("stop"),
    ]


async def test_chat_reports_length_when_max_tokens_cuts_output(
    make_provider: MakeProvider,
) -> None:
    deltas = await collect(make_provider("words-20"), request(user("go"), max_output_tokens=5))

    assert text_of(deltas) == "w0 w1 w2 w3 w4"
    assert deltas[-1] == Finish("length")


async def test_chat_streams_slow_upstream_incrementally(make_provider: MakeProvider) -> None:
    texts = [
        d.text
        async for d in make_provider("slow-5").stream(request(user("go")))
        if isinstance(d, TextDelta)
    ]

    assert "".join(texts) == "w0 w1 w2 w3 w4"
    assert len(texts) > 1


async def test_chat_uses_tether_model_name_when_no_upstream_model(mock_chat_url: str) -> None:
    provider = ChatProvider.from_options("echo", {"base_url": mock_chat_url + "/"})
    try:
        deltas = await collect(provider, request(user("hi there")))
    finally:
        await provider.aclose()

    assert text_of(deltas) == "hi there"
    assert (await last_request(mock_chat_url))["body"]["model"] == "echo"


# --- the request body ---------------------------------------------------------------------


async def test_chat_sends_instructions_first_and_maps_developer_to_system(
    make_provider: MakeProvider, mock_chat_url: str
) -> None:
    items = [
        {
            "type": "message",
            "role": "developer",
            "content": [{"type": "input_text", "text": "dev"}],
        },
        user("first question"),
        {
            "type": "message",
            "role": "assistant",
            "content": [
                {"type": "output_text", "text": "an ", "annotations": []},
                {"type": "output_text", "text": "answer", "annotations": []},
            ],
        },
        user("second question"),
    ]
    await collect(make_provider("echo"), request(*items, instructions="You are terse."))

    body = (await last_request(mock_chat_url))["body"]
    assert body == {
        "model": "echo",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "system", "content": "dev"},
            {"role": "user", "content": "first question"},
            {"role": "assistant", "content": "an answer"},
            {"role": "user", "content": "second question"},
        ],
        "stream": True,
        "stream_options": {"include_usage": True},
    }


async def test_chat_sends_sampling_options_when_set(
    make_provider: MakeProvider, mock_chat_url: str
) -> None:
    req = request(user("a b c"), max_output_tokens=2, temperature=0.0, top_p=0.5)
    await collect(make_provider("echo"), req)

    body = (await last_request(mock_chat_url))["body"]
    assert (body["max_tokens"], body["temperature"], body["top_p"]) == (2, 0.0, 0.5)


async def test_chat_rejects_unknown_content_parts(make_provider: MakeProvider) -> None:
    audio = {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}
    item = {"type": "message", "role": "user", "content": [audio]}

    deltas, error = await collect_until_error(make_provider("echo"), request(item))

    assert deltas == []
    assert error.code == "invalid_prompt"
    assert error.message == (
        "Upstream model 'tether-model' cannot take content parts of type 'input_audio'"
    )


# --- failures -----------------------------------------------------------------------------


async def test_chat_maps_http_500_to_server_error(make_provider: MakeProvider) -> None:
    provider = make_provider("status-500", max_retries=0)
    deltas, error = await collect_until_error(provider, request(user("x")))

    assert deltas == []
    assert (error.code, error.status) == ("server_error", 500)
    assert error.message == (
        "Upstream model 'tether-model' returned HTTP 500: mock upstream error 500 "
        "(gave up after 1 attempt; max_retries = 0)"
    )


async def test_chat_maps_http_429_to_rate_limit_exceeded(make_provider: MakeProvider) -> None:
    _, error = await collect_until_error(make_provider("status-429"), request(user("x")))

    assert (error.code, error.status) == ("rate_limit_exceeded", 429)
    assert "HTTP 429: mock upstream error 429" in error.message


async def test_chat_reports_plain_text_error_bodies(make_provider: MakeProvider) -> None:
    provider = make_provider("status-text-502", max_retries=0)
    _, error = await collect_until_error(provider, request(user("x")))

    assert (error.code, error.status) == ("server_error", 502)
    assert "HTTP 502: mock upstream plain failure 502 (gave up after 1 attempt" in error.message


async def test_chat_fails_after_first_deltas_when_connection_drops(
    make_provider: MakeProvider,
) -> None:
    deltas, error = await collect_until_error(make_provider("drop-after-3"), request(user("x")))

    assert text_of(deltas) == "w0 w1 w2 "
    assert "dropped the connection mid-stream" in error.message
    assert error.code == "server_error"


async def test_chat_fails_when_stream_ends_without_finish_reason(
    make_provider: MakeProvider,
) -> None:
    deltas, error = await collect_until_error(make_provider("no-finish"), request(user("x")))

    assert text_of(deltas) == "w0 w1"
    assert "upstream closed the stream before finishing" in error.message


async def test_chat_fails_on_mid_stream_error_chunk(make_provider: MakeProvider) -> None:
    deltas, error = await collect_until_error(make_provider("error-chunk"), request(user("x")))

    assert text_of(deltas) == "w0 "
    assert "mock mid-stream failure" in error.message


async def test_chat_fails_when_upstream_is_unreachable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    base_url = f"http://127.0.0.1:{port}/v1"
    provider = ChatProvider.from_options("m", {"base_url": base_url})
    try:
        _, error = await collect_until_error(provider, request(user("x")))
    finally:
        await provider.aclose()

    assert f"could not be reached at {base_url}" in error.message
    assert error.status is None


async def test_chat_closes_upstream_response_when_consumer_stops_early(
    make_provider: MakeProvider, mock_chat_url: str
) -> None:
    stream = make_provider("slow-100").stream(request(user("x")))
    assert isinstance(await anext(stream), TextDelta)
    assert await open_streams(mock_chat_url) >= 1

    await stream.aclose()  # type: ignore[attr-defined]

    for _ in range(100):
        if await open_streams(mock_chat_url) == 0:
            break
        await asyncio.sleep(0.02)
    assert await open_streams(mock_chat_url) == 0


async def test_chat_closes_upstream_response_when_consumer_is_cancelled(
    make_provider: MakeProvider, mock_chat_url: str
) -> None:
    first = asyncio.Event()

    async def consume() -> None:
        async for _ in make_provider("slow-100").stream(request(user("x"))):
            first.set()

    task = asyncio.create_task(consume())
    await first.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    for _ in range(100):
        if await open_streams(mock_chat_url) == 0:
            break
        await asyncio.sleep(0.02)
    assert await open_streams(mock_chat_url) == 0


# --- the API key --------------------------------------------------------------------------


async def test_chat_sends_api_key_as_bearer_and_never_in_errors(
    make_provider: MakeProvider, mock_chat_url: str
) -> None:
    provider = make_provider("status-500", api_key=SECRET, headers={"X-Org": "tether"})
    _, status_error = await collect_until_error(provider, request(user("x")))
    headers = (await last_request(mock_chat_url))["headers"]

    dropping = make_provider("drop-after-1", api_key=SECRET)
    _, drop_error = await collect_until_error(dropping, request(user("x")))

    assert headers["authorization"] == f"Bearer {SECRET}"
    assert headers["x-org"] == "tether"
    for error in (status_error, drop_error):
        assert SECRET not in error.message
        assert SECRET not in str(error)
    assert SECRET not in repr(provider) + repr(provider.config)
    assert SECRET not in provider.error(f"said {SECRET}").message


async def test_chat_reads_api_key_from_environment(mock_chat_url: str) -> None:
    options = {"base_url": mock_chat_url, "upstream_model": "echo", "api_key_env": "CHAT_KEY"}
    provider = ChatProvider.from_options("m", options, environ={"CHAT_KEY": SECRET})
    try:
        await collect(provider, request(user("x")))
    finally:
        await provider.aclose()

    headers = (await last_request(mock_chat_url))["headers"]
    assert headers["authorization"] == f"Bearer {SECRET}"


# --- configuration ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({}, "'base_url' is required"),
        ({"base_url": "http://x/v1", "temperature": 1}, "unknown option 'temperature'"),
        ({"base_url": "http://x/v1", "api_key_env": "UNSET_KEY"}, "'UNSET_KEY', which is not set"),
        ({"base_url": "http://x/v1", "timeout_seconds": "10"}, "'timeout_seconds' must be"),
        ({"base_url": "http://x/v1", "headers": {"a": 1}}, "'headers' must map"),
        ({"base_url": "ftp://x/v1"}, "'base_url' must be an http"),
        ({"base_url": "http://x/v1", "api_key": "k", "api_key_env": "K"}, "not both"),
        ({"base_url": "http://x/v1", "tokenize_url": "x/tokenize"}, "'tokenize_url' must be"),
        ({"base_url": "http://x/v1", "tokenize_url": "http://x:y/"}, "'tokenize_url' is not a"),
    ],
)
def test_chat_config_errors_name_model_and_key(options: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ConfigError) as caught:
        ChatProvider.from_options("my-model", options, environ={})

    assert "my-model" in str(caught.value)
    assert fragment in str(caught.value)


def test_chat_config_defaults() -> None:
    provider = ChatProvider.from_options("m", {"base_url": "http://127.0.0.1:1/v1/"})

    assert (provider.config.upstream_model, provider.config.timeout_seconds) == ("m", 600.0)
    assert provider.config.base_url == "http://127.0.0.1:1/v1"
    assert provider.config.api_key is None


# --- SSE parsing --------------------------------------------------------------------------


def test_chat_sse_reader_handles_lines_split_across_reads() -> None:
    provider = ChatProvider.from_options("m", {"base_url": "http://127.0.0.1:1/v1"})
    stream = (
        b": keep-alive\r\n\r\n"
        b'event: message\r\ndata: {"choices":[{"delta":{"content":"h\xc3\xa9"}}]}\r\n\r\n'
        b'data:{"choices":[{"delta":{"content":"llo"},"finish_reason":"length"}]}\n\n'
        b'data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2,'
        b'"completion_tokens_details":{"reasoning_tokens":1}}}\n\n'
        b"data: [DONE]\n\n"
        b'data: {"choices":[{"delta":{"content":"ignored"}}]}\n\n'
    )
    reader = ChatStreamReader(provider.error)

    text = ""
    for i in range(len(stream)):  # byte by byte, until [DONE], as the provider reads
        text += "".join(d.text for d in reader.feed(stream[i : i + 1]) if isinstance(d, TextDelta))
        if reader.done:
            break

    assert text == "héllo"
    assert (reader.finish_reason, reader.usage, reader.done) == ("length", Usage(3, 2, 1), True)


def test_chat_sse_reader_rejects_malformed_json() -> None:
    provider = ChatProvider.from_options("m", {"base_url": "http://127.0.0.1:1/v1"})

    with pytest.raises(ProviderError, match="malformed stream chunk"):
        ChatStreamReader(provider.error).feed(b"data: {not json\n\n")

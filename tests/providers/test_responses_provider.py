"""`ResponsesProvider` against the mock Responses upstream, over real HTTP."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, get_args

import httpx
import orjson
import pytest
from openai.types.responses import ResponseStreamEvent
from pydantic import BaseModel

from tests.support.grammar import check_stream
from tests.support.mock_responses import open_streams, recorded_requests, run_mock_responses
from tether.errors import ConfigError, ProviderError
from tether.providers.base import (
    Annotation,
    Delta,
    EndItem,
    Finish,
    GenerationRequest,
    OutputItem,
    ReasoningDelta,
    RefusalDelta,
    TextDelta,
    TokenCounter,
    ToolCallDelta,
    Usage,
)
from tether.providers.responses import ResponsesProvider
from tether.providers.responses_stream import ResponsesStreamReader

MakeProvider = Callable[..., ResponsesProvider]
SECRET = "sk-test-very-secret-0123456789"
ENCRYPTED = ("reasoning.encrypted_content",)


@pytest.fixture(scope="module")
def mock_url() -> Iterator[str]:
    """Base URL (`http://127.0.0.1:PORT/v1`) of a mock Responses upstream."""
    with run_mock_responses() as url:
        yield url


@pytest.fixture
async def make_provider(mock_url: str) -> AsyncIterator[MakeProvider]:
    """Providers for an upstream model of the mock; closed after the test."""
    providers: list[ResponsesProvider] = []

    def make(upstream_model: str, **options: Any) -> ResponsesProvider:
        options = {"base_url": mock_url, "upstream_model": upstream_model, **options}
        provider = ResponsesProvider.from_options("tether-model", options)
        providers.append(provider)
        return provider

    yield make
    for provider in providers:
        await provider.aclose()


def user(text: str, item_id: str = "msg_tether1") -> dict[str, Any]:
    content = [{"type": "input_text", "text": text}]
    return {"id": item_id, "type": "message", "role": "user", "status": "completed"} | {
        "content": content
    }


def request(*items: dict[str, Any], **fields: Any) -> GenerationRequest:
    return GenerationRequest(
        model="tether-model", input_items=list(items or [user("hi")]), **fields
    )


async def collect(provider: ResponsesProvider, req: GenerationRequest | None = None) -> list[Delta]:
    return [delta async for delta in provider.stream(req or request())]


async def collect_until_error(
    provider: ResponsesProvider, req: GenerationRequest | None = None
) -> tuple[list[Delta], ProviderError]:
    deltas: list[Delta] = []
    with pytest.raises(ProviderError) as caught:
        async for delta in provider.stream(req or request()):
            deltas.append(delta)
    return deltas, caught.value


def texts(deltas: list[Delta]) -> list[str]:
    return [d.text for d in deltas if isinstance(d, TextDelta)]


async def last_request(base_url: str) -> dict[str, Any]:
    return (await recorded_requests(base_url))[-1]


# --- text, usage and finish -----------------------------------------------------------------


async def test_responses_maps_each_text_delta_to_one_text_delta(
    make_provider: MakeProvider,
) -> None:
    deltas = await collect(make_provider("text-4"), request(user("one two three")))

    assert deltas == [
        TextDelta("w0 "),
        TextDelta("w1 "),
        TextDelta("w2 "),
        TextDelta("w3 "),
        EndItem(),
        Usage(input_tokens=3, output_tokens=4),
        Finish("stop"),
    ]


async def test_responses_reports_reasoning_and_cached_tokens(make_provider: MakeProvider) -> None:
    req = request(user("a b c d"), extra={"prompt_cache_key": "k"})
    deltas = await collect(make_provider("reasoning"), req)

    assert deltas[-2:] == [
        Usage(input_tokens=4, output_tokens=5, reasoning_tokens=4, cached_tokens=2),
        Finish("stop"),
    ]


async def test_responses_incomplete_at_max_output_tokens_finishes_with_length(
    make_provider: MakeProvider,
) -> None:
    deltas = await collect(make_provider("text-10"), request(max_output_tokens=3))

    assert texts(deltas) == ["w0 ", "w1 ", "w2 "]
    assert deltas[-2:] == [Usage(input_tokens=1, output_tokens=3), Finish("length")]


async def test_responses_incomplete_for_content_filter_finishes_with_content_filter(
    make_provider: MakeProvider,
) -> None:
    deltas = await collect(make_provider("filtered"))

    assert texts(deltas) == ["w0 "]
    assert deltas[-1] == Finish("content_filter")


async def test_responses_passes_on_logprobs_only_when_upstream_sends_them(
    make_provider: MakeProvider,
) -> None:
    plain = await collect(make_provider("text-2"))
    with_logprobs = await collect(
        make_provider("text-2"), request(include=("message.output_text.logprobs",))
    )

    assert [d.logprobs for d in plain if isinstance(d, TextDelta)] == [None, None]
    assert with_logprobs[0] == TextDelta(
        "w0 ", [{"token": "w0 ", "logprob": -0.25, "top_logprobs": []}]
    )


async def test_responses_keeps_two_messages_apart_with_end_item(
    make_provider: MakeProvider,
) -> None:
    deltas = await collect(make_provider("two-messages"))

    assert deltas[:6] == [
        TextDelta("a1 "),
        TextDelta("a2"),
        EndItem(),
        TextDelta("b1 "),
        TextDelta("b2"),
        EndItem(),
    ]


async def test_responses_maps_refusal_deltas(make_provider: MakeProvider) -> None:
    deltas = await collect(make_provider("refusal"))

    assert deltas[:3] == [RefusalDelta("I can't "), RefusalDelta("help with that."), EndItem()]


async def test_responses_ignores_keepalives_comments_unknown_events_and_done(
    make_provider: MakeProvider,
) -> None:
    deltas = await collect(make_provider("noisy"))

    assert deltas == [
        TextDelta("w0 "),
        TextDelta("w1"),
        EndItem(),
        Usage(input_tokens=1, output_tokens=2),
        Finish("stop"),
    ]


async def test_responses_uses_tether_model_name_when_no_upstream_model(mock_url: str) -> None:
    provider = ResponsesProvider.from_options("echo", {"base_url": mock_url + "/"})
    try:
        deltas = await collect(provider, request(user("hi there")))
    finally:
        await provider.aclose()

    assert texts(deltas) == ["hi ", "there"]
    assert (await last_request(mock_url))["body"]["model"] == "echo"


# --- reasoning, tools and hosted items ------------------------------------------------------


async def test_responses_maps_reasoning_summary_and_encrypted_content(
    make_provider: MakeProvider,
) -> None:
    deltas = await collect(make_provider("reasoning"), request(include=ENCRYPTED))

    assert deltas[:8] == [
        ReasoningDelta("Think ", summary_index=0),
        ReasoningDelta("first.", summary_index=0),
        ReasoningDelta("Then ", summary_index=1),
        ReasoningDelta("answer.", summary_index=1),
        ReasoningDelta("", encrypted_content="enc:rs_mock0"),
        EndItem(),
        TextDelta("42"),
        EndItem(),
    ]


async def test_responses_maps_reasoning_text_without_encrypted_content(
    make_provider: MakeProvider,
) -> None:
    deltas = await collect(make_provider("reasoning-raw"))

    assert deltas[:5] == [
        ReasoningDelta("raw "),
        ReasoningDelta("thought"),
        EndItem(),
        TextDelta("done"),
        EndItem(),
    ]


async def test_responses_maps_function_call_arguments_in_pieces(
    make_provider: MakeProvider,
) -> None:
    deltas = await collect(make_provider("tool-call"))

    assert deltas[:5] == [
        ToolCallDelta(0, "", name="get_weather", call_id="call_mock0"),
        ToolCallDelta(0, '{"city":'),
        ToolCallDelta(0, ' "Paris"'),
        ToolCallDelta(0, "}"),
        EndItem(),
    ]
    assert deltas[-1] == Finish("stop")


async def test_responses_keeps_two_function_calls_apart_by_index(
    make_provider: MakeProvider,
) -> None:
    deltas = await collect(make_provider("tool-calls-2"))

    assert deltas[:7] == [
        ToolCallDelta(0, "", name="get_weather", call_id="call_mock0"),
        ToolCallDelta(0, '{"city": "Paris"}'),
        EndItem(),
        ToolCallDelta(1, "", name="get_time", call_id="call_mock1"),
        ToolCallDelta(1, '{"tz":'),
        ToolCallDelta(1, ' "CET"}'),
        EndItem(),
    ]


async def test_responses_emits_arguments_sent_only_at_done_once(
    make_provider: MakeProvider,
) -> None:
    deltas = await collect(make_provider("args-at-done"))

    assert deltas[:3] == [
        ToolCallDelta(0, "", name="get_weather", call_id="call_mock0"),
        ToolCallDelta(0, '{"city": "Oslo"}'),
        EndItem(),
    ]


async def test_responses_emits_items_that_come_whole_at_output_item_done(
    make_provider: MakeProvider,
) -> None:
    deltas = await collect(make_provider("whole-items"))

    assert deltas[:4] == [
        ReasoningDelta("whole thought", summary_index=0),
        EndItem(),
        TextDelta("whole answer"),
        EndItem(),
    ]


async def test_responses_passes_hosted_tool_items_and_annotations_on(
    make_provider: MakeProvider,
) -> None:
    deltas = await collect(make_provider("web-search"))

    search = {
        "id": "ws_mock0",
        "type": "web_search_call",
        "action": {"type": "search", "query": "tether responses api"},
        "status": "completed",
    }
    citation = {
        "type": "url_citation",
        "url": "https://example.com/tether",
        "title": "Tether",
        "start_index": 0,
        "end_index": 6,
    }
    assert deltas[:5] == [
        OutputItem(search),
        TextDelta("Tether "),
        TextDelta("is durable."),
        Annotation(citation),
        EndItem(),
    ]


# --- the request body -----------------------------------------------------------------------


async def test_responses_sends_context_without_tether_ids_and_store_false(
    make_provider: MakeProvider, mock_url: str
) -> None:
    call = {"id": "fc_tether", "type": "function_call", "call_id": "call_1", "name": "f"}
    output = {"id": "fco_tether", "type": "function_call_output", "call_id": "call_1"}
    assistant = {"id": "msg_tether2", "type": "message", "role": "assistant"}
    part = {"type": "output_text", "text": "an answer", "annotations": []}
    summary = [{"type": "summary_text", "text": "s"}]
    items = [
        user("question"),
        {"id": "rs_plain", "type": "reasoning", "summary": summary},
        {"id": "rs_up", "type": "reasoning", "summary": summary, "encrypted_content": "enc"},
        call | {"arguments": "{}", "status": "completed"},
        output | {"output": "sunny", "status": "completed"},
        assistant | {"status": "completed", "content": [part]},
    ]
    await collect(make_provider("text-1"), request(*items))

    body = (await last_request(mock_url))["body"]
    assert body == {
        "model": "text-1",
        "input": [
            {"type": "message", "role": "user", "content": user("question")["content"]},
            {"id": "rs_up", "type": "reasoning", "summary": summary, "encrypted_content": "enc"},
            {"type": "function_call", "call_id": "call_1", "name": "f", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
            {"type": "message", "role": "assistant", "content": [part]},
        ],
        "stream": True,
        "store": False,
    }  # fmt: skip


async def test_responses_forwards_every_setting_that_is_set(
    make_provider: MakeProvider, mock_url: str
) -> None:
    tool = {"type": "function", "name": "f", "parameters": {"type": "object"}, "strict": True}
    text_format = {"type": "json_schema", "name": "out", "schema": {"type": "object"}}
    extra = {
        "user": "u1",
        "safety_identifier": "s1",
        "prompt_cache_key": "p1",
        "service_tier": "flex",
        "metadata": {"k": "v"},
        "not_a_setting": "left out",
    }
    req = request(
        instructions="Be terse.",
        max_output_tokens=50,
        temperature=0.0,
        top_p=0.5,
        tools=[tool],
        tool_choice={"type": "function", "name": "f"},
        parallel_tool_calls=False,
        max_tool_calls=2,
        text_format=text_format,
        reasoning={"effort": "low", "summary": "auto"},
        top_logprobs=3,
        include=("message.output_text.logprobs",),
        extra=extra,
    )
    await collect(make_provider("text-1", upstream_store=True), req)

    body = (await last_request(mock_url))["body"]
    del body["input"]
    assert body == {
        "model": "text-1",
        "stream": True,
        "store": True,
        "instructions": "Be terse.",
        "max_output_tokens": 50,
        "temperature": 0.0,
        "top_p": 0.5,
        "tools": [tool],
        "tool_choice": {"type": "function", "name": "f"},
        "parallel_tool_calls": False,
        "max_tool_calls": 2,
        "text": {"format": text_format},
        "reasoning": {"effort": "low", "summary": "auto"},
        "top_logprobs": 3,
        "include": ["message.output_text.logprobs"],
        "user": "u1",
        "safety_identifier": "s1",
        "prompt_cache_key": "p1",
        "service_tier": "flex",
        "metadata": {"k": "v"},
    }


def test_responses_passes_other_item_types_as_given() -> None:
    provider = ResponsesProvider.from_options("m", {"base_url": "http://127.0.0.1:1/v1"})
    search = {"id": "ws_1", "type": "web_search_call", "status": "completed", "action": {}}

    body = provider._body(request(search))

    assert body["input"] == [search]


# --- failures -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "code", "status"),
    [("status-500", "server_error", 500), ("status-429", "rate_limit_exceeded", 429)],
)
async def test_responses_maps_http_errors_before_the_stream(
    make_provider: MakeProvider, model: str, code: str, status: int
) -> None:
    deltas, error = await collect_until_error(make_provider(model, max_retries=0))

    assert deltas == []
    assert (error.code, error.status) == (code, status)
    assert error.message == (
        f"Upstream model 'tether-model' returned HTTP {status}: mock upstream error {status} "
        "(gave up after 1 attempt; max_retries = 0)"
    )


async def test_responses_reports_unknown_upstream_model(make_provider: MakeProvider) -> None:
    _, error = await collect_until_error(make_provider("no-such-model"))

    assert error.status == 404
    assert "The model 'no-such-model' does not exist" in error.message


@pytest.mark.parametrize(
    ("model", "code", "message"),
    [
        (
            "failed-rate_limit_exceeded",
            "rate_limit_exceeded",
            "failed: mock upstream failure (rate_limit_exceeded)",
        ),
        (
            "failed-vector_store_timeout",
            "server_error",
            "failed: mock upstream failure (vector_store_timeout)"
            " (upstream code 'vector_store_timeout')",
        ),
        ("error-event", "rate_limit_exceeded", "failed mid-stream: Rate limit reached"),
        ("error-flat", "server_error", "failed mid-stream: mock flat error"),
    ],
)
async def test_responses_fails_on_failed_and_error_events_after_earlier_deltas(
    make_provider: MakeProvider, model: str, code: str, message: str
) -> None:
    deltas, error = await collect_until_error(make_provider(model))

    assert texts(deltas) == ["w0 "]
    assert (error.code, error.status) == (code, None)
    assert error.message == f"Upstream model 'tether-model' {message}"


async def test_responses_fails_when_connection_drops_mid_stream(
    make_provider: MakeProvider,
) -> None:
    deltas, error = await collect_until_error(make_provider("drop-after-3"))

    assert texts(deltas) == ["w0 ", "w1 ", "w2 "]
    assert "dropped the connection mid-stream" in error.message
    assert error.code == "server_error"


async def test_responses_fails_when_stream_ends_without_terminal_event(
    make_provider: MakeProvider,
) -> None:
    deltas, error = await collect_until_error(make_provider("no-terminal"))

    assert texts(deltas) == ["w0 ", "w1 "]
    assert "upstream closed the stream before finishing" in error.message


async def test_responses_fails_on_malformed_event(make_provider: MakeProvider) -> None:
    deltas, error = await collect_until_error(make_provider("malformed"))

    assert texts(deltas) == ["w0 "]
    assert "sent a malformed stream event (not JSON): {not json" in error.message


async def test_responses_fails_when_upstream_is_unreachable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    base_url = f"http://127.0.0.1:{port}/v1"
    provider = ResponsesProvider.from_options("m", {"base_url": base_url})
    try:
        _, error = await collect_until_error(provider)
    finally:
        await provider.aclose()

    assert f"could not be reached at {base_url}" in error.message
    assert error.status is None


async def test_responses_closes_upstream_stream_when_consumer_stops_early(
    make_provider: MakeProvider, mock_url: str
) -> None:
    stream = make_provider("slow-100").stream(request())
    assert isinstance(await anext(stream), TextDelta)
    assert await open_streams(mock_url) >= 1

    await stream.aclose()  # type: ignore[attr-defined]

    for _ in range(100):
        if await open_streams(mock_url) == 0:
            break
        await asyncio.sleep(0.02)
    assert await open_streams(mock_url) == 0


# --- counting tokens ------------------------------------------------------------------------


async def test_responses_counts_input_tokens_with_the_upstream(
    make_provider: MakeProvider, mock_url: str
) -> None:
    provider = make_provider("any")
    req = request(user("one two three"), instructions="be brief", temperature=0.5, top_p=0.9)

    assert isinstance(provider, TokenCounter)
    assert await provider.count_tokens(req) == 5
    recorded = await last_request(mock_url)
    assert recorded["path"] == "/v1/responses/input_tokens"
    assert set(recorded["body"]) == {"model", "input", "instructions"}
    assert "id" not in recorded["body"]["input"][0]


async def test_responses_count_tokens_fails_when_upstream_cannot_count(
    make_provider: MakeProvider,
) -> None:
    with pytest.raises(ProviderError) as missing:
        await make_provider("status-404").count_tokens(request())
    with pytest.raises(ProviderError) as limited:
        await make_provider("status-429").count_tokens(request())

    assert "cannot count input tokens" in missing.value.message
    assert missing.value.status == 404
    assert (limited.value.code, limited.value.status) == ("rate_limit_exceeded", 429)


# --- the API key ----------------------------------------------------------------------------


async def test_responses_sends_api_key_as_bearer_and_never_in_errors(
    make_provider: MakeProvider, mock_url: str
) -> None:
    provider = make_provider("status-500", api_key=SECRET, headers={"X-Org": "tether"})
    _, status_error = await collect_until_error(provider)
    headers = (await last_request(mock_url))["headers"]

    dropping = make_provider("drop-after-1", api_key=SECRET)
    _, drop_error = await collect_until_error(dropping)

    assert headers["authorization"] == f"Bearer {SECRET}"
    assert headers["x-org"] == "tether"
    for error in (status_error, drop_error):
        assert SECRET not in str(error)
    assert SECRET not in repr(provider) + repr(provider.config)
    assert SECRET not in provider.error(f"said {SECRET}").message


async def test_responses_reads_api_key_from_environment(mock_url: str) -> None:
    options = {"base_url": mock_url, "upstream_model": "text-1", "api_key_env": "UP_KEY"}
    provider = ResponsesProvider.from_options("m", options, environ={"UP_KEY": SECRET})
    try:
        await collect(provider)
    finally:
        await provider.aclose()

    headers = (await last_request(mock_url))["headers"]
    assert headers["authorization"] == f"Bearer {SECRET}"


# --- configuration --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({}, "'base_url' is required"),
        ({"base_url": "http://x/v1", "temperature": 1}, "unknown option 'temperature'"),
        ({"base_url": "http://x/v1", "api_key_env": "UNSET_KEY"}, "'UNSET_KEY', which is not set"),
        ({"base_url": "http://x/v1", "timeout_seconds": True}, "'timeout_seconds' must be"),
        ({"base_url": "http://x/v1", "timeout_seconds": 0}, "'timeout_seconds' must be positive"),
        ({"base_url": "http://x/v1", "headers": {"a": 1}}, "'headers' must map"),
        ({"base_url": "http://x/v1", "upstream_store": "no"}, "'upstream_store' must be true or"),
        ({"base_url": "ftp://x/v1"}, "'base_url' must be an http"),
        ({"base_url": "http://x:port/v1"}, "'base_url' is not a valid URL"),
        ({"base_url": "https://x/openai?api-version=1"}, "must not have a query string"),
        ({"base_url": "http://x/v1", "api_key": "k", "api_key_env": "K"}, "not both"),
    ],
)
def test_responses_config_errors_name_model_and_key(options: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ConfigError) as caught:
        ResponsesProvider.from_options("my-model", options, environ={})

    assert "Model 'my-model' (provider 'responses')" in str(caught.value)
    assert fragment in str(caught.value)


def test_responses_config_defaults() -> None:
    provider = ResponsesProvider.from_options("m", {"base_url": "http://127.0.0.1:1/v1/"})

    config = provider.config
    assert (config.upstream_model, config.timeout_seconds, config.upstream_store) == (
        "m",
        600.0,
        False,
    )
    assert (config.base_url, config.api_key) == ("http://127.0.0.1:1/v1", None)


# --- the stream reader ----------------------------------------------------------------------


def test_responses_reader_handles_lines_split_across_reads() -> None:
    provider = ResponsesProvider.from_options("m", {"base_url": "http://127.0.0.1:1/v1"})
    stream = (
        b": keep-alive\r\n\r\n"
        b"event: response.output_text.delta\r\n"
        b'data: {"type":"response.output_text.delta","delta":"h\xc3\xa9"}\r\n\r\n'
        b'data:{"type":"response.output_text.delta","delta":"llo"}\n\n'
        b'data: {"type":"response.completed","response":{"usage":{"input_tokens":3,'
        b'"output_tokens":2,"output_tokens_details":{"reasoning_tokens":1}}}}\n\n'
        b'data: {"type":"response.output_text.delta","delta":"ignored"}\n\n'
    )
    reader = ResponsesStreamReader(provider.error)

    deltas: list[Delta] = []
    for i in range(len(stream)):  # byte by byte, until the terminal event
        deltas += reader.feed(stream[i : i + 1])
        if reader.done:
            break

    assert texts(deltas) == ["hé", "llo"]
    assert (reader.finish, reader.usage, reader.failure) == ("stop", Usage(3, 2, 1), None)


def test_responses_reader_rejects_events_of_the_wrong_shape() -> None:
    provider = ResponsesProvider.from_options("m", {"base_url": "http://127.0.0.1:1/v1"})
    reader = ResponsesStreamReader(provider.error)

    reader.feed(b'data: {"type":"response.output_text.delta","delta":7}\n\n')

    assert reader.failure is not None
    assert "sent a malformed stream event" in reader.failure.message


# --- the mock speaks real Responses events --------------------------------------------------

# The SDK's union is discriminated by its own `PropertyInfo`, which pydantic does not
# see: pick each event's model by its `type`, then validate strictly.
EVENT_MODELS: dict[str, type[BaseModel]] = {
    get_args(model.model_fields["type"].annotation)[0]: model
    for model in get_args(get_args(ResponseStreamEvent)[0])
}


async def mock_events(base_url: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    """POST to the mock and decode its SSE frames, checking `event:` equals `type`."""
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.post(f"{base_url}/responses", json=body)
    events: list[dict[str, Any]] = []
    for block in response.content.split(b"\n\n"):
        fields = dict(line.split(b": ", 1) for line in block.splitlines())
        if b"data" in fields:
            event = orjson.loads(fields[b"data"])
            assert fields[b"event"].decode() == event["type"]
            events.append(event)
    return events


SDK_CHECKED = (
    "text-3",
    "reasoning",
    "reasoning-raw",
    "tool-calls-2",
    "web-search",
    "refusal",
    "filtered",
    "failed-server_error",
    "error-flat",
)


@pytest.mark.parametrize("model", SDK_CHECKED)
async def test_mock_responses_events_validate_with_the_openai_sdk(
    mock_url: str, model: str
) -> None:
    body = {"model": model, "input": "hi", "stream": True, "include": list(ENCRYPTED)}
    events = await mock_events(mock_url, body)

    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    for event in events:
        EVENT_MODELS[event["type"]].model_validate(event, strict=True)


@pytest.mark.parametrize("model", ["text-3", "tool-calls-2", "two-messages", "failed-server_error"])
async def test_mock_responses_streams_follow_the_event_grammar(mock_url: str, model: str) -> None:
    check_stream(await mock_events(mock_url, {"model": model, "input": "hi", "stream": True}))

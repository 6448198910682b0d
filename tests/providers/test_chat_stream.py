"""`ChatProvider`: what a Chat Completions stream becomes — tool calls, reasoning, refusals,
logprobs, usage — over real HTTP from the mock upstream, and odd streams fed to the reader."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
import pytest

from tether.errors import ProviderError
from tether.providers.base import (
    Delta,
    Finish,
    GenerationRequest,
    ReasoningDelta,
    RefusalDelta,
    TextDelta,
    ToolCallDelta,
    Usage,
)
from tether.providers.chat import ChatProvider
from tether.providers.chat_stream import ChatStreamReader

MakeProvider = Callable[..., ChatProvider]
TOOLS = [
    {"type": "function", "name": "get_weather", "parameters": {"type": "object"}},
    {"type": "function", "name": "get_time", "parameters": {"type": "object"}},
]


@pytest.fixture
async def make_provider(mock_chat_url: str) -> AsyncIterator[MakeProvider]:
    providers: list[ChatProvider] = []

    def make(upstream_model: str) -> ChatProvider:
        options = {"base_url": mock_chat_url, "upstream_model": upstream_model}
        providers.append(ChatProvider.from_options("tether-model", options))
        return providers[-1]

    yield make
    for provider in providers:
        await provider.aclose()


def request(text: str, **fields: Any) -> GenerationRequest:
    item = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}
    return GenerationRequest(model="tether-model", input_items=[item], **fields)


async def collect(provider: ChatProvider, req: GenerationRequest) -> list[Delta]:
    return [delta async for delta in provider.stream(req)]


def calls_of(deltas: list[Delta]) -> list[tuple[int, str | None, str | None, str]]:
    """(index, name, call_id, arguments) per call; checks each call's deltas come together
    and that only the first carries the name."""
    calls: list[tuple[int, str | None, str | None, str]] = []
    for delta in deltas:
        if not isinstance(delta, ToolCallDelta):
            continue
        if calls and calls[-1][0] == delta.index:
            index, name, call_id, arguments = calls[-1]
            assert delta.name is None
            calls[-1] = (index, name, call_id, arguments + delta.arguments)
        else:
            assert delta.index not in [c[0] for c in calls], f"call {delta.index} split"
            assert delta.name is not None
            calls.append((delta.index, delta.name, delta.call_id, delta.arguments))
    return calls


# --- tool calls ---------------------------------------------------------------------------


async def test_chat_stream_tool_call_split_across_chunks(make_provider: MakeProvider) -> None:
    deltas = await collect(make_provider("tool-call"), request("weather?", tools=TOOLS))

    assert deltas[:4] == [
        ToolCallDelta(0, "", name="get_weather", call_id="call_mock0"),
        ToolCallDelta(0, '{"ci'),
        ToolCallDelta(0, 'ty": "Pa'),
        ToolCallDelta(0, 'ris"}'),
    ]
    assert deltas[4:] == [Usage(1, 5, 0, 0), Finish("stop")]


@pytest.mark.parametrize("model", ["tool-calls-parallel", "tool-calls-headers-first"])
async def test_chat_stream_parallel_calls_come_one_after_the_other(
    make_provider: MakeProvider, model: str
) -> None:
    deltas = await collect(make_provider(model), request("both?", tools=TOOLS))

    assert calls_of(deltas) == [
        (0, "get_weather", "call_mock0", '{"city": "Paris"}'),
        (1, "get_time", None, '{"city": "Tokyo"}'),  # upstream id not call_…: Tether makes one
    ]
    assert all(isinstance(d, ToolCallDelta) for d in deltas[:-2])
    assert deltas[-1] == Finish("stop")
    # the first call streams live: its name goes out before its arguments
    assert deltas[0] == ToolCallDelta(0, "", name="get_weather", call_id="call_mock0")


# --- reasoning, refusal, text -------------------------------------------------------------


@pytest.mark.parametrize("model", ["reasoning-content", "reasoning"])
async def test_chat_stream_reasoning_then_text_with_usage_details(
    make_provider: MakeProvider, model: str
) -> None:
    deltas = await collect(make_provider(model), request("what is two plus two"))

    assert deltas[:4] == [
        ReasoningDelta("Thinking "),
        ReasoningDelta("hard."),
        TextDelta("Four"),
        TextDelta("."),
    ]
    usage = deltas[4]
    assert isinstance(usage, Usage)
    assert (usage.input_tokens, usage.reasoning_tokens, usage.cached_tokens) == (5, 2, 2)
    assert deltas[5:] == [Finish("stop")]


async def test_chat_stream_refusal(make_provider: MakeProvider) -> None:
    deltas = await collect(make_provider("refusal"), request("do something bad"))

    assert deltas[:2] == [RefusalDelta("I can't "), RefusalDelta("help with that.")]
    assert deltas[-1] == Finish("stop")


async def test_chat_stream_passes_schema_breaking_text_through(
    make_provider: MakeProvider,
) -> None:
    fmt = {"type": "json_schema", "name": "answer", "schema": {"type": "object"}}

    deltas = await collect(make_provider("json-broken"), request("2+2", text_format=fmt))

    text = "".join(d.text for d in deltas if isinstance(d, TextDelta))
    assert orjson.loads(text) == {"unexpected": "field"}
    assert deltas[-1] == Finish("stop")


async def test_chat_stream_maps_logprobs_to_responses_shape(make_provider: MakeProvider) -> None:
    req = request("héllo wörld", include=("message.output_text.logprobs",), top_logprobs=2)

    deltas = await collect(make_provider("echo"), req)

    texts = [d for d in deltas if isinstance(d, TextDelta)]
    assert [d.text for d in texts] == ["héllo ", "wörld"]

    def entry(token: str, logprob: float) -> dict[str, Any]:
        alternative = {"token": "alt1", "logprob": logprob - 1, "bytes": list(b"alt1")}
        return {
            "token": token,
            "logprob": logprob,
            "bytes": list(token.encode()),  # the second came as null: made from the token
            "top_logprobs": [
                {"token": token, "logprob": logprob, "bytes": list(token.encode())},
                alternative,
            ],
        }

    assert texts[0].logprobs == [entry("héllo ", -0.1 * 1)]
    assert texts[1].logprobs == [entry("wörld", -0.1 * 2)]


async def test_chat_stream_text_has_no_logprobs_unless_sent(make_provider: MakeProvider) -> None:
    deltas = await collect(make_provider("echo"), request("a b"))

    assert [d.logprobs for d in deltas if isinstance(d, TextDelta)] == [None, None]


# --- odd streams, fed to the reader -------------------------------------------------------


def frames(*deltas: dict[str, Any], finish: str | None = None) -> bytes:
    events = [{"choices": [{"index": 0, "delta": delta}]} for delta in deltas]
    if finish is not None:
        events.append({"choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
    return b"".join(b"data: " + orjson.dumps(e) + b"\n\n" for e in events) + b"data: [DONE]\n\n"


def piece(index: int | None, arguments: str = "", **fields: Any) -> dict[str, Any]:
    function = {"arguments": arguments}
    if "name" in fields:
        function["name"] = fields.pop("name")
    result: dict[str, Any] = {"function": function, **fields}
    if index is not None:
        result["index"] = index
    return {"tool_calls": [result]}


def read(stream: bytes) -> tuple[list[Delta], ChatStreamReader]:
    provider = ChatProvider.from_options("m", {"base_url": "http://127.0.0.1:1/v1"})
    reader = ChatStreamReader(provider.error)
    deltas = reader.feed(stream)
    return deltas + reader.close(), reader


def test_chat_reader_holds_back_a_call_whose_header_came_early() -> None:
    stream = frames(
        piece(0, name="a", id="call_a"),
        piece(1, name="b", id="call_b"),
        piece(2, name="c", id="call_c"),
        piece(0, "{}"),
        piece(2, '{"x":'),
        piece(2, "1}"),
        finish="tool_calls",
    )

    deltas, reader = read(stream)

    assert calls_of(deltas) == [
        (0, "a", "call_a", "{}"),
        (2, "c", "call_c", '{"x":1}'),
        (1, "b", "call_b", ""),  # never got arguments: sent at the end
    ]
    assert reader.finish_reason == "tool_calls"


def test_chat_reader_waits_for_a_name_that_comes_late() -> None:
    deltas, _ = read(
        frames(piece(0, '{"a"', id="call_x"), piece(0, ":1}", name="f"), finish="stop")
    )

    assert deltas == [ToolCallDelta(0, '{"a":1}', name="f", call_id="call_x")]


def test_chat_reader_tells_calls_without_index_apart_by_id() -> None:
    stream = frames(
        piece(None, "{}", id="call_1", name="f"),
        piece(None, '{"b":2}', id="call_2", name="g"),
        finish="tool_calls",
    )

    deltas, _ = read(stream)

    assert calls_of(deltas) == [(0, "f", "call_1", "{}"), (1, "g", "call_2", '{"b":2}')]


def test_chat_reader_maps_legacy_function_call() -> None:
    stream = frames(
        {"function_call": {"name": "f", "arguments": ""}},
        {"function_call": {"arguments": '{"a":1}'}},
        finish="function_call",
    )

    deltas, reader = read(stream)

    assert deltas == [ToolCallDelta(0, "", name="f"), ToolCallDelta(0, '{"a":1}')]
    assert reader.finish_reason == "function_call"


def test_chat_reader_ends_a_call_when_text_follows() -> None:
    stream = frames(piece(0, "{}", name="f"), {"content": "done"}, piece(1, "{}", name="g"))

    deltas, _ = read(stream)

    assert deltas == [
        ToolCallDelta(0, "{}", name="f"),
        TextDelta("done"),
        ToolCallDelta(1, "{}", name="g"),
    ]


@pytest.mark.parametrize(
    ("stream", "fragment"),
    [
        (
            frames(piece(0, "{", name="f"), piece(1, "{}", name="g"), piece(0, "}")),
            "arguments of tool call 0 came after another call's",
        ),
        (
            frames(piece(0, "{}", name="f"), {"content": "x"}, piece(0, "{}")),
            "arguments of tool call 0 came after another call's",
        ),
        (
            frames(piece(0, "{}", id="call_1"), finish="tool_calls"),
            "tool call 0 has no function name",
        ),
        (frames(piece("0", "{}", name="f")), "tool call index '0' is not an integer"),  # type: ignore[arg-type]
        (frames({"content": ["not", "a", "string"]}), "non-string delta content"),
        (frames({"reasoning_content": 1}), "non-string delta reasoning"),
    ],
)
def test_chat_reader_rejects_streams_it_cannot_map(stream: bytes, fragment: str) -> None:
    with pytest.raises(ProviderError) as caught:
        read(stream)

    assert fragment in caught.value.message
    assert caught.value.message.startswith("Upstream model 'm' sent a ")

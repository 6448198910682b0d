"""`ChatProvider`: what a `GenerationRequest` becomes upstream, checked in the body the mock
Chat Completions upstream received over real HTTP, and the input it cannot send."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from tests.support.mock_chat import recorded_requests
from tether.errors import ProviderError
from tether.providers.base import Delta, Finish, GenerationRequest
from tether.providers.chat import ChatProvider

MakeProvider = Callable[..., ChatProvider]

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather of a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    "strict": True,
}
CLOCK = {"type": "function", "name": "get_time", "description": None, "strict": None}


@pytest.fixture
async def make_provider(mock_chat_url: str) -> AsyncIterator[MakeProvider]:
    providers: list[ChatProvider] = []

    def make(upstream_model: str = "echo", **options: Any) -> ChatProvider:
        options = {"base_url": mock_chat_url, "upstream_model": upstream_model, **options}
        providers.append(ChatProvider.from_options("tether-model", options))
        return providers[-1]

    yield make
    for provider in providers:
        await provider.aclose()


def message(role: str, *parts: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": "msg_1",
        "type": "message",
        "role": role,
        "status": "completed",
        "content": list(parts),
    }


def text(value: str) -> dict[str, Any]:
    return {"type": "input_text", "text": value}


def output_text(value: str) -> dict[str, Any]:
    return {"type": "output_text", "text": value, "annotations": []}


def call(call_id: str, name: str, arguments: str) -> dict[str, Any]:
    return {
        "id": f"fc_{call_id}",
        "type": "function_call",
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
        "status": "completed",
    }


def call_output(call_id: str, output: Any) -> dict[str, Any]:
    return {
        "id": f"fco_{call_id}",
        "type": "function_call_output",
        "call_id": call_id,
        "output": output,
    }


def reasoning() -> dict[str, Any]:
    return {"id": "rs_1", "type": "reasoning", "summary": [{"type": "summary_text", "text": "hm"}]}


def request(*items: dict[str, Any], **fields: Any) -> GenerationRequest:
    return GenerationRequest(model="tether-model", input_items=list(items), **fields)


async def sent_body(provider: ChatProvider, req: GenerationRequest, url: str) -> dict[str, Any]:
    """Runs `req` to its end and answers the body the upstream received."""
    deltas: list[Delta] = [d async for d in provider.stream(req)]
    assert isinstance(deltas[-1], Finish)
    body: dict[str, Any] = (await recorded_requests(url))[-1]["body"]
    return body


async def rejection(provider: ChatProvider, req: GenerationRequest, url: str) -> ProviderError:
    """The error for input the upstream cannot take; checks nothing was sent."""
    before = len(await recorded_requests(url))
    with pytest.raises(ProviderError) as caught:
        async for _ in provider.stream(req):
            pass
    assert len(await recorded_requests(url)) == before
    assert caught.value.code == "invalid_prompt"
    assert caught.value.message.startswith("Upstream model 'tether-model' cannot ")
    return caught.value


# --- tools --------------------------------------------------------------------------------


async def test_chat_request_maps_function_tools_and_omits_unset_keys(
    make_provider: MakeProvider, mock_chat_url: str
) -> None:
    req = request(message("user", text("hi")), tools=[WEATHER, CLOCK], parallel_tool_calls=False)

    body = await sent_body(make_provider(), req, mock_chat_url)

    assert body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather of a city",
                "parameters": WEATHER["parameters"],
                "strict": True,
            },
        },
        {"type": "function", "function": {"name": "get_time"}},
    ]
    assert (body["tool_choice"], body["parallel_tool_calls"]) == ("auto", False)


@pytest.mark.parametrize(
    ("choice", "sent"),
    [
        ("none", "none"),
        ("required", "required"),
        (
            {"type": "function", "name": "get_weather"},
            {"type": "function", "function": {"name": "get_weather"}},
        ),
    ],
)
async def test_chat_request_maps_tool_choice(
    make_provider: MakeProvider, mock_chat_url: str, choice: Any, sent: Any
) -> None:
    req = request(message("user", text("hi")), tools=[WEATHER], tool_choice=choice)

    body = await sent_body(make_provider(), req, mock_chat_url)

    assert (body["tool_choice"], body["parallel_tool_calls"]) == (sent, True)


async def test_chat_request_without_tools_sends_no_tool_keys(
    make_provider: MakeProvider, mock_chat_url: str
) -> None:
    req = request(message("user", text("hi")), tool_choice="required", parallel_tool_calls=False)

    body = await sent_body(make_provider(), req, mock_chat_url)

    assert not {"tools", "tool_choice", "parallel_tool_calls"} & body.keys()


async def test_chat_request_rejects_non_function_tools(
    make_provider: MakeProvider, mock_chat_url: str
) -> None:
    req = request(message("user", text("hi")), tools=[{"type": "web_search"}])

    error = await rejection(make_provider(), req, mock_chat_url)

    assert "tools of type 'web_search'" in error.message


async def test_chat_request_rejects_allowed_tools_choice(
    make_provider: MakeProvider, mock_chat_url: str
) -> None:
    choice = {"type": "allowed_tools", "mode": "auto", "tools": []}
    req = request(message("user", text("hi")), tools=[WEATHER], tool_choice=choice)

    error = await rejection(make_provider(), req, mock_chat_url)

    assert "tool_choice of type 'allowed_tools'" in error.message


# --- function calls in the input ---------------------------------------------------------


async def test_chat_request_merges_text_and_calls_into_one_assistant_message(
    make_provider: MakeProvider, mock_chat_url: str
) -> None:
    items = [
        message("user", text("weather and time in Paris?")),
        reasoning(),
        message("assistant", output_text("Checking.")),
        call("call_1", "get_weather", '{"city":"Paris"}'),
        reasoning(),
        call("call_2", "get_time", "{}"),
        call_output("call_1", "sunny"),
        call_output("call_2", [text("12:00"), {"type": "input_text", "text": " CET"}]),
        call("call_3", "get_weather", '{"city":"Rome"}'),
        call_output("call_3", "rain"),
        message("user", text("thanks")),
    ]

    body = await sent_body(make_provider(), request(*items, tools=[WEATHER]), mock_chat_url)

    def tool_call(call_id: str, name: str, arguments: str) -> dict[str, Any]:
        function = {"name": name, "arguments": arguments}
        return {"id": call_id, "type": "function", "function": function}

    assert body["messages"] == [
        {"role": "user", "content": "weather and time in Paris?"},
        {
            "role": "assistant",
            "content": "Checking.",
            "tool_calls": [
                tool_call("call_1", "get_weather", '{"city":"Paris"}'),
                tool_call("call_2", "get_time", "{}"),
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        {"role": "tool", "tool_call_id": "call_2", "content": "12:00 CET"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [tool_call("call_3", "get_weather", '{"city":"Rome"}')],
        },
        {"role": "tool", "tool_call_id": "call_3", "content": "rain"},
        {"role": "user", "content": "thanks"},
    ]


async def test_chat_request_rejects_images_in_call_output(
    make_provider: MakeProvider, mock_chat_url: str
) -> None:
    image = {"type": "input_image", "image_url": "https://example.com/chart.png", "detail": "auto"}
    items = [call("call_1", "chart", "{}"), call_output("call_1", [text("here"), image])]

    error = await rejection(make_provider(), request(*items), mock_chat_url)

    assert "input_image parts in a function_call_output" in error.message
    assert "send images and files in a user message instead" in error.message


async def test_chat_request_rejects_unknown_item_types(
    make_provider: MakeProvider, mock_chat_url: str
) -> None:
    item = {"id": "ws_1", "type": "web_search_call", "status": "completed"}

    error = await rejection(make_provider(), request(item), mock_chat_url)

    assert "input items of type 'web_search_call'" in error.message


async def test_chat_request_rejects_malformed_items_clearly(
    make_provider: MakeProvider, mock_chat_url: str
) -> None:
    item = {"id": "fc_1", "type": "function_call", "name": "f", "arguments": "{}"}  # no call_id

    error = await rejection(make_provider(), request(item), mock_chat_url)

    assert "malformed input item" in error.message
    assert "call_id" in error.message


# --- content parts ------------------------------------------------------------------------


async def test_chat_request_maps_images_and_files_to_content_parts(
    make_provider: MakeProvider, mock_chat_url: str
) -> None:
    pdf = "data:application/pdf;base64,JVBERi0xLjQK"
    parts = [
        text("compare"),
        {"type": "input_image", "image_url": "https://example.com/a.png", "detail": "low"},
        {"type": "input_image", "image_url": "data:image/png;base64,iVBORw0K", "detail": None},
        {"type": "input_file", "file_data": pdf, "filename": "a.pdf"},
        {"type": "input_file", "file_data": pdf},
    ]

    body = await sent_body(make_provider(), request(message("user", *parts)), mock_chat_url)

    assert body["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "compare"},
                {
                    "type": "image_url",
                    "image_url": {"url": "https://example.com/a.png", "detail": "low"},
                },
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0K"}},
                {"type": "file", "file": {"file_data": pdf, "filename": "a.pdf"}},
                {"type": "file", "file": {"file_data": pdf}},
            ],
        }
    ]


@pytest.mark.parametrize(
    ("part", "fragment"),
    [
        (
            {"type": "input_file", "file_url": "https://example.com/a.pdf"},
            "cannot fetch file URLs (input_file.file_url)",
        ),
        ({"type": "input_file", "file_id": "file-123"}, "input_file without file_data"),
        (
            {"type": "input_image", "file_id": "file-123", "detail": "auto"},
            "input_image by file_id",
        ),
    ],
)
async def test_chat_request_rejects_parts_the_upstream_cannot_fetch(
    make_provider: MakeProvider, mock_chat_url: str, part: dict[str, Any], fragment: str
) -> None:
    req = request(message("user", text("look"), part))

    error = await rejection(make_provider(), req, mock_chat_url)

    assert fragment in error.message


async def test_chat_request_sends_assistant_refusal_as_its_text(
    make_provider: MakeProvider, mock_chat_url: str
) -> None:
    refusal = {"type": "refusal", "refusal": "I can't help with that."}
    items = [
        message("user", text("do it")),
        message("assistant", refusal),
        message("user", text("ok")),
    ]

    body = await sent_body(make_provider(), request(*items), mock_chat_url)

    assert body["messages"][1] == {"role": "assistant", "content": "I can't help with that."}


# --- output format, reasoning, logprobs -------------------------------------------------


async def test_chat_request_maps_json_schema_format(
    make_provider: MakeProvider, mock_chat_url: str
) -> None:
    schema = {
        "type": "object",
        "properties": {"answer": {"type": "integer"}},
        "required": ["answer"],
    }
    fmt = {
        "type": "json_schema",
        "name": "answer",
        "schema": schema,
        "strict": True,
        "description": None,
    }

    body = await sent_body(
        make_provider("json-broken"),
        request(message("user", text("2+2")), text_format=fmt),
        mock_chat_url,
    )

    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "answer", "schema": schema, "strict": True},
    }


async def test_chat_request_maps_json_object_format_and_reasoning_effort(
    make_provider: MakeProvider, mock_chat_url: str
) -> None:
    req = request(
        message("user", text("json")),
        text_format={"type": "json_object"},
        reasoning={"effort": "low", "summary": "auto"},
    )

    body = await sent_body(make_provider(), req, mock_chat_url)

    assert body["response_format"] == {"type": "json_object"}
    assert body["reasoning_effort"] == "low"


async def test_chat_request_leaves_out_unset_format_effort_and_logprobs(
    make_provider: MakeProvider, mock_chat_url: str
) -> None:
    req = request(message("user", text("plain")), reasoning={"effort": None}, top_logprobs=3)

    body = await sent_body(make_provider(), req, mock_chat_url)

    assert not {"response_format", "reasoning_effort", "logprobs", "top_logprobs"} & body.keys()


@pytest.mark.parametrize(("top", "sent"), [(None, 0), (3, 3)])
async def test_chat_request_asks_for_logprobs_when_included(
    make_provider: MakeProvider, mock_chat_url: str, top: int | None, sent: int
) -> None:
    req = request(
        message("user", text("a b")), include=("message.output_text.logprobs",), top_logprobs=top
    )

    body = await sent_body(make_provider(), req, mock_chat_url)

    assert (body["logprobs"], body["top_logprobs"]) == (True, sent)


# --- crash continuation -----------------------------------------------------------------


async def test_chat_continuation_is_an_assistant_prefill_when_enabled(
    make_provider: MakeProvider, mock_chat_url: str
) -> None:
    plain = make_provider()
    assert plain.supports_continuation is False
    provider = make_provider(continue_final_message=True)
    assert provider.supports_continuation is True
    req = request(message("user", text("hi")), continuation="Hello wo")

    body = await sent_body(provider, req, mock_chat_url)

    assert body["messages"][-1] == {"role": "assistant", "content": "Hello wo"}
    assert body["continue_final_message"] is True
    assert body["add_generation_prompt"] is False
    normal = await sent_body(provider, request(message("user", text("hi"))), mock_chat_url)
    assert "continue_final_message" not in normal

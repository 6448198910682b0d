"""The built-in `fake` model: text modes, tool calls, structured output and reasoning.

Tool-call arguments and JSON output are validated against their schemas with the
`jsonschema` package.
"""

from __future__ import annotations

import json
from typing import Any, Literal

import jsonschema
import pytest
from openai.lib._pydantic import to_strict_json_schema
from pydantic import BaseModel, Field

from tests.support.sse import lorem
from tether.errors import ConfigError, ProviderError
from tether.providers.base import (
    Delta,
    Finish,
    GenerationRequest,
    ReasoningDelta,
    TextDelta,
    ToolCallDelta,
    Usage,
)
from tether.providers.fake import REASONING, FakeProvider


def fake(**options: Any) -> FakeProvider:
    return FakeProvider.from_options("fake", options)


def user(text: str) -> dict[str, Any]:
    return {
        "id": "msg_1",
        "type": "message",
        "role": "user",
        "status": "completed",
        "content": [{"type": "input_text", "text": text}],
    }


def call(name: str = "get_weather", arguments: str = '{"city":"Paris"}') -> dict[str, Any]:
    item = {"id": "fc_1", "type": "function_call", "call_id": "call_1", "name": name}
    return item | {"arguments": arguments}


def output(value: Any) -> dict[str, Any]:
    return {"id": "fco_1", "type": "function_call_output", "call_id": "call_1", "output": value}


def request(*items: dict[str, Any], **fields: Any) -> GenerationRequest:
    return GenerationRequest(model="fake", input_items=list(items or [user("hi")]), **fields)


async def collect(provider: FakeProvider, req: GenerationRequest) -> list[Delta]:
    return [delta async for delta in provider.stream(req)]


def text_of(deltas: list[Delta]) -> str:
    return "".join(d.text for d in deltas if isinstance(d, TextDelta))


def calls_of(deltas: list[Delta]) -> list[tuple[str | None, str]]:
    """(name, arguments) per call index, in order."""
    calls: dict[int, list[Any]] = {}
    for delta in deltas:
        if isinstance(delta, ToolCallDelta):
            if delta.index not in calls:
                assert delta.name is not None, "the first delta of a call carries the name"
                calls[delta.index] = [delta.name, ""]
            else:
                assert delta.name is None
            calls[delta.index][1] += delta.arguments
    assert list(calls) == list(range(len(calls)))
    return [(name, arguments) for name, arguments in calls.values()]


def tail(deltas: list[Delta]) -> tuple[Usage, Finish]:
    usage, finish = deltas[-2:]
    assert isinstance(usage, Usage) and isinstance(finish, Finish)
    return usage, finish


def function(name: str, parameters: dict[str, Any] | None = None) -> dict[str, Any]:
    tool: dict[str, Any] = {"type": "function", "name": name, "strict": True}
    if parameters is not None:
        tool["parameters"] = parameters
    return tool


WEATHER = function(
    "get_weather",
    {
        "type": "object",
        "properties": {
            "city": {"type": "string"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            "days": {"type": "integer", "minimum": 1, "maximum": 7},
        },
        "required": ["city", "unit", "days"],
        "additionalProperties": False,
    },
)
CLOCK = function("get_time", {"type": "object", "properties": {}, "additionalProperties": False})


# --- text, as before tools existed --------------------------------------------------


async def test_fake_lorem_writes_output_tokens_words() -> None:
    deltas = await collect(fake(output_tokens=5), request(user("say hi please")))
    assert [d.text for d in deltas if isinstance(d, TextDelta)] == [
        "lorem ", "ipsum ", "dolor ", "sit ", "amet",
    ]  # fmt: skip
    assert tail(deltas) == (Usage(input_tokens=3, output_tokens=5), Finish("stop"))


async def test_fake_max_output_tokens_cuts_and_finishes_with_length() -> None:
    deltas = await collect(fake(), request(max_output_tokens=4))
    assert text_of(deltas) == lorem(4) + " "
    assert tail(deltas) == (Usage(input_tokens=1, output_tokens=4), Finish("length"))


async def test_fake_text_and_echo_modes() -> None:
    assert text_of(await collect(fake(mode="text", text="a b c"), request())) == "a b c"
    echo = await collect(fake(mode="echo"), request(user("first"), user("say this back")))
    assert text_of(echo) == "say this back"


async def test_fake_fail_after_tokens_raises_a_provider_error() -> None:
    deltas: list[Delta] = []
    with pytest.raises(ProviderError, match="after 3 tokens"):
        async for delta in fake(fail_after_tokens=3).stream(request()):
            deltas.append(delta)
    assert len(deltas) == 3


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"colour": "red"}, "unknown option 'colour'"),
        ({"mode": "poem"}, "mode must be"),
        ({"mode": "text"}, "needs a non-empty 'text'"),
        ({"auto_tool_calls": "yes"}, "auto_tool_calls must be true or false"),
        ({"reasoning": 1}, "reasoning must be true or false"),
        ({"parallel_calls": 0}, "parallel_calls must be an integer >= 1"),
        ({"parallel_calls": True}, "parallel_calls must be an integer >= 1"),
    ],
)
def test_fake_rejects_bad_options(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        fake(**options)


# --- tool calls ------------------------------------------------------------------


async def test_fake_required_calls_the_first_function_tool_with_valid_arguments() -> None:
    tools = [{"type": "web_search"}, WEATHER, CLOCK]
    deltas = await collect(fake(), request(tools=tools, tool_choice="required"))
    [(name, arguments)] = calls_of(deltas)
    assert name == "get_weather"
    assert arguments == '{"city":"lorem","unit":"celsius","days":1}'  # compact, deterministic
    jsonschema.validate(json.loads(arguments), WEATHER["parameters"])
    pieces = [d for d in deltas if isinstance(d, ToolCallDelta)]
    assert 3 <= len(pieces) <= 8
    assert not any(isinstance(d, TextDelta) for d in deltas)
    assert tail(deltas) == (Usage(input_tokens=1, output_tokens=len(pieces)), Finish("stop"))


async def test_fake_named_tool_choice_calls_that_function() -> None:
    req = request(tools=[WEATHER, CLOCK], tool_choice={"type": "function", "name": "get_time"})
    assert calls_of(await collect(fake(), req)) == [("get_time", "{}")]


async def test_fake_named_tool_choice_of_a_missing_function_fails_clearly() -> None:
    req = request(tools=[WEATHER], tool_choice={"type": "function", "name": "nope"})
    with pytest.raises(ProviderError, match="'nope', but no function tool"):
        await collect(fake(), req)


async def test_fake_auto_calls_after_a_user_message_and_answers_after_the_output() -> None:
    provider = fake(mode="text", text="It is sunny.")
    first = await collect(provider, request(user("weather?"), tools=[WEATHER]))
    assert [name for name, _ in calls_of(first)] == ["get_weather"]
    answered = request(user("weather?"), call(), output("20C"), tools=[WEATHER])
    second = await collect(provider, answered)
    assert calls_of(second) == []
    assert text_of(second) == "It is sunny."


async def test_fake_auto_tool_calls_option_off_answers_in_text() -> None:
    deltas = await collect(fake(auto_tool_calls=False), request(tools=[WEATHER]))
    assert calls_of(deltas) == []
    assert text_of(deltas) == lorem(32)
    required = request(tools=[WEATHER], tool_choice="required")
    assert len(calls_of(await collect(fake(auto_tool_calls=False), required))) == 1


@pytest.mark.parametrize("choice", ["none", {"type": "web_search"}])
async def test_fake_tool_choice_none_or_of_other_tools_answers_in_text(choice: Any) -> None:
    deltas = await collect(fake(), request(tools=[WEATHER], tool_choice=choice))
    assert calls_of(deltas) == [] and text_of(deltas) == lorem(32)


async def test_fake_without_function_tools_answers_in_text() -> None:
    deltas = await collect(fake(), request(tools=[{"type": "web_search"}], tool_choice="required"))
    assert text_of(deltas) == lorem(32)


async def test_fake_parallel_calls_cycle_over_the_tools() -> None:
    provider = fake(parallel_calls=3)
    deltas = await collect(provider, request(tools=[WEATHER, CLOCK], tool_choice="required"))
    calls = calls_of(deltas)
    assert [name for name, _ in calls] == ["get_weather", "get_time", "get_weather"]
    for name, arguments in calls:
        tool = WEATHER if name == "get_weather" else CLOCK
        jsonschema.validate(json.loads(arguments), tool["parameters"])
    serial = request(tools=[WEATHER, CLOCK], tool_choice="required", parallel_tool_calls=False)
    assert len(calls_of(await collect(provider, serial))) == 1


async def test_fake_allowed_tools_choice_calls_among_the_allowed_only() -> None:
    allowed = [{"type": "function", "name": "get_time"}]
    choice = {"type": "allowed_tools", "mode": "required", "tools": allowed}
    deltas = await collect(fake(), request(tools=[WEATHER, CLOCK], tool_choice=choice))
    assert calls_of(deltas) == [("get_time", "{}")]


async def test_fake_tool_without_parameters_gets_empty_arguments() -> None:
    deltas = await collect(fake(), request(tools=[function("ping")], tool_choice="required"))
    assert calls_of(deltas) == [("ping", "{}")]


async def test_fake_echo_mode_fills_string_arguments_with_the_user_words() -> None:
    words = {"q": {"type": "string"}, "r": {"type": "string"}}
    tool = function("search", {"type": "object", "properties": words, "required": ["q", "r"]})
    deltas = await collect(fake(mode="echo"), request(user("find cheap flights"), tools=[tool]))
    assert calls_of(deltas) == [("search", '{"q":"find","r":"cheap"}')]


class Passenger(BaseModel):
    name: str = Field(min_length=2)
    seat: Literal["aisle", "window"] | None
    age: int = Field(ge=0, le=120)


class Booking(BaseModel):
    passengers: list[Passenger] = Field(min_length=1)
    flight: str = Field(pattern=r"^[A-Z]{2}\d{3,4}$")
    notes: str | None = None


class Tree(BaseModel):
    label: str
    children: list[Tree]


@pytest.mark.parametrize("model", [Passenger, Booking, Tree], ids=lambda m: m.__name__)
async def test_fake_arguments_validate_against_pydantic_tool_schemas(
    model: type[BaseModel],
) -> None:
    for parameters in (to_strict_json_schema(model), model.model_json_schema()):
        tool = function(model.__name__.lower(), parameters)
        deltas = await collect(fake(), request(tools=[tool], tool_choice="required"))
        [(_, arguments)] = calls_of(deltas)
        jsonschema.validate(json.loads(arguments), parameters)
        model.model_validate_json(arguments)


async def test_fake_long_arguments_stream_in_at_most_eight_pieces() -> None:
    properties = {f"field_{i}": {"type": "string"} for i in range(20)}
    tool = function("big", {"type": "object", "properties": properties})
    deltas = await collect(fake(), request(tools=[tool], tool_choice="required"))
    pieces = [d.arguments for d in deltas if isinstance(d, ToolCallDelta)]
    assert len(pieces) == 8
    assert len(json.loads("".join(pieces))) == 20


async def test_fake_unsatisfiable_schema_fails_saying_which_tool() -> None:
    bad = {"type": "integer", "minimum": 3, "maximum": 1}
    tool = function("broken", {"type": "object", "properties": {"n": bad}, "required": ["n"]})
    with pytest.raises(ProviderError, match=r"arguments for the function 'broken'.*property 'n'"):
        await collect(fake(), request(tools=[tool], tool_choice="required"))


async def test_fake_max_output_tokens_cuts_arguments_too() -> None:
    req = request(tools=[WEATHER], tool_choice="required", max_output_tokens=2)
    deltas = await collect(fake(), req)
    [(_, arguments)] = calls_of(deltas)
    assert len([d for d in deltas if isinstance(d, ToolCallDelta)]) == 2
    with pytest.raises(json.JSONDecodeError):
        json.loads(arguments)
    assert tail(deltas)[1] == Finish("length")


# --- structured output -----------------------------------------------------------


async def test_fake_json_schema_output_is_a_valid_instance_streamed_in_pieces() -> None:
    schema = to_strict_json_schema(Booking)
    text_format = {"type": "json_schema", "name": "booking", "schema": schema, "strict": True}
    deltas = await collect(fake(), request(text_format=text_format))
    texts = [d.text for d in deltas if isinstance(d, TextDelta)]
    assert len(texts) > 3
    jsonschema.validate(json.loads("".join(texts)), schema)
    Booking.model_validate_json("".join(texts))
    assert tail(deltas) == (Usage(input_tokens=1, output_tokens=len(texts)), Finish("stop"))


async def test_fake_json_schema_output_after_a_tool_result() -> None:
    schema = {
        "type": "object",
        "properties": {"summary": {"type": "string"}},
        "required": ["summary"],
        "additionalProperties": False,
    }
    text_format = {"type": "json_schema", "name": "s", "schema": schema}
    items = (user("weather?"), call(), output("twenty degrees"))
    req = request(*items, tools=[WEATHER], text_format=text_format)
    deltas = await collect(fake(mode="echo"), req)
    assert json.loads(text_of(deltas)) == {"summary": "twenty"}


async def test_fake_json_object_output_wraps_the_mode_text() -> None:
    req = request(text_format={"type": "json_object"})
    deltas = await collect(fake(mode="text", text="all good here"), req)
    assert json.loads(text_of(deltas)) == {"answer": "all good here"}
    assert len([d for d in deltas if isinstance(d, TextDelta)]) == 4  # '{"answer":' + 3 words


async def test_fake_json_output_cut_by_max_output_tokens_does_not_parse() -> None:
    req = request(text_format={"type": "json_object"}, max_output_tokens=3)
    deltas = await collect(fake(), req)
    with pytest.raises(json.JSONDecodeError):
        json.loads(text_of(deltas))
    assert tail(deltas) == (Usage(input_tokens=1, output_tokens=3), Finish("length"))


# --- echo of tool results and usage ------------------------------------------------


@pytest.mark.parametrize(
    "value", ["20C and sunny", [{"type": "input_text", "text": "20C and sunny"}]]
)
async def test_fake_echo_repeats_the_latest_function_output(value: Any) -> None:
    deltas = await collect(fake(mode="echo"), request(user("weather?"), call(), output(value)))
    assert text_of(deltas) == "20C and sunny"
    # input words: "weather?" (1) + the call arguments (1) + the output (3)
    usage, _ = tail(deltas)
    assert usage.input_tokens == 5


async def test_fake_counts_instructions_as_input() -> None:
    deltas = await collect(fake(), request(user("a b"), instructions="be brief"))
    assert tail(deltas)[0].input_tokens == 4


# --- reasoning -------------------------------------------------------------------


async def test_fake_reasoning_comes_first_and_counts_as_reasoning_tokens() -> None:
    deltas = await collect(fake(reasoning=True, output_tokens=3), request())
    reasoning = [d for d in deltas if isinstance(d, ReasoningDelta)]
    assert "".join(d.text for d in reasoning) == REASONING
    assert all(d.summary_index is None for d in reasoning)
    assert deltas[: len(reasoning)] == reasoning
    assert text_of(deltas) == lorem(3)
    words = len(REASONING.split())
    assert tail(deltas)[0] == Usage(1, output_tokens=words + 3, reasoning_tokens=words)


async def test_fake_reasoning_as_summary_when_asked_and_off_at_effort_none() -> None:
    summary = await collect(fake(reasoning=True), request(reasoning={"summary": "auto"}))
    assert {d.summary_index for d in summary if isinstance(d, ReasoningDelta)} == {0}
    off = await collect(fake(reasoning=True), request(reasoning={"effort": "none"}))
    assert not any(isinstance(d, ReasoningDelta) for d in off)
    default = await collect(fake(), request(reasoning={"effort": "high"}))
    assert not any(isinstance(d, ReasoningDelta) for d in default)


async def test_fake_reasoning_then_tool_call() -> None:
    deltas = await collect(fake(reasoning=True), request(tools=[CLOCK]))
    kinds = [type(d).__name__ for d in deltas[:-2]]
    first_call = kinds.index("ToolCallDelta")
    assert set(kinds[:first_call]) == {"ReasoningDelta"}
    assert set(kinds[first_call:]) == {"ToolCallDelta"}


async def test_fake_is_deterministic() -> None:
    req = request(tools=[WEATHER, CLOCK], tool_choice="required", reasoning={"summary": "auto"})
    provider = fake(reasoning=True, parallel_calls=2)
    assert await collect(provider, req) == await collect(provider, req)

"""`tools`, `tool_choice`, `parallel_tool_calls` and `max_tool_calls` of a create body."""

from __future__ import annotations

import typing
from typing import Any

import orjson
import pytest
from openai.lib._tools import pydantic_responses_function_tool
from openai.types.responses import FunctionToolParam, ToolChoiceAllowedParam, ToolParam
from openai.types.responses.response_create_params import ToolChoice
from pydantic import BaseModel

from tests.api.test_schemas import body, parse, rejection
from tether.api.schemas import CreateRequest, parse_create_request
from tether.api.schemas.tools import HOSTED_CHOICE_TYPES, HOSTED_TOOL_TYPES
from tether.domain.response import build_response
from tether.errors import APIError, InvalidRequestError

WEATHER: FunctionToolParam = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    "strict": False,
}
STRICT_WEATHER: FunctionToolParam = {
    "type": "function",
    "name": "get_weather",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
    "strict": True,
}
HOSTED_MODEL = "upstream-model"


def parse_hosted(data: dict[str, Any]) -> CreateRequest:
    return parse_create_request(
        orjson.dumps({**data, "model": HOSTED_MODEL}),
        known_models={"fake-model", HOSTED_MODEL},
        hosted_tools={HOSTED_MODEL},
    )


def hosted_rejection(data: dict[str, Any]) -> APIError:
    with pytest.raises(APIError) as caught:
        parse_hosted(data)
    return caught.value


def tool_types(union: Any) -> set[str]:
    """Every `type` literal of the TypedDicts in an SDK union."""
    found: set[str] = set()
    for member in typing.get_args(union):
        hints = typing.get_type_hints(member) if isinstance(member, type) else {}
        literal = hints.get("type")
        while literal is not None and typing.get_origin(literal) is not typing.Literal:
            literal = typing.get_args(literal)[0]  # unwrap Required[…]
        found |= set(typing.get_args(literal)) if literal is not None else set()
    return found


# -- tools ---------------------------------------------------------------------------------


def test_tools_function_tool_is_echoed_with_every_key() -> None:
    request = parse(body(tools=[WEATHER, {"type": "function", "name": "now"}]))
    assert request.tools == [
        {**WEATHER},
        {
            "type": "function",
            "name": "now",
            "description": None,
            "parameters": None,
            "strict": None,
        },
    ]
    assert request.settings["tools"] == request.tools
    snapshot = build_response(
        response_id="resp_1",
        model=request.model,
        created_at=0,
        background=False,
        store=True,
        settings=request.settings,
    )
    assert snapshot["tools"] == request.tools


def test_tools_strict_function_tool_is_accepted() -> None:
    assert parse(body(tools=[STRICT_WEATHER])).tools[0]["strict"] is True


class Address(BaseModel):
    street: str
    city: str | None = None


class Order(BaseModel):
    """Place an order."""

    items: list[str]
    ship_to: Address


def test_tools_sdk_pydantic_function_tool_is_accepted() -> None:
    tool = pydantic_responses_function_tool(Order)
    [parsed] = parse(body(tools=[dict(tool)])).tools
    assert (parsed["name"], parsed["strict"]) == ("Order", True)
    assert parsed["parameters"] == tool["parameters"]


def test_tools_defaults_when_unset() -> None:
    request = parse(body())
    assert (request.tools, request.tool_choice) == ([], "auto")
    assert (request.parallel_tool_calls, request.max_tool_calls) == (True, None)


def test_tools_parallel_and_max_tool_calls_are_read() -> None:
    request = parse(body(parallel_tool_calls=False, max_tool_calls=3))
    assert (request.parallel_tool_calls, request.max_tool_calls) == (False, 3)
    assert request.settings["parallel_tool_calls"] is False


def function(**fields: Any) -> dict[str, Any]:
    return {"type": "function", "name": "f", **fields}


@pytest.mark.parametrize(
    ("tools", "code", "param", "phrase"),
    [
        ([1], "invalid_type", "tools[0]", "expected a tool object"),
        ([{"name": "f"}], "missing_required_parameter", "tools[0].type", "'tools[0].type'"),
        ([{"type": "plugin"}], "invalid_value", "tools[0].type",
         "Invalid value: 'plugin'. Supported values are: 'function', 'apply_patch',"),
        ([{"type": "function"}], "missing_required_parameter", "tools[0].name", "get_weather"),
        ([function(name="get weather")], "invalid_value", "tools[0].name",
         "does not match pattern"),
        ([function(name="")], "invalid_value", "tools[0].name", "does not match pattern"),
        ([function(name="f" * 65)], "string_above_max_length", "tools[0].name",
         "maximum length 64"),
        ([function(name=1)], "invalid_type", "tools[0].name", "expected a string"),
        ([function(description=1)], "invalid_type", "tools[0].description", "expected a string"),
        ([function(strict="yes")], "invalid_type", "tools[0].strict", "expected a boolean"),
        ([function(parameters="{}")], "invalid_type", "tools[0].parameters",
         "expected a JSON Schema object"),
        ([function(parameters={"type": "thing"})], "invalid_function_parameters",
         "tools[0].parameters", "Invalid schema for function 'f'"),
        ([function(parameters={"type": "object", "required": "a"})],
         "invalid_function_parameters", "tools[0].parameters", "at required"),
        ([function(extra=1)], "unknown_parameter", "tools[0].extra", "Unknown parameter"),
        ([function(), function(name="g"), function()], "invalid_value", "tools[2].name",
         "duplicate function name 'f' (also tools[0])"),
        ([function(defer_loading=True)], "unsupported_parameter", "tools[0].defer_loading",
         "Responses upstream"),
        ([function(allowed_callers=["programmatic"])], "unsupported_parameter",
         "tools[0].allowed_callers", "Responses upstream"),
        ([function(allowed_callers=["robot"])], "invalid_value", "tools[0].allowed_callers[0]",
         "'direct' and 'programmatic'"),
        ([function(output_schema={"type": "string"})], "unsupported_parameter",
         "tools[0].output_schema", "Responses upstream"),
        ([function(**{"async": True})], "unsupported_parameter", "tools[0].async",
         "Responses upstream"),
    ],
)  # fmt: skip
def test_tools_bad_tool_is_rejected(tools: list[Any], code: str, param: str, phrase: str) -> None:
    error = rejection(body(tools=tools))
    assert isinstance(error, InvalidRequestError)
    assert (error.code, error.param) == (code, param)
    assert phrase in error.message


def test_tools_no_op_upstream_keys_are_accepted_and_dropped() -> None:
    tool = function(allowed_callers=["direct"], defer_loading=False, **{"async": False})
    [parsed] = parse(body(tools=[tool])).tools
    assert set(parsed) == {"type", "name", "description", "parameters", "strict"}


def test_tools_strict_schema_problem_names_the_path() -> None:
    parameters = {
        "type": "object",
        "properties": {"address": {"type": "object", "properties": {}}},
        "required": ["address"],
        "additionalProperties": False,
    }
    error = rejection(body(tools=[function(strict=True, parameters=parameters)]))
    assert isinstance(error, InvalidRequestError)
    assert (error.code, error.param) == ("invalid_function_parameters", "tools[0].parameters")
    assert (
        "'additionalProperties' must be false for every object in strict mode at "
        "properties.address" in error.message
    )
    assert "set 'strict' to false" in error.message


def test_tools_non_strict_schema_skips_strict_rules() -> None:
    parameters = {"type": "object", "properties": {"a": {"type": "string"}}}
    assert parse(body(tools=[function(strict=False, parameters=parameters)])).tools


def test_tools_hosted_type_list_matches_the_sdk() -> None:
    assert tool_types(ToolParam) - {"function"} == HOSTED_TOOL_TYPES


def test_tools_hosted_choice_list_matches_the_sdk() -> None:
    assert tool_types(ToolChoice) - {"function", "allowed_tools"} == HOSTED_CHOICE_TYPES


@pytest.mark.parametrize("tool_type", sorted(HOSTED_TOOL_TYPES))
def test_tools_hosted_tools_are_unsupported_for_other_models(tool_type: str) -> None:
    error = rejection(body(tools=[WEATHER, {"type": tool_type}]))
    assert isinstance(error, InvalidRequestError)
    assert (error.code, error.param) == ("unsupported_parameter", "tools[1]")
    assert f"'{tool_type}'" in error.message
    assert "Responses upstream" in error.message


def test_tools_hosted_tools_pass_through_for_hosted_models() -> None:
    web: ToolParam = {"type": "web_search", "search_context_size": "low"}
    mcp: ToolParam = {"type": "mcp", "server_label": "docs", "server_url": "https://mcp.test"}
    request = parse_hosted(body(tools=[web, mcp, WEATHER]))
    assert request.tools == [web, mcp, WEATHER]


def test_tools_hosted_models_keep_upstream_function_keys() -> None:
    tool = function(defer_loading=True, output_schema={"type": "string"})
    [parsed] = parse_hosted(body(tools=[tool])).tools
    assert parsed["defer_loading"] is True
    assert parsed["output_schema"] == {"type": "string"}


def test_tools_hosted_models_still_check_function_tools() -> None:
    error = hosted_rejection(body(tools=[{"type": "web_search"}, function(name="a b")]))
    assert error.param == "tools[1].name"


def test_tools_hosted_tool_must_be_an_object_even_for_hosted_models() -> None:
    error = hosted_rejection(body(tools=["web_search"]))
    assert (error.code, error.param) == ("invalid_type", "tools[0]")


# -- tool_choice ---------------------------------------------------------------------------


@pytest.mark.parametrize("choice", ["none", "auto", "required"])
def test_tool_choice_modes_are_accepted(choice: str) -> None:
    request = parse(body(tools=[WEATHER], tool_choice=choice))
    assert request.tool_choice == choice
    assert request.settings["tool_choice"] == choice


def test_tool_choice_named_function_is_accepted() -> None:
    choice: ToolChoice = {"type": "function", "name": "get_weather"}
    request = parse(body(tools=[WEATHER], tool_choice=choice))
    assert request.tool_choice == choice == request.settings["tool_choice"]


def test_tool_choice_allowed_tools_is_accepted() -> None:
    choice: ToolChoiceAllowedParam = {
        "type": "allowed_tools",
        "mode": "required",
        "tools": [{"type": "function", "name": "get_weather"}],
    }
    assert parse(body(tools=[WEATHER, function()], tool_choice=choice)).tool_choice == choice


@pytest.mark.parametrize(
    ("fields", "code", "param", "phrase"),
    [
        ({"tool_choice": "required"}, "invalid_value", "tool_choice",
         "\"required\" makes the model call a tool, but 'tools' is empty"),
        ({"tool_choice": "required", "tools": []}, "invalid_value", "tool_choice",
         "'tools' is empty"),
        ({"tool_choice": "always"}, "invalid_value", "tool_choice",
         "Supported values are: 'none', 'auto', and 'required'."),
        ({"tool_choice": ["auto"]}, "invalid_type", "tool_choice", "a tool choice object"),
        ({"tool_choice": {"name": "f"}}, "missing_required_parameter", "tool_choice.type",
         "Missing required parameter"),
        ({"tool_choice": {"type": "function", "name": "f"}}, "invalid_value",
         "tool_choice.name", "'tools' has no function tools"),
        ({"tools": [WEATHER], "tool_choice": {"type": "function", "name": "f"}},
         "invalid_value", "tool_choice.name",
         "Invalid value: 'f'. Supported values are: 'get_weather'."),
        ({"tools": [WEATHER], "tool_choice": {"type": "function"}},
         "missing_required_parameter", "tool_choice.name", "Name one of the function tools"),
        ({"tools": [WEATHER], "tool_choice": {"type": "function", "name": "get_weather",
                                              "x": 1}},
         "unknown_parameter", "tool_choice.x", "Unknown parameter"),
        ({"tool_choice": {"type": "magic"}}, "invalid_value", "tool_choice.type",
         "Supported values are: 'function', 'allowed_tools',"),
        ({"tool_choice": {"type": "web_search_preview"}}, "unsupported_parameter",
         "tool_choice", "Responses upstream"),
        ({"tool_choice": {"type": "mcp", "server_label": "docs"}}, "unsupported_parameter",
         "tool_choice", "'mcp'"),
        ({"tools": [WEATHER], "tool_choice": {"type": "allowed_tools", "tools": []}},
         "missing_required_parameter", "tool_choice.mode", "Missing required parameter"),
        ({"tools": [WEATHER], "tool_choice": {"type": "allowed_tools", "mode": "any",
                                              "tools": []}},
         "invalid_value", "tool_choice.mode", "'auto' and 'required'"),
        ({"tools": [WEATHER], "tool_choice": {"type": "allowed_tools", "mode": "auto",
                                              "tools": []}},
         "empty_array", "tool_choice.tools", "List the tools the model may call"),
        ({"tools": [WEATHER], "tool_choice": {"type": "allowed_tools", "mode": "auto",
                                              "tools": [{"type": "function", "name": "x"}]}},
         "invalid_value", "tool_choice.tools[0].name", "Invalid value: 'x'."),
        ({"tools": [WEATHER], "tool_choice": {"type": "allowed_tools", "mode": "auto",
                                              "tools": [{"type": "web_search"}]}},
         "unsupported_parameter", "tool_choice.tools[0]", "'web_search'"),
        ({"tools": [WEATHER], "tool_choice": {"type": "allowed_tools", "mode": "auto",
                                              "tools": [{"type": "bogus"}]}},
         "invalid_value", "tool_choice.tools[0].type", "Invalid value: 'bogus'."),
    ],
)  # fmt: skip
def test_tool_choice_bad_choice_is_rejected(
    fields: dict[str, Any], code: str, param: str, phrase: str
) -> None:
    error = rejection(body(**fields))
    assert isinstance(error, InvalidRequestError)
    assert (error.code, error.param) == (code, param)
    assert phrase in error.message


@pytest.mark.parametrize(
    "choice",
    [
        {"type": "web_search_preview"},
        {"type": "mcp", "server_label": "docs", "name": "search"},
        {"type": "custom", "name": "grammar_tool"},
        {"type": "allowed_tools", "mode": "auto", "tools": [{"type": "image_generation"}]},
    ],
)
def test_tool_choice_hosted_choices_pass_for_hosted_models(choice: dict[str, Any]) -> None:
    tools = [{"type": "web_search_preview"}, {"type": "image_generation"}]
    assert parse_hosted(body(tools=tools, tool_choice=choice)).tool_choice == choice


def test_tool_choice_may_name_a_function_inside_a_namespace_for_hosted_models() -> None:
    namespace = {"type": "namespace", "name": "crm", "description": "CRM", "tools": [WEATHER]}
    choice = {"type": "function", "name": "get_weather"}
    assert parse_hosted(body(tools=[namespace], tool_choice=choice)).tool_choice == choice

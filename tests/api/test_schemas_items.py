"""Input items beyond plain messages: tool calls and outputs, reasoning, references,
images and files, and their normalized shape."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from openai.types.responses import (
    EasyInputMessageParam,
    ResponseFunctionToolCallParam,
    ResponseInputImageParam,
    ResponseReasoningItemParam,
)
from openai.types.responses.response_input_item_param import FunctionCallOutput, ItemReference

from tests.api.test_schemas import body, message, parse, rejection
from tether.api.schemas import CreateRequest, parse_create_request
from tether.api.schemas.items import HOSTED_ITEMS, ITEM_TYPES
from tether.domain.items import normalize_item
from tether.errors import APIError, InvalidRequestError

PNG = "data:image/png;base64,iVBORw0KGgo="
PDF = "data:application/pdf;base64,JVBERi0xLjQ="
CALL: ResponseFunctionToolCallParam = {
    "type": "function_call",
    "call_id": "call_1",
    "name": "get_weather",
    "arguments": '{"city": "Paris"}',
}
OUTPUT: FunctionCallOutput = {"type": "function_call_output", "call_id": "call_1", "output": "18C"}


def parse_input(*items: Any, hosted: bool = False) -> list[dict[str, Any]]:
    data = orjson.dumps(body(input=list(items)))
    request: CreateRequest = parse_create_request(
        data, known_models={"fake-model"}, hosted_tools={"fake-model"} if hosted else ()
    )
    return request.input_items


def input_rejection(*items: Any, hosted: bool = False) -> InvalidRequestError:
    with pytest.raises(APIError) as caught:
        parse_input(*items, hosted=hosted)
    assert isinstance(caught.value, InvalidRequestError)
    return caught.value


# -- tool calls, reasoning, references ----------------------------------------------------


def test_items_function_call_round_trip_is_normalized() -> None:
    user: EasyInputMessageParam = {"role": "user", "content": "Weather in Paris?"}
    items = parse_input(user, CALL, OUTPUT)
    call, output = items[1], items[2]
    assert call == {**CALL, "id": call["id"], "status": "completed"}
    assert call["id"].startswith("fc_")
    assert output == {**OUTPUT, "id": output["id"], "status": "completed"}
    assert output["id"].startswith("fco_")


def test_items_function_call_keeps_given_id_status_and_extras() -> None:
    call = {**CALL, "id": "fc_1", "status": "incomplete", "namespace": "crm"}
    call |= {"caller": {"type": "direct"}, "async": False}
    [item] = parse_input(call)
    assert item == call


def test_items_function_call_output_takes_content_parts() -> None:
    parts = [
        {"type": "input_text", "text": "Here is the chart"},
        {"type": "input_image", "image_url": PNG, "detail": "low"},
        {"type": "input_file", "file_data": PDF, "filename": "report.pdf"},
    ]
    [item] = parse_input({**OUTPUT, "output": parts, "id": "fco_1"})
    assert item["output"] == parts
    assert item["id"] == "fco_1"


def test_items_reasoning_item_is_accepted() -> None:
    reasoning: ResponseReasoningItemParam = {
        "type": "reasoning",
        "id": "rs_1",
        "summary": [{"type": "summary_text", "text": "Thought about it."}],
        "content": [{"type": "reasoning_text", "text": "Step one."}],
        "encrypted_content": "gAAAA",
        "status": "completed",
    }
    [item] = parse_input(reasoning)
    assert item == reasoning


def test_items_reasoning_item_gets_an_id() -> None:
    [item] = parse_input({"type": "reasoning", "summary": []})
    assert item["id"].startswith("rs_")
    assert item["summary"] == []


@pytest.mark.parametrize(
    "reference",
    [{"type": "item_reference", "id": "msg_1"}, {"id": "msg_1"}],
)
def test_items_item_reference_is_kept_as_is(reference: ItemReference) -> None:
    [item] = parse_input(reference)
    assert item == {"type": "item_reference", "id": "msg_1"}


def test_items_each_type_gets_its_own_id_prefix() -> None:
    assert normalize_item({"type": "web_search_call", "status": "completed"})["id"].startswith(
        "item_"
    )
    assert normalize_item({"type": "message", "role": "user", "content": "x"})["id"].startswith(
        "msg_"
    )


@pytest.mark.parametrize(
    ("item", "code", "param", "phrase"),
    [
        ({"type": "function_call", "name": "f", "arguments": "{}"}, "missing_required_parameter",
         "input[0].call_id", "'input[0].call_id'"),
        ({**CALL, "arguments": {"city": "Paris"}}, "invalid_type", "input[0].arguments",
         "expected a string"),
        ({**CALL, "status": "done"}, "invalid_value", "input[0].status", "'completed'"),
        ({**CALL, "output": "x"}, "unknown_parameter", "input[0].output", "Unknown parameter"),
        ({**CALL, "caller": {"type": "program"}}, "missing_required_parameter",
         "input[0].caller.caller_id", "Missing required parameter"),
        ({"type": "function_call_output", "call_id": "c"}, "missing_required_parameter",
         "input[0].output", "Send the function's result as a string."),
        ({**OUTPUT, "output": 42}, "invalid_type", "input[0].output",
         "expected a string or an array of content parts"),
        ({**OUTPUT, "output": [{"type": "output_text", "text": "x"}]}, "invalid_value",
         "input[0].output[0].type",
         "Supported values are: 'input_text', 'input_image', and 'input_file'."),
        ({"type": "reasoning"}, "missing_required_parameter", "input[0].summary",
         "summary_text"),
        ({"type": "reasoning", "summary": [{"type": "reasoning_text", "text": "x"}]},
         "invalid_value", "input[0].summary[0].type", "Supported values are: 'summary_text'."),
        ({"type": "reasoning", "summary": [], "content": [{"type": "reasoning_text"}]},
         "missing_required_parameter", "input[0].content[0].text", "Missing required"),
        ({"type": "reasoning", "summary": ["x"]}, "invalid_type", "input[0].summary[0]",
         "expected a summary_text object"),
        ({"type": "reasoning", "summary": [], "encrypted_content": 1}, "invalid_type",
         "input[0].encrypted_content", "expected a string"),
        ({"type": "item_reference"}, "missing_required_parameter", "input[0].id",
         "Name the item to reference."),
        ({"type": "item_reference", "id": "msg_1", "role": "user"}, "unknown_parameter",
         "input[0].role", "Unknown parameter"),
        ({"type": "summary"}, "invalid_value", "input[0].type", "Invalid value: 'summary'."),
    ],
)  # fmt: skip
def test_items_bad_item_is_rejected(
    item: dict[str, Any], code: str, param: str, phrase: str
) -> None:
    error = input_rejection(item)
    assert (error.code, error.param) == (code, param)
    assert phrase in error.message


def test_items_duplicate_ids_are_rejected() -> None:
    error = input_rejection(
        message("user", "a", id="msg_1"), CALL, message("user", "b", id="msg_1")
    )
    assert (error.code, error.param) == ("invalid_value", "input[2].id")
    assert "Duplicate item found with id 'msg_1' (input[0] and input[2])" in error.message


def test_items_references_may_repeat_an_id() -> None:
    items = parse_input({"id": "msg_1"}, {"type": "item_reference", "id": "msg_1"})
    assert [item["id"] for item in items] == ["msg_1", "msg_1"]


# -- hosted-tool items -----------------------------------------------------------------------


def test_items_type_lists_cover_the_sdk_input_items() -> None:
    import typing

    from openai.types.responses import ResponseInputItemParam

    sdk_types: set[str] = set()
    for member in typing.get_args(ResponseInputItemParam):
        literal = typing.get_type_hints(member).get("type")
        while literal is not None and typing.get_origin(literal) is not typing.Literal:
            literal = typing.get_args(literal)[0]  # unwrap Optional[…]
        sdk_types |= set(typing.get_args(literal))
    assert sdk_types == set(ITEM_TYPES) | HOSTED_ITEMS


@pytest.mark.parametrize("item_type", sorted(HOSTED_ITEMS))
def test_items_hosted_items_are_unsupported_for_other_models(item_type: str) -> None:
    error = input_rejection(message("user", "hi"), {"type": item_type, "id": "x_1"})
    assert (error.code, error.param) == ("unsupported_parameter", "input[1]")
    assert f"'{item_type}'" in error.message
    assert "Responses upstream" in error.message


def test_items_hosted_items_pass_through_for_hosted_models() -> None:
    search = {"type": "web_search_call", "id": "ws_1", "status": "completed", "action": {}}
    output = {"type": "computer_call_output", "call_id": "c", "output": {"type": "x"}}
    items = parse_input(message("user", "hi"), search, output, hosted=True)
    assert items[1] == search
    assert items[2]["id"].startswith("item_")
    assert {k: v for k, v in items[2].items() if k != "id"} == output


# -- images and files --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("part", "expected"),
    [
        ({"type": "input_image", "image_url": "https://example.com/cat.png"},
         {"type": "input_image", "image_url": "https://example.com/cat.png", "detail": "auto"}),
        ({"type": "input_image", "image_url": PNG, "detail": "original"},
         {"type": "input_image", "image_url": PNG, "detail": "original"}),
        ({"type": "input_image", "image_url": PNG, "file_id": None},
         {"type": "input_image", "image_url": PNG, "detail": "auto"}),
        ({"type": "input_file", "file_data": PDF, "filename": "a.pdf"},
         {"type": "input_file", "file_data": PDF, "filename": "a.pdf"}),
        ({"type": "input_file", "file_data": "JVBERi0xLjQ=", "filename": "a.pdf",
          "detail": "high"},
         {"type": "input_file", "file_data": "JVBERi0xLjQ=", "filename": "a.pdf",
          "detail": "high"}),
        ({"type": "input_file", "file_url": "https://example.com/a.pdf"},
         {"type": "input_file", "file_url": "https://example.com/a.pdf"}),
        ({"type": "input_file", "file_url": "https://example.com/a", "filename": "a.pdf"},
         {"type": "input_file", "file_url": "https://example.com/a", "filename": "a.pdf"}),
    ],
)  # fmt: skip
def test_items_image_and_file_parts_are_accepted(
    part: dict[str, Any], expected: dict[str, Any]
) -> None:
    [item] = parse_input(message("user", [{"type": "input_text", "text": "See:"}, part]))
    assert item["content"][1] == expected


def test_items_sdk_image_param_is_accepted() -> None:
    image: ResponseInputImageParam = {"type": "input_image", "image_url": PNG, "detail": "high"}
    [item] = parse_input(message("user", [image]))
    assert item["content"] == [image]


@pytest.mark.parametrize(
    ("part", "code", "param", "phrase"),
    [
        ({"type": "input_image"}, "missing_required_parameter", "input[0].content[0].image_url",
         "Send an http(s) URL or a data URL"),
        ({"type": "input_image", "image_url": "ftp://x/y.png"}, "invalid_value",
         "input[0].content[0].image_url", "expected an http(s) URL or a base64 data URL"),
        ({"type": "input_image", "image_url": "https://"}, "invalid_value",
         "input[0].content[0].image_url", "http(s) URL"),
        ({"type": "input_image", "image_url": PDF}, "invalid_value",
         "input[0].content[0].image_url", "data:image/png;base64"),
        ({"type": "input_image", "image_url": "data:image/png;base64,"}, "invalid_value",
         "input[0].content[0].image_url", "data URL"),
        ({"type": "input_image", "image_url": PNG, "detail": "max"}, "invalid_value",
         "input[0].content[0].detail", "'low', 'high', 'auto', and 'original'"),
        ({"type": "input_image", "image_url": PNG, "url": PNG}, "unknown_parameter",
         "input[0].content[0].url", "Unknown parameter"),
        ({"type": "input_file", "filename": "a.pdf"}, "missing_required_parameter",
         "input[0].content[0].file_data", "or as 'file_url'"),
        ({"type": "input_file", "file_data": PDF}, "missing_required_parameter",
         "input[0].content[0].filename", "Name the file"),
        ({"type": "input_file", "file_data": "not base64!", "filename": "a"}, "invalid_value",
         "input[0].content[0].file_data", "not base64"),
        ({"type": "input_file", "file_data": "data:text/plain,hi", "filename": "a"},
         "invalid_value", "input[0].content[0].file_data", "base64 data URL"),
        ({"type": "input_file", "file_data": "", "filename": "a"}, "empty_string",
         "input[0].content[0].file_data", "empty string"),
        ({"type": "input_file", "file_data": PDF, "filename": "a", "file_url": "https://a.b"},
         "invalid_value", "input[0].content[0]", "either 'file_data' or 'file_url', not both"),
        ({"type": "input_file", "file_url": "file:///etc/passwd"}, "invalid_value",
         "input[0].content[0].file_url", "http(s) URL"),
        ({"type": "input_file", "file_url": "https://a.b/c", "detail": "original"},
         "invalid_value", "input[0].content[0].detail", "'auto', 'low', and 'high'"),
    ],
)  # fmt: skip
def test_items_bad_image_or_file_part_is_rejected(
    part: dict[str, Any], code: str, param: str, phrase: str
) -> None:
    error = input_rejection(message("user", [part]))
    assert (error.code, error.param) == (code, param)
    assert phrase in error.message


@pytest.mark.parametrize("role", ["system", "developer"])
def test_items_system_and_developer_take_only_text(role: str) -> None:
    error = input_rejection(message(role, [{"type": "input_file", "file_url": "https://a.b/c"}]))
    assert (error.code, error.param) == ("invalid_value", "input[0].content[0].type")
    assert f"A message with role '{role}' takes only these part types." in error.message


def test_items_assistant_history_with_tool_calls_parses() -> None:
    request = parse(
        body(
            input=[
                message("user", "Weather?"),
                {"type": "reasoning", "id": "rs_1", "summary": []},
                CALL,
                OUTPUT,
                message("assistant", [{"type": "output_text", "text": "18C"}], id="msg_2"),
                message("user", "Thanks"),
            ]
        )
    )
    kinds = [item["type"] for item in request.input_items]
    assert kinds == [
        "message",
        "reasoning",
        "function_call",
        "function_call_output",
        "message",
        "message",
    ]
    assert all("id" in item for item in request.input_items)


def test_items_bad_item_type_lists_known_types() -> None:
    error = rejection(body(input=[{"type": "chat", "role": "user", "content": "x"}]))
    assert error.param == "input[0].type"
    assert "'function_call_output'" in error.message

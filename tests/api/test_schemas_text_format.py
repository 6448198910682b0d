"""`text.format` (json_schema, json_object) and the `json_object` input rule."""

from __future__ import annotations

from typing import Any

import pytest
from openai.lib._parsing._responses import type_to_text_format_param
from openai.types.responses import (
    ResponseFormatTextJSONSchemaConfig,
    ResponseFormatTextJSONSchemaConfigParam,
)
from pydantic import BaseModel

from tests.api.test_schemas import body, parse, rejection
from tether.api.schemas import JSON_MENTION_MESSAGE, require_json_mention
from tether.domain.items import normalize_input
from tether.errors import InvalidRequestError

SCHEMA = {
    "type": "object",
    "properties": {"answer": {"type": "string"}},
    "required": ["answer"],
    "additionalProperties": False,
}


def json_schema(**fields: Any) -> dict[str, Any]:
    return {"type": "json_schema", "name": "answer", "schema": SCHEMA, **fields}


def test_text_format_json_schema_is_echoed_with_every_sdk_key() -> None:
    fmt: ResponseFormatTextJSONSchemaConfigParam = {
        "type": "json_schema",
        "name": "answer",
        "schema": SCHEMA,
        "strict": True,
        "description": "The answer.",
    }
    request = parse(body(text={"format": fmt, "verbosity": "high"}))
    assert request.text_format == fmt
    assert request.settings["text"] == {"format": fmt, "verbosity": "high"}
    echoed = ResponseFormatTextJSONSchemaConfig.model_validate(request.text_format)
    assert echoed.schema_ == SCHEMA


def test_text_format_json_schema_fills_missing_keys_with_null() -> None:
    request = parse(body(text={"format": json_schema()}))
    assert request.text_format == {**json_schema(), "description": None, "strict": None}
    keys = {
        field.alias or name
        for name, field in ResponseFormatTextJSONSchemaConfig.model_fields.items()
    }
    assert set(request.text_format) == keys


def test_text_format_json_object_is_accepted() -> None:
    request = parse(body(text={"format": {"type": "json_object"}}))
    assert request.text_format == {"type": "json_object"}
    assert request.settings["text"]["format"] == {"type": "json_object"}


@pytest.mark.parametrize("text", [None, {}, {"format": {"type": "text"}}])
def test_text_format_plain_text_has_no_text_format(text: Any) -> None:
    assert parse(body(text=text)).text_format is None


class Step(BaseModel):
    explanation: str
    output: str


class Solution(BaseModel):
    steps: list[Step]
    final_answer: str | None


def test_text_format_sdk_pydantic_format_is_accepted() -> None:
    fmt = type_to_text_format_param(Solution)
    request = parse(body(text={"format": fmt}))
    assert request.text_format is not None
    assert (request.text_format["name"], request.text_format["strict"]) == ("Solution", True)


@pytest.mark.parametrize(
    ("fmt", "code", "param", "phrase"),
    [
        ({"type": "json_schema", "schema": SCHEMA}, "missing_required_parameter",
         "text.format.name", "Missing required parameter: 'text.format.name'."),
        (json_schema(name="my answer"), "invalid_value", "text.format.name",
         "does not match pattern"),
        (json_schema(name="x" * 65), "string_above_max_length", "text.format.name",
         "maximum length 64"),
        ({"type": "json_schema", "name": "a"}, "missing_required_parameter",
         "text.format.schema", "Missing required parameter: 'text.format.schema'."),
        (json_schema(schema="{}"), "invalid_type", "text.format.schema", "expected an object"),
        (json_schema(schema={"type": "object", "properties": []}), "invalid_json_schema",
         "text.format.schema", "Invalid schema for response format 'answer'"),
        (json_schema(strict="true"), "invalid_type", "text.format.strict",
         "expected a boolean"),
        (json_schema(description=5), "invalid_type", "text.format.description",
         "expected a string"),
        (json_schema(json_schema={}), "unknown_parameter", "text.format.json_schema",
         "Unknown parameter"),
        ({"type": "json_object", "schema": SCHEMA}, "unknown_parameter", "text.format.schema",
         "Unknown parameter"),
        ({"type": "xml"}, "invalid_value", "text.format.type",
         "Supported values are: 'text', 'json_schema', and 'json_object'."),
        (json_schema(strict=True, schema={"type": "object", "properties": {"a": {}}}),
         "invalid_json_schema", "text.format.schema",
         "'additionalProperties' must be false for every object in strict mode at the root"),
        (json_schema(strict=True, schema={"anyOf": [SCHEMA]}), "invalid_json_schema",
         "text.format.schema", "the root schema must be an object"),
    ],
)  # fmt: skip
def test_text_format_bad_format_is_rejected(
    fmt: dict[str, Any], code: str, param: str, phrase: str
) -> None:
    error = rejection(body(text={"format": fmt}))
    assert isinstance(error, InvalidRequestError)
    assert (error.code, error.param) == (code, param)
    assert phrase in error.message


def test_text_format_non_strict_schema_skips_strict_rules() -> None:
    loose = {"type": "object", "properties": {"a": {"type": "string"}}}
    assert parse(body(text={"format": json_schema(schema=loose, strict=False)})).text_format


def test_text_format_json_object_rule_is_left_to_the_api_layer() -> None:
    request = parse(body(input="Hello", text={"format": {"type": "json_object"}}))
    assert request.text_format == {"type": "json_object"}


# -- require_json_mention ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "instructions"),
    [
        ("Answer in JSON please", None),
        ("hello", "Reply with a Json object."),
        (
            [{"role": "assistant", "content": "I speak json"}, {"role": "user", "content": "ok"}],
            None,
        ),
        ([{"role": "user", "content": [{"type": "input_text", "text": "give me JSON"}]}], None),
    ],
)
def test_json_mention_found_in_messages_or_instructions(
    raw: str | list[dict[str, Any]], instructions: str | None
) -> None:
    require_json_mention(normalize_input(raw), instructions)


def test_json_mention_accepts_raw_string_content() -> None:
    require_json_mention([{"type": "message", "role": "user", "content": "JSON!"}], None)


@pytest.mark.parametrize(
    "items",
    [
        [],
        normalize_input("Hello"),
        [{"type": "function_call_output", "call_id": "c", "output": '{"json": true}'}],
        [{"type": "function_call", "call_id": "c", "name": "json", "arguments": "{}"}],
    ],
)
def test_json_mention_missing_is_rejected(items: list[dict[str, Any]]) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        require_json_mention(items, "Be brief.")
    assert caught.value.param == "input"
    assert caught.value.message == (
        "Response input messages must contain the word 'json' in some form to use "
        "'text.format' of type 'json_object'."
    )
    assert caught.value.message == JSON_MENTION_MESSAGE

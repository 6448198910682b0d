"""Request validation: every rule of `tether.api.schemas`, bad inputs and happy paths."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from tether.api.schemas import (
    CreateRequest,
    ListQuery,
    RetrieveQuery,
    parse_create_request,
    parse_list_query,
    parse_retrieve_query,
)
from tether.domain.response import ECHO_DEFAULTS, build_response
from tether.errors import APIError, InvalidRequestError, NotFoundError

MODELS = frozenset({"fake-model"})
OMIT = object()


def body(**fields: Any) -> dict[str, Any]:
    """A valid minimal body with `fields` added; a field set to OMIT is removed."""
    data: dict[str, Any] = {"model": "fake-model", "input": "Hello", **fields}
    return {key: value for key, value in data.items() if value is not OMIT}


def parse(data: dict[str, Any] | bytes) -> CreateRequest:
    raw = data if isinstance(data, bytes) else orjson.dumps(data)
    return parse_create_request(raw, known_models=MODELS)


def rejection(data: dict[str, Any] | bytes) -> APIError:
    with pytest.raises(APIError) as caught:
        parse(data)
    return caught.value


def message(role: str, content: Any, **extra: Any) -> dict[str, Any]:
    return {"role": role, "content": content, **extra}


# -- happy paths -------------------------------------------------------------------------


def test_create_string_input_uses_defaults() -> None:
    request = parse(body())
    assert request.model == "fake-model"
    assert request.stream is False
    assert request.background is False
    assert request.store is True
    assert request.include_obfuscation is True
    assert request.instructions is None
    assert request.max_output_tokens is None
    assert request.temperature is None
    assert request.top_p is None
    assert request.settings == {}
    [item] = request.input_items
    assert item["type"] == "message"
    assert item["role"] == "user"
    assert item["status"] == "completed"
    assert item["id"].startswith("msg_")
    assert item["content"] == [{"type": "input_text", "text": "Hello"}]


def test_create_message_list_with_history_is_normalized() -> None:
    conversation = [
        message("system", "Be brief."),
        message("developer", [{"type": "input_text", "text": "Answer in French."}]),
        message("user", "Hi", type="message"),
        message("assistant", "Bonjour", phase="final_answer"),
        message(
            "assistant",
            [{"type": "output_text", "text": "A"}, {"type": "refusal", "refusal": "No."}],
            id="msg_prev",
            status="completed",
            type="message",
        ),
        message("user", [{"type": "input_text", "text": "Again"}], type=None, phase=None),
    ]
    request = parse(body(input=conversation))
    items = request.input_items
    assert [item["role"] for item in items] == [
        "system",
        "developer",
        "user",
        "assistant",
        "assistant",
        "user",
    ]
    assert items[0]["content"] == [{"type": "input_text", "text": "Be brief."}]
    assert items[3]["content"] == [{"type": "output_text", "text": "Bonjour", "annotations": []}]
    assert items[3]["phase"] == "final_answer"
    assert items[4]["id"] == "msg_prev"
    assert items[4]["content"] == [
        {"type": "output_text", "text": "A", "annotations": []},
        {"type": "refusal", "refusal": "No."},
    ]
    assert all(item["status"] == "completed" for item in items)


def test_create_streaming_background_and_obfuscation() -> None:
    request = parse(
        body(
            stream=True, background=True, store=True, stream_options={"include_obfuscation": False}
        )
    )
    assert (request.stream, request.background, request.store) == (True, True, True)
    assert request.include_obfuscation is False


def test_create_nulls_mean_unset() -> None:
    nulls = {name: None for name in ("stream", "background", "store", "stream_options")}
    nulls |= {
        name: None
        for name in ECHO_DEFAULTS
        if name not in ("frequency_penalty", "presence_penalty")
    }
    nulls |= {"include": None, "prompt_cache_options": None}
    request = parse(body(**nulls))
    assert (request.stream, request.background, request.store) == (False, False, True)
    assert request.settings == {}


def test_create_empty_unsupported_features_mean_unset() -> None:
    request = parse(
        body(
            tools=[],
            include=[],
            prompt={},
            context_management=[],
            moderation={},
            tool_choice="none",
        )
    )
    assert request.settings == {"tools": [], "tool_choice": "none"}
    assert (request.tools, request.tool_choice, request.include) == ([], "none", ())


def test_create_settings_echo_validated_values() -> None:
    fields: dict[str, Any] = {
        "instructions": "Be kind.",
        "max_output_tokens": 16,
        "max_tool_calls": 0,
        "metadata": {"k": "v"},
        "parallel_tool_calls": False,
        "prompt_cache_key": "key",
        "prompt_cache_retention": "24h",
        "prompt_cache_options": {"mode": "explicit", "ttl": "12h", "prewarm": False},
        "reasoning": {"effort": "low"},
        "safety_identifier": "user-1",
        "service_tier": "flex",
        "temperature": 2,
        "text": {"verbosity": "low"},
        "tool_choice": "auto",
        "top_logprobs": 20,
        "top_p": 0,
        "truncation": "auto",
        "user": "alice",
    }
    request = parse(body(**fields))
    assert request.settings == {
        **fields,
        "temperature": 2.0,
        "top_p": 0.0,
        "reasoning": {"effort": "low", "summary": None},
        "text": {"format": {"type": "text"}, "verbosity": "low"},
    }
    assert request.instructions == "Be kind."
    assert request.max_output_tokens == 16
    assert request.temperature == 2.0
    assert request.top_p == 0.0
    snapshot = build_response(
        response_id="resp_1",
        model=request.model,
        created_at=0,
        background=False,
        store=True,
        settings=request.settings,
    )
    assert snapshot["service_tier"] == "flex"
    assert snapshot["metadata"] == {"k": "v"}
    assert snapshot["tools"] == []


@pytest.mark.parametrize("text", [{}, {"format": {"type": "text"}}, {"verbosity": None}])
def test_create_text_defaults_are_echoed_whole(text: dict[str, Any]) -> None:
    assert parse(body(text=text)).settings["text"] == {
        "format": {"type": "text"},
        "verbosity": "medium",
    }


def test_create_reasoning_echoes_every_given_key() -> None:
    reasoning = {"effort": "xhigh", "summary": "detailed", "context": "auto", "mode": "pro"}
    assert parse(body(reasoning=reasoning)).settings["reasoning"] == reasoning


@pytest.mark.parametrize("field", ["max_output_tokens", "top_logprobs", "max_tool_calls"])
def test_create_integer_fields_accept_integers(field: str) -> None:
    assert parse(body(**{field: 20})).settings[field] == 20


def test_create_metadata_at_the_limits_is_accepted() -> None:
    metadata = {f"{i:0>64}": "v" * 512 for i in range(16)}
    assert parse(body(metadata=metadata)).settings["metadata"] == metadata


# -- body and unknown fields -------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "phrase"),
    [
        (b"", "not valid JSON"),
        (b"{", "not valid JSON"),
        (b"\xff", "not valid JSON"),
        (b"[1, 2]", "an array, not an object"),
        (b'"text"', "a string, not an object"),
        (b"null", "null, not an object"),
    ],
)
def test_create_body_must_be_a_json_object(raw: bytes, phrase: str) -> None:
    error = rejection(raw)
    assert isinstance(error, InvalidRequestError)
    assert error.param is None
    assert "We could not parse the JSON body of your request" in error.message
    assert "Content-Type: application/json" in error.message
    assert phrase in error.message


def test_create_unknown_field_is_rejected() -> None:
    error = rejection(body(foo=1))
    assert isinstance(error, InvalidRequestError)
    assert (error.code, error.param, error.message) == (
        "unknown_parameter",
        "foo",
        "Unknown parameter: 'foo'.",
    )


@pytest.mark.parametrize(
    "field",
    [
        "include", "tools", "tool_choice", "text", "reasoning", "prompt", "conversation",
        "previous_response_id", "context_management", "moderation", "prompt_cache_options",
        "stream_options", "service_tier", "user", "safety_identifier", "prompt_cache_key",
        "prompt_cache_retention", "top_logprobs", "truncation", "max_tool_calls",
        "parallel_tool_calls", "metadata", "background_options", "access_programs", "image",
    ],
)  # fmt: skip
def test_create_openai_fields_are_never_unknown(field: str) -> None:
    error = rejection(body(**{field: -1}))  # a wrong value for every field
    assert error.code != "unknown_parameter"
    assert error.param == field


def test_create_known_fields_cover_the_sdk_params() -> None:
    from openai.types.responses.response_create_params import ResponseCreateParamsBase

    from tether.api.schemas.create import KNOWN_FIELDS

    assert set(ResponseCreateParamsBase.__annotations__) | {"stream"} <= KNOWN_FIELDS


# -- wrong types -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "param", "phrase"),
    [
        ({"temperature": "hot"}, "temperature",
         "Invalid type for 'temperature': expected a number, but got a string instead."),
        ({"temperature": True}, "temperature", "expected a number, but got a boolean"),
        ({"top_p": [1]}, "top_p", "expected a number, but got an array"),
        ({"max_output_tokens": True}, "max_output_tokens",
         "expected an integer, but got a boolean"),
        ({"max_output_tokens": 100.0}, "max_output_tokens",
         "expected an integer, but got a decimal number"),
        ({"top_logprobs": "3"}, "top_logprobs", "expected an integer, but got a string"),
        ({"max_tool_calls": 1.5}, "max_tool_calls", "expected an integer"),
        ({"model": 1}, "model", "expected a string, but got an integer"),
        ({"input": 5}, "input", "expected a string or an array of input items"),
        ({"input": None}, "input", "but got null instead"),
        ({"model": None}, "model", "expected a string, but got null"),
        ({"instructions": 1}, "instructions", "expected a string"),
        ({"stream": "true"}, "stream", "expected a boolean, but got a string"),
        ({"stream": 1}, "stream", "expected a boolean, but got an integer"),
        ({"background": 0}, "background", "expected a boolean"),
        ({"store": "no"}, "store", "expected a boolean"),
        ({"parallel_tool_calls": 1}, "parallel_tool_calls", "expected a boolean"),
        ({"metadata": []}, "metadata", "expected an object, but got an array"),
        ({"metadata": {"a": 1}}, "metadata.a", "expected a string, but got an integer"),
        ({"user": None, "prompt_cache_key": 5}, "prompt_cache_key", "expected a string"),
        ({"user": 5}, "user", "expected a string"),
        ({"safety_identifier": {}}, "safety_identifier", "expected a string"),
        ({"service_tier": 1}, "service_tier", "expected one of"),
        ({"truncation": False}, "truncation", "expected one of 'auto' and 'disabled'"),
        ({"reasoning": "high"}, "reasoning", "expected an object"),
        ({"reasoning": {"effort": 3}}, "reasoning.effort", "expected one of"),
        ({"text": "plain"}, "text", "expected an object"),
        ({"text": {"format": "text"}}, "text.format", "expected an object"),
        ({"text": {"format": {"type": 1}}}, "text.format.type", "expected a string"),
        ({"tools": {}}, "tools", "expected an array"),
        ({"tool_choice": 1}, "tool_choice", "expected one of"),
        ({"include": "x"}, "include", "expected an array"),
        ({"previous_response_id": 1}, "previous_response_id", "expected a string"),
        ({"conversation": 1}, "conversation", "expected a string or an object"),
        ({"prompt": "p"}, "prompt", "expected an object"),
        ({"context_management": {}}, "context_management", "expected an array"),
        ({"moderation": "m"}, "moderation", "expected an object"),
        ({"prompt_cache_options": []}, "prompt_cache_options", "expected an object"),
        ({"prompt_cache_options": {"prewarm": "yes"}}, "prompt_cache_options.prewarm",
         "expected a boolean"),
        ({"prompt_cache_retention": 24}, "prompt_cache_retention", "expected one of"),
        ({"stream": True, "stream_options": True}, "stream_options", "expected an object"),
        ({"stream": True, "stream_options": {"include_obfuscation": "no"}},
         "stream_options.include_obfuscation", "expected a boolean"),
    ],
)  # fmt: skip
def test_create_wrong_type_is_invalid_type(fields: dict[str, Any], param: str, phrase: str) -> None:
    error = rejection(body(**fields))
    assert isinstance(error, InvalidRequestError)
    assert (error.code, error.param) == ("invalid_type", param)
    assert phrase in error.message
    assert error.message.startswith(f"Invalid type for '{param}'")


# -- values ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "code", "param", "phrase"),
    [
        ({"max_output_tokens": 8}, "integer_below_min_value", "max_output_tokens",
         "Invalid 'max_output_tokens': integer below minimum value. "
         "Expected a value >= 16, but got 8 instead."),
        ({"temperature": 2.5}, "decimal_above_max_value", "temperature",
         "Expected a value <= 2, but got 2.5 instead."),
        ({"temperature": -0.1}, "decimal_below_min_value", "temperature", ">= 0"),
        ({"top_p": 1.01}, "decimal_above_max_value", "top_p", "<= 1"),
        ({"top_p": -1}, "decimal_below_min_value", "top_p", ">= 0"),
        ({"top_logprobs": 21}, "integer_above_max_value", "top_logprobs",
         "Expected a value <= 20, but got 21 instead."),
        ({"top_logprobs": -1}, "integer_below_min_value", "top_logprobs", ">= 0"),
        ({"max_tool_calls": -1}, "integer_below_min_value", "max_tool_calls", ">= 0"),
        ({"service_tier": "gold"}, "invalid_value", "service_tier",
         "Invalid value: 'gold'. Supported values are: 'auto', 'default', 'flex', 'scale',"),
        ({"truncation": "yes"}, "invalid_value", "truncation", "'auto' and 'disabled'"),
        ({"reasoning": {"effort": "huge"}}, "invalid_value", "reasoning.effort", "'minimal'"),
        ({"reasoning": {"summary": "long"}}, "invalid_value", "reasoning.summary", "'concise'"),
        ({"reasoning": {"budget": 1}}, "unknown_parameter", "reasoning.budget",
         "Unknown parameter: 'reasoning.budget'."),
        ({"text": {"verbosity": "loud"}}, "invalid_value", "text.verbosity", "'low', 'medium'"),
        ({"text": {"format": {"type": "xml"}}}, "invalid_value", "text.format.type", "'text'"),
        ({"text": {"format": {}}}, "missing_required_parameter", "text.format.type", "type"),
        ({"text": {"foo": 1}}, "unknown_parameter", "text.foo", "Unknown parameter"),
        ({"text": {"format": {"type": "text", "x": 1}}}, "unknown_parameter", "text.format.x",
         "Unknown parameter"),
        ({"tool_choice": "sometimes"}, "invalid_value", "tool_choice", "'auto'"),
        ({"prompt_cache_retention": "1h"}, "invalid_value", "prompt_cache_retention", "'24h'"),
        ({"prompt_cache_options": {"ttl": "1h"}}, "invalid_value", "prompt_cache_options.ttl",
         "'30m' and '12h'"),
        ({"prompt_cache_options": {"x": 1}}, "unknown_parameter", "prompt_cache_options.x",
         "Unknown parameter"),
        ({"safety_identifier": "x" * 65}, "string_above_max_length", "safety_identifier",
         "maximum length 64, but got a string with length 65"),
        ({"metadata": {str(i): "v" for i in range(17)}}, "object_above_max_properties",
         "metadata", "at most 16 properties"),
        ({"metadata": {"k" * 65: "v"}}, "string_above_max_length", "metadata",
         "at most 64 characters"),
        ({"metadata": {"k": "v" * 513}}, "string_above_max_length", "metadata.k",
         "maximum length 512"),
        ({"stream": True, "stream_options": {"obfuscate": True}}, "unknown_parameter",
         "stream_options.obfuscate", "Unknown parameter"),
    ],
)  # fmt: skip
def test_create_bad_value_is_rejected(
    fields: dict[str, Any], code: str, param: str, phrase: str
) -> None:
    error = rejection(body(**fields))
    assert isinstance(error, InvalidRequestError)
    assert (error.code, error.param) == (code, param)
    assert phrase in error.message


# -- model -------------------------------------------------------------------------------


def test_create_model_is_required() -> None:
    error = rejection(body(model=OMIT))
    assert isinstance(error, InvalidRequestError)
    assert (error.code, error.param) == ("missing_required_parameter", "model")
    assert error.message.startswith("Missing required parameter: 'model'.")


def test_create_model_must_not_be_empty() -> None:
    error = rejection(body(model=""))
    assert isinstance(error, InvalidRequestError)
    assert (error.code, error.param) == ("empty_string", "model")
    assert "empty string" in error.message


def test_create_unknown_model_is_404() -> None:
    error = rejection(body(model="gpt-9"))
    assert isinstance(error, NotFoundError)
    assert error.status_code == 404
    assert (error.code, error.param) == ("model_not_found", None)
    assert error.message == "The model `gpt-9` does not exist or you do not have access to it."


def test_create_body_errors_come_before_unknown_model() -> None:
    error = rejection(body(model="gpt-9", temperature=5))
    assert isinstance(error, InvalidRequestError)
    assert error.param == "temperature"


# -- input -------------------------------------------------------------------------------


def test_create_input_is_required() -> None:
    error = rejection(body(input=OMIT))
    assert isinstance(error, InvalidRequestError)
    assert (error.code, error.param) == ("missing_required_parameter", "input")
    assert error.message.startswith("Missing required parameter: 'input'.")


def test_create_input_list_must_not_be_empty() -> None:
    error = rejection(body(input=[]))
    assert isinstance(error, InvalidRequestError)
    assert (error.code, error.param) == ("empty_array", "input")
    assert "Send at least one message" in error.message


@pytest.mark.parametrize(
    ("items", "code", "param", "phrase"),
    [
        (["hi"], "invalid_type", "input[0]", "expected an input item object, but got a string"),
        ([message("bot", "hi")], "invalid_value", "input[0].role",
         "Invalid value: 'bot'. Supported values are: 'user', 'assistant', 'system', and "
         "'developer'."),
        ([message("user", "a"), {"content": "hi"}], "missing_required_parameter",
         "input[1].role", "Missing required parameter: 'input[1].role'."),
        ([{"role": "user"}], "missing_required_parameter", "input[0].content", "content"),
        ([message("user", 5)], "invalid_type", "input[0].content",
         "expected a string or an array of content parts, but got an integer"),
        ([message("user", "hi", foo=1)], "unknown_parameter", "input[0].foo",
         "Unknown parameter: 'input[0].foo'."),
        ([message("assistant", "hi", phase="draft")], "invalid_value", "input[0].phase",
         "'commentary' and 'final_answer'"),
        ([message("user", "hi", status="done")], "invalid_value", "input[0].status",
         "'completed'"),
        ([message("user", "hi", id=7)], "invalid_type", "input[0].id", "expected a string"),
        ([message("user", "hi", type="chat")], "invalid_value", "input[0].type",
         "Supported values are: 'message', 'function_call', 'function_call_output', "
         "'reasoning', and 'item_reference'."),
        ([message("user", "hi", type=1)], "invalid_type", "input[0].type", "expected a string"),
        ([message("user", ["hi"])], "invalid_type", "input[0].content[0]",
         "expected a content part object"),
        ([message("user", [{"text": "hi"}])], "missing_required_parameter",
         "input[0].content[0].type", "input_text"),
        ([message("user", [{"type": "output_text", "text": "hi"}])], "invalid_value",
         "input[0].content[0].type",
         "Supported values are: 'input_text', 'input_image', and 'input_file'. A message with "
         "role 'user' takes only"),
        ([message("system", [{"type": "input_image", "image_url": "https://x.test/a.png"}])],
         "invalid_value", "input[0].content[0].type",
         "Supported values are: 'input_text'. A message with role 'system' takes only"),
        ([message("assistant", [{"type": "input_text", "text": "hi"}])], "invalid_value",
         "input[0].content[0].type", "'output_text' and 'refusal'"),
        ([message("user", [{"type": "video", "text": "hi"}])], "invalid_value",
         "input[0].content[0].type", "Invalid value: 'video'."),
        ([message("user", [{"type": "input_text"}])], "missing_required_parameter",
         "input[0].content[0].text", "Missing required parameter"),
        ([message("user", [{"type": "input_text", "text": 1}])], "invalid_type",
         "input[0].content[0].text", "expected a string"),
        ([message("user", [{"type": "input_text", "text": "a", "x": 1}])], "unknown_parameter",
         "input[0].content[0].x", "Unknown parameter"),
        ([message("assistant", [{"type": "refusal"}])], "missing_required_parameter",
         "input[0].content[0].refusal", "Missing required parameter"),
        ([message("assistant", [{"type": "output_text", "text": "a", "annotations": {}}])],
         "invalid_type", "input[0].content[0].annotations", "expected an array"),
    ],
)  # fmt: skip
def test_create_bad_input_item_is_rejected(
    items: list[Any], code: str, param: str, phrase: str
) -> None:
    error = rejection(body(input=items))
    assert isinstance(error, InvalidRequestError)
    assert (error.code, error.param) == (code, param)
    assert phrase in error.message


@pytest.mark.parametrize(
    ("part", "param", "phrase"),
    [
        ({"type": "input_image", "file_id": "file_1"}, "input[1].content[1].file_id",
         "Tether has no Files API; send 'image_url' with a URL or data URL"),
        ({"type": "input_file", "file_id": "file_1"}, "input[1].content[1].file_id",
         "Tether has no Files API; send 'file_data' (with 'filename') or 'file_url'"),
        ({"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}},
         "input[1].content[1]", "'input_audio'"),
    ],
)  # fmt: skip
def test_create_file_ids_and_audio_parts_are_unsupported(
    part: dict[str, Any], param: str, phrase: str
) -> None:
    parts = [{"type": "input_text", "text": "Look:"}, part]
    error = rejection(body(input=[message("user", "Hi"), message("user", parts)]))
    assert isinstance(error, InvalidRequestError)
    assert (error.code, error.param) == ("unsupported_parameter", param)
    assert phrase in error.message
    assert "not supported by this server yet" in error.message


# -- features not supported yet and combinations -----------------------------------------


@pytest.mark.parametrize(
    ("fields", "param", "phrase"),
    [
        ({"prompt": {"id": "pmpt_1"}}, "prompt", "Prompt templates"),
        ({"context_management": [{"type": "compaction"}]}, "context_management",
         "context management"),
        ({"moderation": {"model": "omni-moderation-latest"}}, "moderation", "Moderation"),
        ({"background_options": {"completion_window": "2h"}}, "background_options",
         "background_options"),
    ],
)  # fmt: skip
def test_create_unsupported_feature_is_rejected(
    fields: dict[str, Any], param: str, phrase: str
) -> None:
    error = rejection(body(**fields))
    assert isinstance(error, InvalidRequestError)
    assert (error.code, error.param) == ("unsupported_parameter", param)
    assert phrase in error.message
    assert "not supported by this server yet" in error.message


def test_create_background_requires_store() -> None:
    error = rejection(body(background=True, store=False))
    assert isinstance(error, InvalidRequestError)
    assert error.param == "store"
    assert "Background mode requires store=true" in error.message
    assert "Set 'store' to true" in error.message


def test_create_store_false_without_background_is_fine() -> None:
    assert parse(body(store=False)).store is False


@pytest.mark.parametrize("stream", [OMIT, False, None])
def test_create_stream_options_need_stream(stream: Any) -> None:
    error = rejection(body(stream=stream, stream_options={"include_obfuscation": False}))
    assert isinstance(error, InvalidRequestError)
    assert error.param == "stream_options"
    assert "only allowed when 'stream' is true" in error.message


# -- query strings -----------------------------------------------------------------------


def test_retrieve_query_defaults() -> None:
    assert parse_retrieve_query({}) == RetrieveQuery(
        stream=False, starting_after=None, include_obfuscation=True
    )


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ([("stream", "true"), ("starting_after", "42")], RetrieveQuery(True, 42, True)),
        ([("stream", "1"), ("starting_after", "0")], RetrieveQuery(True, 0, True)),
        ([("stream", "false"), ("include_obfuscation", "false")],
         RetrieveQuery(False, None, False)),
        ([("stream", "0"), ("include_obfuscation", "1")], RetrieveQuery(False, None, True)),
        ([("include[]", "message.output_text.logprobs"), ("include", "x"), ("other", "y")],
         RetrieveQuery(False, None, True)),
        ({"stream": "True", "starting_after": "7"}, RetrieveQuery(True, 7, True)),
    ],
)  # fmt: skip
def test_retrieve_query_parses(
    params: dict[str, str] | list[tuple[str, str]], expected: RetrieveQuery
) -> None:
    assert parse_retrieve_query(params) == expected


@pytest.mark.parametrize(
    ("params", "code", "param", "phrase"),
    [
        ([("stream", "yes")], "invalid_value", "stream", "'true' and 'false'"),
        ([("include_obfuscation", "")], "invalid_value", "include_obfuscation", "'true'"),
        ([("starting_after", "abc")], "invalid_type", "starting_after",
         "expected an integer, but got 'abc' instead. Send the sequence_number"),
        ([("starting_after", "1.5")], "invalid_type", "starting_after", "expected an integer"),
        ([("starting_after", "")], "invalid_type", "starting_after", "expected an integer"),
        ([("starting_after", "-1")], "integer_below_min_value", "starting_after",
         "Expected a value >= 0, but got -1 instead. Send the sequence_number"),
    ],
)  # fmt: skip
def test_retrieve_query_rejects_bad_params(
    params: list[tuple[str, str]], code: str, param: str, phrase: str
) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        parse_retrieve_query(params)
    assert (caught.value.code, caught.value.param) == (code, param)
    assert phrase in caught.value.message


def test_list_query_defaults() -> None:
    assert parse_list_query([]) == ListQuery(after=None, limit=20, order="desc")


def test_list_query_parses() -> None:
    params = [("after", "msg_1"), ("limit", "100"), ("order", "asc"), ("include[]", "x")]
    assert parse_list_query(params) == ListQuery(after="msg_1", limit=100, order="asc")
    assert parse_list_query([("limit", "1")]).limit == 1


@pytest.mark.parametrize(
    ("params", "code", "param", "phrase"),
    [
        ([("limit", "0")], "integer_below_min_value", "limit", ">= 1"),
        ([("limit", "101")], "integer_above_max_value", "limit", "<= 100"),
        ([("limit", "ten")], "invalid_type", "limit", "between 1 and 100"),
        ([("order", "up")], "invalid_value", "order", "'asc' and 'desc'"),
    ],
)
def test_list_query_rejects_bad_params(
    params: list[tuple[str, str]], code: str, param: str, phrase: str
) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        parse_list_query(params)
    assert (caught.value.code, caught.value.param) == (code, param)
    assert phrase in caught.value.message

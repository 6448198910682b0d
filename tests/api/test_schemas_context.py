"""`previous_response_id`, `conversation`, `include` and the generation settings a
create request carries to the provider (`reasoning`, `top_logprobs`, `truncation`,
`extra`)."""

from __future__ import annotations

import typing
from typing import Any

import pytest
from openai.types.responses import ResponseIncludable

from tests.api.test_schemas import OMIT, body, parse, rejection
from tether.api.schemas.options import INCLUDABLE
from tether.domain.response import build_response
from tether.errors import InvalidRequestError

# -- previous_response_id and conversation -----------------------------------------------


def test_context_previous_response_id_is_read_and_echoed() -> None:
    request = parse(body(previous_response_id="resp_abc"))
    assert request.previous_response_id == "resp_abc"
    assert request.settings["previous_response_id"] == "resp_abc"
    assert request.conversation_id is None


@pytest.mark.parametrize("conversation", ["conv_1", {"id": "conv_1"}])
def test_context_conversation_forms_are_echoed_as_an_object(conversation: Any) -> None:
    request = parse(body(conversation=conversation))
    assert request.conversation_id == "conv_1"
    assert request.settings["conversation"] == {"id": "conv_1"}
    snapshot = build_response(
        response_id="resp_1",
        model=request.model,
        created_at=0,
        background=False,
        store=True,
        settings=request.settings,
    )
    assert snapshot["conversation"] == {"id": "conv_1"}


@pytest.mark.parametrize(
    "context", [{"previous_response_id": "resp_1"}, {"conversation": "conv_1"}]
)
@pytest.mark.parametrize("input_", [OMIT, None])
def test_context_makes_input_optional(context: dict[str, Any], input_: Any) -> None:
    request = parse(body(input=input_, **context))
    assert request.input_items == []


def test_context_input_is_still_used_when_given() -> None:
    request = parse(body(previous_response_id="resp_1", input="And now?"))
    assert [item["content"][0]["text"] for item in request.input_items] == ["And now?"]


def test_context_input_without_context_is_still_required() -> None:
    error = rejection(body(input=OMIT, previous_response_id=None))
    assert (error.code, error.param) == ("missing_required_parameter", "input")
    assert "previous_response_id" in error.message


@pytest.mark.parametrize(
    ("fields", "code", "param", "phrase"),
    [
        ({"previous_response_id": "msg_1"}, "invalid_value", "previous_response_id",
         "Expected an ID that begins with 'resp'."),
        ({"previous_response_id": ""}, "empty_string", "previous_response_id",
         "empty string"),
        ({"previous_response_id": 1}, "invalid_type", "previous_response_id",
         "expected a string"),
        ({"conversation": "resp_1"}, "invalid_value", "conversation",
         "Expected an ID that begins with 'conv'."),
        ({"conversation": ""}, "empty_string", "conversation", "empty string"),
        ({"conversation": {}}, "missing_required_parameter", "conversation.id",
         "Missing required parameter: 'conversation.id'."),
        ({"conversation": {"id": 5}}, "invalid_type", "conversation.id", "expected a string"),
        ({"conversation": {"id": "conv_1", "x": 1}}, "unknown_parameter", "conversation.x",
         "Unknown parameter"),
        ({"conversation": ["conv_1"]}, "invalid_type", "conversation",
         "expected a string or an object"),
    ],
)  # fmt: skip
def test_context_bad_ids_are_rejected(
    fields: dict[str, Any], code: str, param: str, phrase: str
) -> None:
    error = rejection(body(**fields))
    assert isinstance(error, InvalidRequestError)
    assert (error.code, error.param) == (code, param)
    assert phrase in error.message


def test_context_previous_response_and_conversation_exclude_each_other() -> None:
    error = rejection(body(previous_response_id="resp_1", conversation="conv_1"))
    assert isinstance(error, InvalidRequestError)
    assert error.param == "conversation"
    assert "'previous_response_id' and 'conversation' cannot be used together" in error.message


def test_context_conversation_needs_store() -> None:
    error = rejection(body(conversation={"id": "conv_1"}, store=False))
    assert isinstance(error, InvalidRequestError)
    assert error.param == "store"
    assert "stored as the conversation's next turn" in error.message
    assert "Set 'store' to true" in error.message


def test_context_previous_response_id_allows_store_false() -> None:
    request = parse(body(previous_response_id="resp_1", store=False))
    assert (request.store, request.previous_response_id) == (False, "resp_1")


# -- include -----------------------------------------------------------------------------


def test_include_accepts_every_sdk_value() -> None:
    values = typing.get_args(ResponseIncludable)
    assert set(values) == set(INCLUDABLE)
    request = parse(body(include=list(values)))
    assert request.include == values
    assert "include" not in request.settings


def test_include_rejects_unknown_values_at_their_index() -> None:
    error = rejection(body(include=["reasoning.encrypted_content", "usage.details"]))
    assert (error.code, error.param) == ("invalid_value", "include[1]")
    assert "Invalid value: 'usage.details'." in error.message


def test_include_items_must_be_strings() -> None:
    error = rejection(body(include=[1]))
    assert (error.code, error.param) == ("invalid_type", "include[0]")


# -- generation settings ---------------------------------------------------------------------


def test_settings_defaults_for_the_provider() -> None:
    request = parse(body())
    assert request.reasoning is None
    assert request.top_logprobs is None
    assert request.truncation == "disabled"
    assert request.include == ()
    assert request.extra == {}
    assert request.text_format is None


def test_settings_are_carried_for_the_provider() -> None:
    request = parse(
        body(
            reasoning={"effort": "high", "summary": None, "mode": "pro"},
            top_logprobs=5,
            include=["message.output_text.logprobs"],
            truncation="auto",
            user="u",
            safety_identifier="s",
            prompt_cache_key="k",
            service_tier="flex",
            metadata={"a": "b"},
            instructions="Be kind.",
        )
    )
    assert request.reasoning == {"effort": "high", "mode": "pro"}
    assert request.settings["reasoning"] == {"effort": "high", "summary": None, "mode": "pro"}
    assert request.top_logprobs == 5
    assert request.truncation == "auto"
    assert request.extra == {
        "user": "u",
        "safety_identifier": "s",
        "prompt_cache_key": "k",
        "service_tier": "flex",
        "metadata": {"a": "b"},
    }


def test_settings_extra_holds_only_set_fields() -> None:
    assert parse(body(user="u", metadata=None)).extra == {"user": "u"}


def test_settings_empty_reasoning_is_set_but_empty() -> None:
    assert parse(body(reasoning={})).reasoning == {}

"""`parse_create_request`: the body of `POST /v1/responses`, checked field by field.

Sections: the `CreateRequest` value; `parse_create_request`; the fields that depend on
others (`model`, `input`, `tools`/`tool_choice`, the stream and storage flags). The
one-checker-per-field table is `options.FIELDS`.
"""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass, field
from typing import Any

import orjson

from tether.api.schemas.fields import (
    describe,
    expect_bool,
    expect_object,
    expect_str,
    invalid_type,
    missing,
    reject_unknown_keys,
)
from tether.api.schemas.items import validate_input
from tether.api.schemas.options import FIELDS
from tether.api.schemas.tools import parse_tool_choice, parse_tools
from tether.domain.items import normalize_input
from tether.domain.response import ECHO_DEFAULTS
from tether.errors import InvalidRequestError, NotFoundError

# Every property of OpenAI's CreateResponse and of the SDK's ResponseCreateParams.
KNOWN_FIELDS = frozenset(
    {"model", "input", "stream", "background", "store", "stream_options", "tools", "tool_choice"}
    | FIELDS.keys()
)
# Settings a Responses upstream can take as they are (`GenerationRequest.extra`).
EXTRA_FIELDS = ("user", "safety_identifier", "prompt_cache_key", "service_tier", "metadata")


@dataclass(frozen=True, slots=True)
class CreateRequest:
    """A validated `POST /v1/responses` body.

    `settings` holds the validated value of every `ECHO_DEFAULTS` key the request set
    to something other than null, for `build_response`. `input_items` are normalized
    (`tether.domain.items`); they may be empty when `previous_response_id` or
    `conversation` is given, and may hold `item_reference` items for the API layer to
    resolve. `tools` and `tool_choice` are as the Response echoes them. `text_format`
    is `text.format` when it asks for JSON, else None. `reasoning` holds the
    `reasoning` keys the request set (None: no `reasoning`). `extra` holds the set
    ones of `EXTRA_FIELDS`.
    """

    model: str
    input_items: list[dict[str, Any]]
    instructions: str | None
    stream: bool
    background: bool
    store: bool
    include_obfuscation: bool
    max_output_tokens: int | None
    temperature: float | None
    top_p: float | None
    settings: dict[str, Any]
    tools: list[dict[str, Any]] = field(default_factory=list)
    tool_choice: str | dict[str, Any] = "auto"
    parallel_tool_calls: bool = True
    max_tool_calls: int | None = None
    text_format: dict[str, Any] | None = None
    reasoning: dict[str, Any] | None = None
    top_logprobs: int | None = None
    include: tuple[str, ...] = ()
    truncation: str = "disabled"
    previous_response_id: str | None = None
    conversation_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def parse_create_request(
    body: bytes,
    *,
    known_models: Container[str],
    hosted_tools: Container[str] = (),
    zero_data_retention: bool = False,
) -> CreateRequest:
    """Parse and validate a create body.

    `hosted_tools` names the models whose provider passes tools through to a Responses
    upstream: only they take hosted tools and hosted-tool input items. Under
    `zero_data_retention` nothing is stored: `store` defaults to false, and `store:
    true` or `background: true` is a 400 that explains the mode.

    Raises `InvalidRequestError` (400) for any malformed or unsupported field, and
    `NotFoundError` (404, `model_not_found`) when `model` is not in `known_models`.
    """
    data = _load(body)
    reject_unknown_keys(data, KNOWN_FIELDS, "")
    model = _model(data)
    hosted = model in hosted_tools
    input_items = _input(data, hosted)
    values: dict[str, Any] = {}
    for name, value in data.items():
        checked = None if value is None or name not in FIELDS else FIELDS[name](value, name)
        if checked is not None:
            values[name] = checked
    tools: list[dict[str, Any]] = []
    if data.get("tools") is not None:
        tools = values["tools"] = parse_tools(data["tools"], "tools", hosted=hosted)
    if data.get("tool_choice") is not None:
        values["tool_choice"] = parse_tool_choice(
            data["tool_choice"], "tool_choice", tools, hosted=hosted
        )
    stream = _flag(data, "stream", default=False)
    background = _flag(data, "background", default=False)
    store = _flag(data, "store", default=not zero_data_retention)
    if zero_data_retention:
        _check_zero_data_retention(store=store, background=background)
    include_obfuscation = _stream_options(data.get("stream_options"), stream)
    _check_storage(values, background=background, store=store)
    if model not in known_models:
        raise NotFoundError(
            f"The model `{model}` does not exist or you do not have access to it.",
            code="model_not_found",
        )
    text_format = values.get("text", {}).get("format")
    reasoning = values.get("reasoning")
    return CreateRequest(
        model=model,
        input_items=input_items,
        instructions=values.get("instructions"),
        stream=stream,
        background=background,
        store=store,
        include_obfuscation=include_obfuscation,
        max_output_tokens=values.get("max_output_tokens"),
        temperature=values.get("temperature"),
        top_p=values.get("top_p"),
        settings={name: value for name, value in values.items() if name in ECHO_DEFAULTS},
        tools=tools,
        tool_choice=values.get("tool_choice", "auto"),
        parallel_tool_calls=values.get("parallel_tool_calls", True),
        max_tool_calls=values.get("max_tool_calls"),
        text_format=None if text_format is None or text_format["type"] == "text" else text_format,
        reasoning=None if reasoning is None else _set_keys(reasoning),
        top_logprobs=values.get("top_logprobs"),
        include=values.get("include", ()),
        truncation=values.get("truncation", "disabled"),
        previous_response_id=values.get("previous_response_id"),
        conversation_id=values["conversation"]["id"] if "conversation" in values else None,
        extra={name: values[name] for name in EXTRA_FIELDS if name in values},
    )


def _set_keys(obj: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in obj.items() if value is not None}


def _load(body: bytes) -> dict[str, Any]:
    hint = (
        "We could not parse the JSON body of your request. Send a JSON object "
        "(Content-Type: application/json) with at least 'model' and 'input'."
    )
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise InvalidRequestError(f"{hint} The body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise InvalidRequestError(f"{hint} The body is {describe(data)}, not an object.")
    return data


def _model(data: dict[str, Any]) -> str:
    if "model" not in data:
        raise missing("model", "Send the id of a model this server serves.")
    model = expect_str(data["model"], "model")
    if not model:
        raise InvalidRequestError(
            "Invalid 'model': empty string. Expected the id of a model this server serves, but "
            "got an empty string instead.",
            param="model",
            code="empty_string",
        )
    return model


def _input(data: dict[str, Any], hosted: bool) -> list[dict[str, Any]]:
    """The normalized input; optional when the request continues a stored context."""
    if data.get("input") is None:
        if data.get("previous_response_id") is not None or data.get("conversation") is not None:
            return []
        if "input" in data:
            raise invalid_type("input", "a string or an array of input items", None)
        raise missing(
            "input",
            "Send a string or a list of messages (or continue a stored response with "
            "'previous_response_id' or 'conversation').",
        )
    return normalize_input(validate_input(data["input"], hosted=hosted))


def _flag(data: dict[str, Any], name: str, *, default: bool) -> bool:
    value = data.get(name)
    return default if value is None else expect_bool(value, name)


def _stream_options(value: Any, stream: bool) -> bool:
    if value is None:
        return True
    if not stream:
        raise InvalidRequestError(
            "'stream_options' is only allowed when 'stream' is true. Set 'stream' to true, or "
            "leave 'stream_options' out.",
            param="stream_options",
        )
    options = expect_object(value, "stream_options")
    reject_unknown_keys(options, ("include_obfuscation",), "stream_options")
    flag = options.get("include_obfuscation")
    return True if flag is None else expect_bool(flag, "stream_options.include_obfuscation")


def _check_zero_data_retention(*, store: bool, background: bool) -> None:
    mode = (
        "This server runs in zero-data-retention mode: it writes nothing to disk and keeps "
        "a response only while its request is open."
    )
    if store:
        raise InvalidRequestError(
            f"{mode} 'store' cannot be true; leave it out or set it to false.", param="store"
        )
    if background:
        raise InvalidRequestError(
            f"{mode} Background responses are stored, so 'background' cannot be true; "
            "stream the response instead.",
            param="background",
        )


def _check_storage(values: dict[str, Any], *, background: bool, store: bool) -> None:
    """Combinations of `store`, `background`, `conversation` and `previous_response_id`."""
    if background and not store:
        raise InvalidRequestError(
            "Background mode requires store=true: a background response is stored so it can "
            "be retrieved or resumed later. Set 'store' to true (or leave it out), or drop "
            "'background'.",
            param="store",
        )
    if "conversation" not in values:
        return
    if "previous_response_id" in values:
        raise InvalidRequestError(
            "'previous_response_id' and 'conversation' cannot be used together: a "
            "conversation already carries its earlier turns. Send only one of them.",
            param="conversation",
        )
    if not store:
        raise InvalidRequestError(
            "A response in a conversation is stored as the conversation's next turn, so "
            "'store' cannot be false with 'conversation'. Set 'store' to true (or leave it "
            "out), or drop 'conversation'.",
            param="store",
        )

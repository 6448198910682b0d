"""`parse_create_request`: the body of `POST /v1/responses`, checked field by field.

Sections: the `CreateRequest` value; `parse_create_request`; one checker per field
(`_FIELDS`, in the order of OpenAI's docs); checkers of features not supported yet.

Each checker takes the (non-null) value and its param name, raises
`InvalidRequestError` or returns the value to echo in the Response (None: not set).
"""

from __future__ import annotations

from collections.abc import Callable, Container
from dataclasses import dataclass
from typing import Any

import orjson

from tether.api.schemas.fields import (
    describe,
    expect_array,
    expect_bool,
    expect_choice,
    expect_int,
    expect_number,
    expect_object,
    expect_str,
    invalid_type,
    invalid_value,
    missing,
    optional_object,
    reject_unknown_keys,
    too_long,
    unsupported,
)
from tether.api.schemas.items import validate_input
from tether.domain.items import normalize_input
from tether.domain.response import ECHO_DEFAULTS
from tether.errors import InvalidRequestError, NotFoundError

SERVICE_TIERS = ("auto", "default", "flex", "scale", "priority", "fast", "ultrafast")
REASONING_EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh", "max")
REASONING_SUMMARIES = ("auto", "concise", "detailed")
METADATA_MAX_PAIRS, METADATA_MAX_KEY, METADATA_MAX_VALUE = 16, 64, 512

# Echoed like the ECHO_DEFAULTS keys though not one of them (yet): the Response has it.
EXTRA_ECHOED = frozenset({"prompt_cache_options"})


@dataclass(frozen=True, slots=True)
class CreateRequest:
    """A validated `POST /v1/responses` body.

    `settings` holds the validated value of every `ECHO_DEFAULTS` key the request set
    to something other than null (plus `prompt_cache_options`), for `build_response`.
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


def parse_create_request(body: bytes, *, known_models: Container[str]) -> CreateRequest:
    """Parse and validate a create body.

    Raises `InvalidRequestError` (400) for any malformed or unsupported field, and
    `NotFoundError` (404, `model_not_found`) when `model` is not in `known_models`.
    """
    data = _load(body)
    reject_unknown_keys(data, KNOWN_FIELDS, "")
    model = _model(data)
    if data.get("input") is None:
        if "input" in data:
            raise invalid_type("input", "a string or an array of input items", None)
        raise missing("input", "Send a string or a list of messages.")
    input_ = validate_input(data["input"])
    settings: dict[str, Any] = {}
    for name, value in data.items():
        check = _FIELDS.get(name)
        if check is None or value is None:
            continue
        echoed = check(value, name)
        if echoed is not None and (name in ECHO_DEFAULTS or name in EXTRA_ECHOED):
            settings[name] = echoed
    stream = _flag(data, "stream", default=False)
    background = _flag(data, "background", default=False)
    store = _flag(data, "store", default=True)
    include_obfuscation = _stream_options(data.get("stream_options"), stream)
    if background and not store:
        raise InvalidRequestError(
            "Background mode requires store=true: a background response is stored so it can "
            "be retrieved or resumed later. Set 'store' to true (or leave it out), or drop "
            "'background'.",
            param="store",
        )
    if model not in known_models:
        raise NotFoundError(
            f"The model `{model}` does not exist or you do not have access to it.",
            code="model_not_found",
        )
    return CreateRequest(
        model=model,
        input_items=normalize_input(input_),
        instructions=settings.get("instructions"),
        stream=stream,
        background=background,
        store=store,
        include_obfuscation=include_obfuscation,
        max_output_tokens=settings.get("max_output_tokens"),
        temperature=settings.get("temperature"),
        top_p=settings.get("top_p"),
        settings=settings,
    )


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


# -- echoed settings -------------------------------------------------------------------

Checker = Callable[[Any, str], Any]


def _metadata(value: Any, param: str) -> dict[str, str]:
    metadata = expect_object(value, param)
    if len(metadata) > METADATA_MAX_PAIRS:
        raise InvalidRequestError(
            f"Invalid 'metadata': too many properties. Expected an object with at most "
            f"{METADATA_MAX_PAIRS} properties, but got an object with {len(metadata)} "
            "properties instead. Remove some keys.",
            param=param,
            code="object_above_max_properties",
        )
    for key, item in metadata.items():
        if len(key) > METADATA_MAX_KEY:
            raise InvalidRequestError(
                f"Invalid 'metadata': key '{key[:20]}…' is {len(key)} characters long. "
                f"Metadata keys may be at most {METADATA_MAX_KEY} characters; shorten it.",
                param=param,
                code="string_above_max_length",
            )
        text = expect_str(item, f"{param}.{key}")
        if len(text) > METADATA_MAX_VALUE:
            raise too_long(f"{param}.{key}", text, METADATA_MAX_VALUE)
    return dict(metadata)


def _safety_identifier(value: Any, param: str) -> str:
    text = expect_str(value, param)
    if len(text) > 64:
        raise too_long(param, text, 64)
    return text


def _reasoning(value: Any, param: str) -> dict[str, Any]:
    allowed = {
        "effort": REASONING_EFFORTS,
        "summary": REASONING_SUMMARIES,
        "generate_summary": REASONING_SUMMARIES,
        "context": ("auto", "current_turn", "all_turns"),
        "mode": None,
    }
    given = optional_object(expect_object(value, param), allowed, param)
    return {"effort": None, "summary": None, **given}


def _text(value: Any, param: str) -> dict[str, Any]:
    text = expect_object(value, param)
    reject_unknown_keys(text, ("format", "verbosity"), param)
    result: dict[str, Any] = {"format": {"type": "text"}, "verbosity": "medium"}
    if text.get("format") is not None:
        fmt = expect_object(text["format"], "text.format")
        if fmt.get("type") is None:
            raise missing("text.format.type", 'Use {"type": "text"}.')
        fmt_type = expect_str(fmt["type"], "text.format.type")
        if fmt_type in ("json_schema", "json_object"):
            raise unsupported(
                "text.format",
                f"Structured output ('text.format' of type '{fmt_type}') is",
                'Leave \'text.format\' out or set it to {"type": "text"}.',
            )
        if fmt_type != "text":
            raise invalid_value(
                "text.format.type", fmt_type, ("text", "json_schema", "json_object")
            )
        reject_unknown_keys(fmt, ("type",), "text.format")
    if text.get("verbosity") is not None:
        result["verbosity"] = expect_choice(
            text["verbosity"], "text.verbosity", ("low", "medium", "high")
        )
    return result


def _prompt_cache_options(value: Any, param: str) -> dict[str, Any]:
    options = expect_object(value, param)
    allowed = {
        "comparison_response_id": None,
        "mode": ("implicit", "explicit"),
        "ttl": ("30m", "12h"),
    }
    given = optional_object({k: v for k, v in options.items() if k != "prewarm"}, allowed, param)
    if options.get("prewarm") is not None:
        given["prewarm"] = expect_bool(options["prewarm"], f"{param}.prewarm")
    return given


def _tool_choice(value: Any, param: str) -> str:
    if isinstance(value, dict):
        raise unsupported(
            param,
            "Forcing a specific tool with 'tool_choice' is",
            'Set it to "auto" or "none", or leave it out.',
        )
    choice = expect_choice(value, param, ("none", "auto", "required"))
    if choice == "required":
        raise unsupported(
            param, "'tool_choice': \"required\" is", 'Set it to "auto" or "none", or leave it out.'
        )
    return choice


def _tools(value: Any, param: str) -> list[Any]:
    if expect_array(value, param):
        raise unsupported(
            param,
            "Tools (function calling and hosted tools) are",
            "Send 'tools': [] or leave it out.",
        )
    return []


# -- features not supported yet: null or empty means unset -----------------------------


def _not_yet(expected: str, feature: str, hint: str) -> Checker:
    """A checker that type-checks the value, accepts it empty, and rejects it otherwise."""
    types: tuple[type, ...] = {
        "a string": (str,),
        "an object": (dict,),
        "an array": (list,),
        "a string or an object": (str, dict),
    }[expected]

    def check(value: Any, param: str) -> None:
        if not isinstance(value, types):
            raise invalid_type(param, expected, value)
        if value:
            raise unsupported(param, feature, hint)

    return check


_IN_INPUT = "Send the whole conversation in 'input' instead."
_LEAVE_OUT = "Leave it out (or send null)."

_FIELDS: dict[str, Checker] = {
    "instructions": expect_str,
    "max_output_tokens": lambda v, p: expect_int(v, p, minimum=16),
    "max_tool_calls": lambda v, p: expect_int(v, p, minimum=0),
    "metadata": _metadata,
    "parallel_tool_calls": expect_bool,
    "prompt_cache_key": expect_str,
    "prompt_cache_options": _prompt_cache_options,
    "prompt_cache_retention": lambda v, p: expect_choice(v, p, ("in_memory", "24h")),
    "reasoning": _reasoning,
    "safety_identifier": _safety_identifier,
    "service_tier": lambda v, p: expect_choice(v, p, SERVICE_TIERS),
    "temperature": lambda v, p: expect_number(v, p, minimum=0, maximum=2),
    "text": _text,
    "tool_choice": _tool_choice,
    "tools": _tools,
    "top_logprobs": lambda v, p: expect_int(v, p, minimum=0, maximum=20),
    "top_p": lambda v, p: expect_number(v, p, minimum=0, maximum=1),
    "truncation": lambda v, p: expect_choice(v, p, ("auto", "disabled")),
    "user": expect_str,
    "previous_response_id": _not_yet(
        "a string", "'previous_response_id' (chaining onto a stored response) is", _IN_INPUT
    ),
    "conversation": _not_yet(
        "a string or an object", "Conversations ('conversation') are", _IN_INPUT
    ),
    "prompt": _not_yet(
        "an object", "Prompt templates ('prompt') are", "Send 'instructions' and 'input' instead."
    ),
    "context_management": _not_yet(
        "an array", "Server-side context management ('context_management') is", _LEAVE_OUT
    ),
    "moderation": _not_yet("an object", "Moderation ('moderation') is", _LEAVE_OUT),
    "include": _not_yet(
        "an array", "Extra output data ('include') is", "Leave it out or send an empty list."
    ),
    "access_programs": _not_yet("an object", "Access programs ('access_programs') are", _LEAVE_OUT),
    "background_options": _not_yet(
        "an object", "Background options ('background_options') are", _LEAVE_OUT
    ),
    "image": _not_yet("an object", "Request-level image options ('image') are", _LEAVE_OUT),
}

# Every property of OpenAI's CreateResponse and of the SDK's ResponseCreateParams.
KNOWN_FIELDS = frozenset(
    {"model", "input", "stream", "background", "store", "stream_options", *_FIELDS}
)

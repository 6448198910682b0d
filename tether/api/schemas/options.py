"""One checker per create field that needs no other field to be checked.

Each checker takes the (non-null) value and its param name, raises
`InvalidRequestError` or returns the validated value (for the fields the Response
echoes, the value to echo). `FIELDS` lists them in the order of OpenAI's docs;
`tools` and `tool_choice` depend on the model and on each other, so `create` checks
them itself.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tether.api.schemas.fields import (
    empty_string,
    expect_array,
    expect_bool,
    expect_choice,
    expect_id,
    expect_int,
    expect_number,
    expect_object,
    expect_str,
    invalid_type,
    optional_object,
    reject_unknown_keys,
    require,
    too_long,
    unsupported,
)
from tether.api.schemas.text_format import parse_text
from tether.errors import InvalidRequestError

SERVICE_TIERS = ("auto", "default", "flex", "scale", "priority", "fast", "ultrafast")
REASONING_EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh", "max")
REASONING_SUMMARIES = ("auto", "concise", "detailed")
METADATA_MAX_PAIRS, METADATA_MAX_KEY, METADATA_MAX_VALUE = 16, 64, 512
# The SDK's `ResponseIncludable`.
INCLUDABLE = (
    "file_search_call.results",
    "web_search_call.results",
    "web_search_call.action.sources",
    "message.input_image.image_url",
    "computer_call_output.output.image_url",
    "code_interpreter_call.outputs",
    "reasoning.encrypted_content",
    "message.output_text.logprobs",
)

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
    # The Response echoes the options as applied: OpenAI's defaults filled in.
    return {"ttl": "30m", "mode": "implicit", **given}


def _include(value: Any, param: str) -> tuple[str, ...]:
    values = expect_array(value, param)
    return tuple(
        expect_choice(item, f"{param}[{index}]", INCLUDABLE) for index, item in enumerate(values)
    )


def _previous_response_id(value: Any, param: str) -> str:
    if value == "":
        raise empty_string(param, "the id of a stored response ('resp_…')")
    return expect_id(value, param, "resp")


def _conversation(value: Any, param: str) -> dict[str, str]:
    """A `conv_…` id or `{"id": "conv_…"}`; echoed as `{"id": …}`."""
    if isinstance(value, dict):
        reject_unknown_keys(value, ("id",), param)
        value, param = require(value, "id", param), f"{param}.id"
    elif not isinstance(value, str):
        raise invalid_type(param, "a string or an object", value)
    if value == "":
        raise empty_string(param, "the id of a conversation ('conv_…')")
    return {"id": expect_id(value, param, "conv")}


# -- features not supported yet: null or empty means unset -----------------------------


def _not_yet(expected: str, feature: str, hint: str) -> Checker:
    """A checker that type-checks the value, accepts it empty, and rejects it otherwise."""
    types: tuple[type, ...] = {
        "a string": (str,),
        "an object": (dict,),
        "an array": (list,),
    }[expected]

    def check(value: Any, param: str) -> None:
        if not isinstance(value, types):
            raise invalid_type(param, expected, value)
        if value:
            raise unsupported(param, feature, hint)

    return check


_LEAVE_OUT = "Leave it out (or send null)."

FIELDS: dict[str, Checker] = {
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
    "text": parse_text,
    "top_logprobs": lambda v, p: expect_int(v, p, minimum=0, maximum=20),
    "top_p": lambda v, p: expect_number(v, p, minimum=0, maximum=1),
    "truncation": lambda v, p: expect_choice(v, p, ("auto", "disabled")),
    "user": expect_str,
    "include": _include,
    "previous_response_id": _previous_response_id,
    "conversation": _conversation,
    "prompt": _not_yet(
        "an object", "Prompt templates ('prompt') are", "Send 'instructions' and 'input' instead."
    ),
    "context_management": _not_yet(
        "an array", "Server-side context management ('context_management') is", _LEAVE_OUT
    ),
    "moderation": _not_yet("an object", "Moderation ('moderation') is", _LEAVE_OUT),
    "access_programs": _not_yet("an object", "Access programs ('access_programs') are", _LEAVE_OUT),
    "background_options": _not_yet(
        "an object", "Background options ('background_options') are", _LEAVE_OUT
    ),
    "image": _not_yet("an object", "Request-level image options ('image') are", _LEAVE_OUT),
}

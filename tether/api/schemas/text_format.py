"""The `text` setting of a create request, and the `json_object` input rule.

`parse_text` returns the `text` object the Response echoes, whole:
`{"format": {...}, "verbosity": "medium"}`. `format` is `{"type": "text"}` (the
default), `{"type": "json_object"}`, or
`{"type": "json_schema", "name", "schema", "description", "strict"}` with every key of
the SDK's `ResponseFormatTextJSONSchemaConfig` (null where not given). `name` is
`^[a-zA-Z0-9_-]{1,64}$`; `schema` a valid JSON Schema that follows the strict-mode
rules when `strict` is true (400 `invalid_json_schema` at `text.format.schema`).

`require_json_mention` is OpenAI's rule for `json_object`: some input message (or the
instructions) must say "json". It needs the whole context (previous response,
conversation), so the API layer applies it once that is known.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from tether.api.schemas.fields import (
    expect_bool,
    expect_choice,
    expect_name,
    expect_object,
    expect_str,
    invalid_value,
    reject_unknown_keys,
    require,
)
from tether.api.schemas.strict_schema import schema_problem, strict_schema_problem
from tether.errors import InvalidRequestError

FORMAT_TYPES = ("text", "json_schema", "json_object")
VERBOSITIES = ("low", "medium", "high")
JSON_SCHEMA_KEYS = ("type", "name", "schema", "description", "strict")
JSON_MENTION_MESSAGE = (
    "Response input messages must contain the word 'json' in some form to use "
    "'text.format' of type 'json_object'."
)
_TEXT_PARTS = frozenset({"input_text", "output_text", "text"})


def parse_text(value: Any, param: str) -> dict[str, Any]:
    """The validated `text` setting, with the defaults filled in."""
    text = expect_object(value, param)
    reject_unknown_keys(text, ("format", "verbosity"), param)
    result: dict[str, Any] = {"format": {"type": "text"}, "verbosity": "medium"}
    if text.get("format") is not None:
        result["format"] = _format(text["format"], f"{param}.format")
    if text.get("verbosity") is not None:
        result["verbosity"] = expect_choice(text["verbosity"], f"{param}.verbosity", VERBOSITIES)
    return result


def require_json_mention(items: Iterable[dict[str, Any]], instructions: str | None) -> None:
    """Raise 400 (param `input`) unless `instructions` or the text of some message item
    contains "json" in any case."""
    if instructions is not None and "json" in instructions.lower():
        return
    for item in items:
        if item.get("type", "message") == "message" and "json" in _text_of(item).lower():
            return
    raise InvalidRequestError(JSON_MENTION_MESSAGE, param="input")


def _format(value: Any, param: str) -> dict[str, Any]:
    fmt = expect_object(value, param)
    hint = 'Use {"type": "text"}, {"type": "json_object"} or {"type": "json_schema", …}.'
    fmt_type = expect_str(require(fmt, "type", param, hint), f"{param}.type")
    if fmt_type == "json_schema":
        return _json_schema(fmt, param)
    if fmt_type not in FORMAT_TYPES:
        raise invalid_value(f"{param}.type", fmt_type, FORMAT_TYPES)
    reject_unknown_keys(fmt, ("type",), param)
    return {"type": fmt_type}


def _json_schema(fmt: dict[str, Any], param: str) -> dict[str, Any]:
    reject_unknown_keys(fmt, JSON_SCHEMA_KEYS, param)
    hint = "Name the format, e.g. 'weather_report'."
    name = expect_name(require(fmt, "name", param, hint), f"{param}.name")
    hint = "Send the JSON Schema the output must follow."
    schema = expect_object(require(fmt, "schema", param, hint), f"{param}.schema")
    description = fmt.get("description")
    if description is not None:
        description = expect_str(description, f"{param}.description")
    strict = fmt.get("strict")
    if strict is not None:
        strict = expect_bool(strict, f"{param}.strict")
    problem = schema_problem(schema) or (strict_schema_problem(schema) if strict else None)
    if problem:
        raise InvalidRequestError(
            f"Invalid schema for response format '{name}' in '{param}.schema': {problem}. "
            + ("Fix the schema, or set 'strict' to false." if strict else "Fix the schema."),
            param=f"{param}.schema",
            code="invalid_json_schema",
        )
    return {
        "type": "json_schema",
        "name": name,
        "schema": schema,
        "description": description,
        "strict": strict,
    }


def _text_of(item: dict[str, Any]) -> str:
    content = item.get("content")
    if isinstance(content, str):
        return content
    return " ".join(
        part.get("text", "")
        for part in content or ()
        if isinstance(part, dict) and part.get("type") in _TEXT_PARTS
    )

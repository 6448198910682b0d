"""Checks for single JSON values, raising OpenAI-shaped `InvalidRequestError`s.

Each `expect_*` takes the decoded value and its OpenAI-style path (`"temperature"`,
`"input[0].content"`, `"text.format.type"`) and returns the value narrowed to its
Python type, or raises with `param` set to that path. Booleans are never integers or
numbers here (`true` is not `1`). Null handling is the caller's business: these
functions reject `None` as a wrong type.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping
from typing import Any

import orjson

from tether.errors import InvalidRequestError

JSONValue = Any
NAME_PATTERN = re.compile(r"[a-zA-Z0-9_-]+")
NAME_MAX = 64


def describe(value: JSONValue) -> str:
    """The JSON type of `value` with its article, as OpenAI words it: 'a string', 'null'…"""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a decimal number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def show(value: JSONValue) -> str:
    """`value` as it appears in JSON, shortened for an error message."""
    if isinstance(value, str):
        text = value
    elif isinstance(value, int) and not isinstance(value, bool):
        text = str(value)  # orjson cannot encode integers beyond 64 bits
    else:
        text = orjson.dumps(value).decode()
    return text if len(text) <= 80 else text[:77] + "..."


def join(items: Iterable[str]) -> str:
    """`'a', 'b', and 'c'` — OpenAI's list of supported values."""
    quoted = [f"'{item}'" for item in items]
    if len(quoted) <= 2:
        return " and ".join(quoted)
    return ", ".join(quoted[:-1]) + ", and " + quoted[-1]


# -- errors ----------------------------------------------------------------------------


def invalid_type(param: str, expected: str, value: JSONValue) -> InvalidRequestError:
    return InvalidRequestError(
        f"Invalid type for '{param}': expected {expected}, but got {describe(value)} instead.",
        param=param,
        code="invalid_type",
    )


def invalid_value(
    param: str, value: JSONValue, allowed: Iterable[str], hint: str = ""
) -> InvalidRequestError:
    message = f"Invalid value: '{show(value)}'. Supported values are: {join(allowed)}."
    return InvalidRequestError(
        f"{message} {hint}" if hint else message, param=param, code="invalid_value"
    )


def missing(param: str, hint: str = "") -> InvalidRequestError:
    message = f"Missing required parameter: '{param}'."
    return InvalidRequestError(
        f"{message} {hint}" if hint else message, param=param, code="missing_required_parameter"
    )


def unknown_parameter(param: str) -> InvalidRequestError:
    return InvalidRequestError(
        f"Unknown parameter: '{param}'.", param=param, code="unknown_parameter"
    )


def unsupported(param: str, feature: str, hint: str) -> InvalidRequestError:
    return InvalidRequestError(
        f"{feature} not supported by this server yet. {hint}",
        param=param,
        code="unsupported_parameter",
    )


def out_of_range(
    param: str, kind: str, value: float, bound: float, *, above: bool, hint: str = ""
) -> InvalidRequestError:
    """`kind` is 'integer' or 'decimal'; the code is e.g. `integer_below_min_value`."""
    side, limit, sign = ("above", "max", "<=") if above else ("below", "min", ">=")
    message = (
        f"Invalid '{param}': {kind} {side} {'maximum' if above else 'minimum'} value. "
        f"Expected a value {sign} {show(bound)}, but got {show(value)} instead."
    )
    return InvalidRequestError(
        f"{message} {hint}" if hint else message, param=param, code=f"{kind}_{side}_{limit}_value"
    )


def empty_string(param: str, expected: str) -> InvalidRequestError:
    return InvalidRequestError(
        f"Invalid '{param}': empty string. Expected {expected}, but got an empty string instead.",
        param=param,
        code="empty_string",
    )


def too_long(param: str, value: str, limit: int) -> InvalidRequestError:
    return InvalidRequestError(
        f"Invalid '{param}': string too long. Expected a string with maximum length {limit}, "
        f"but got a string with length {len(value)} instead.",
        param=param,
        code="string_above_max_length",
    )


# -- checks ----------------------------------------------------------------------------


def expect_str(value: JSONValue, param: str) -> str:
    if not isinstance(value, str):
        raise invalid_type(param, "a string", value)
    return value


def expect_bool(value: JSONValue, param: str) -> bool:
    if not isinstance(value, bool):
        raise invalid_type(param, "a boolean", value)
    return value


def expect_int(
    value: JSONValue, param: str, *, minimum: int | None = None, maximum: int | None = None
) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise invalid_type(param, "an integer", value)
    if minimum is not None and value < minimum:
        raise out_of_range(param, "integer", value, minimum, above=False)
    if maximum is not None and value > maximum:
        raise out_of_range(param, "integer", value, maximum, above=True)
    return value


def expect_number(value: JSONValue, param: str, *, minimum: float, maximum: float) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise invalid_type(param, "a number", value)
    if value < minimum:
        raise out_of_range(param, "decimal", value, minimum, above=False)
    if value > maximum:
        raise out_of_range(param, "decimal", value, maximum, above=True)
    return float(value)


def expect_object(value: JSONValue, param: str, expected: str = "an object") -> dict[str, Any]:
    if not isinstance(value, dict):
        raise invalid_type(param, expected, value)
    return value


def expect_array(value: JSONValue, param: str, expected: str = "an array") -> list[Any]:
    if not isinstance(value, list):
        raise invalid_type(param, expected, value)
    return value


def expect_choice(value: JSONValue, param: str, choices: Collection[str]) -> str:
    if not isinstance(value, str):
        raise invalid_type(param, f"one of {join(choices)}", value)
    if value not in choices:
        raise invalid_value(param, value, choices)
    return value


def reject_unknown_keys(obj: Mapping[str, Any], allowed: Collection[str], prefix: str) -> None:
    """Raise `unknown_parameter` for the first key of `obj` not in `allowed`."""
    for key in obj:
        if key not in allowed:
            raise unknown_parameter(f"{prefix}.{key}" if prefix else key)


def optional_object(
    obj: Mapping[str, Any], allowed: Mapping[str, Collection[str] | None], prefix: str
) -> dict[str, Any]:
    """Check a small object of optional enum/string fields; return its non-null entries.

    `allowed` maps each key to its permitted strings, or to None for any string.
    """
    reject_unknown_keys(obj, allowed, prefix)
    result: dict[str, Any] = {}
    for key, choices in allowed.items():
        value = obj.get(key)
        if value is None:
            continue
        path = f"{prefix}.{key}"
        result[key] = (
            expect_str(value, path) if choices is None else expect_choice(value, path, choices)
        )
    return result


def require(obj: Mapping[str, Any], key: str, prefix: str, hint: str = "") -> JSONValue:
    """`obj[key]`, or `missing_required_parameter` for `prefix.key` when absent or null."""
    value = obj.get(key)
    if value is None:
        raise missing(f"{prefix}.{key}" if prefix else key, hint)
    return value


def expect_name(value: JSONValue, param: str) -> str:
    """A function or format name: a-z, A-Z, 0-9, `_` and `-`, at most 64 characters."""
    name = expect_str(value, param)
    if len(name) > NAME_MAX:
        raise too_long(param, name, NAME_MAX)
    if not NAME_PATTERN.fullmatch(name):
        raise InvalidRequestError(
            f"Invalid '{param}': string does not match pattern. Expected a string that matches "
            f"the pattern '^[a-zA-Z0-9_-]+$' (letters, digits, '_' and '-'), but got "
            f"'{show(name)}' instead.",
            param=param,
            code="invalid_value",
        )
    return name


def expect_id(value: JSONValue, param: str, prefix: str) -> str:
    """An object id that begins with `prefix` (`resp`, `conv`), as OpenAI checks them."""
    text = expect_str(value, param)
    if not text.startswith(prefix):
        raise InvalidRequestError(
            f"Invalid '{param}': '{show(text)}'. Expected an ID that begins with '{prefix}'.",
            param=param,
            code="invalid_value",
        )
    return text

"""Checks of a finished output against what the request demanded.

With `text.format` json_schema and `strict: true`, the final text must parse and
validate against the schema; with a `strict` function tool, a call's arguments must
validate against its parameters. Upstreams that enforce the format (vLLM guided
decoding, OpenAI) pass these checks; one that broke it makes the response fail with
a clear error instead of returning invalid JSON as a success.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import orjson
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from tether.domain.types import JSONObject
from tether.providers.base import GenerationRequest


def check_output(request: GenerationRequest, output: list[JSONObject]) -> str | None:
    """A message saying how the output breaks a strict format or tool schema, or None."""
    fmt = request.text_format
    if fmt is not None and fmt.get("type") == "json_schema" and fmt.get("strict"):
        for item in output:
            if item.get("type") != "message":
                continue
            text = "".join(
                part.get("text", "")
                for part in item.get("content", [])
                if part.get("type") == "output_text"
            )
            if not text and any(p.get("type") == "refusal" for p in item.get("content", [])):
                continue  # a refusal is allowed in place of the JSON
            problem = _violation(text, fmt.get("schema") or {})
            if problem is not None:
                return (
                    f"The model's output does not match the JSON schema '{fmt.get('name')}' "
                    f"that 'text.format' requires with strict=true: {problem}"
                )
    strict_tools = {
        tool["name"]: tool.get("parameters") or {}
        for tool in request.tools
        if tool.get("type") == "function" and tool.get("strict")
    }
    for item in output:
        if item.get("type") != "function_call" or item.get("name") not in strict_tools:
            continue
        problem = _violation(item.get("arguments", ""), strict_tools[item["name"]])
        if problem is not None:
            return (
                f"The model called function '{item['name']}' with arguments that do not match "
                f"its parameters schema (strict=true): {problem}"
            )
    return None


def _violation(text: str, schema: JSONObject) -> str | None:
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        return f"it is not valid JSON ({exc})."
    error = _validator(orjson.dumps(schema)).best_match_error(value)
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path) or "(root)"
    return f"at {where}: {error.message}."


class _Validator:
    def __init__(self, schema: Any) -> None:
        self._validator = Draft202012Validator(schema)

    def best_match_error(self, value: Any) -> ValidationError | None:
        errors = sorted(self._validator.iter_errors(value), key=lambda e: e.path)
        return errors[0] if errors else None


@lru_cache(maxsize=64)
def _validator(schema: bytes) -> _Validator:
    return _Validator(orjson.loads(schema))

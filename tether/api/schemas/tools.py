"""`tools` and `tool_choice` of a create request.

Function tools are checked in full and returned as the Response echoes them:
`{"type": "function", "name", "description", "parameters", "strict"}`. `name` is
`^[a-zA-Z0-9_-]{1,64}$` and unique; `parameters` is a valid JSON Schema, which must
follow the strict-mode rules (`strict_schema`) when `strict` is true. Schema problems
are 400 `invalid_function_parameters` at `tools[i].parameters`.

Hosted tools (`web_search`, `file_search`, `mcp`, …: the tool types of the OpenAI
SDK's `ToolParam`) run on OpenAI's side. They are taken, as given, only for models
whose provider passes tools through to a Responses upstream (`hosted=True`); for other
models they are `unsupported_parameter`. So are the function-tool keys that only such
an upstream acts on (`defer_loading`, `async`, `output_schema`, programmatic callers).

`tool_choice` is "none", "auto", "required" (which needs tools),
`{"type": "function", "name"}` naming a function tool, or
`{"type": "allowed_tools", "mode", "tools"}`; hosted choices (`{"type": "mcp", …}`,
`{"type": "web_search_preview"}`, …) only for `hosted` models.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from tether.api.schemas.fields import (
    expect_array,
    expect_bool,
    expect_choice,
    expect_name,
    expect_object,
    expect_str,
    invalid_value,
    reject_unknown_keys,
    require,
    unsupported,
)
from tether.api.schemas.strict_schema import schema_problem, strict_schema_problem
from tether.errors import InvalidRequestError

FUNCTION_KEYS = frozenset({"type", "name", "description", "parameters", "strict"})
# Function-tool keys that only a Responses upstream acts on, with their no-op values.
UPSTREAM_KEYS: dict[str, Any] = {
    "allowed_callers": ["direct"],
    "async": False,
    "defer_loading": False,
    "output_schema": None,
}
# Every tool `type` of the OpenAI SDK's `ToolParam` but "function".
HOSTED_TOOL_TYPES = frozenset(
    {
        "apply_patch", "code_interpreter", "computer", "computer_use_preview", "custom",
        "file_search", "image_generation", "local_shell", "mcp", "namespace",
        "programmatic_tool_calling", "shell", "tool_search", "web_search",
        "web_search_2025_08_26", "web_search_preview", "web_search_preview_2025_03_11",
    }
)  # fmt: skip
# Every object `type` of the SDK's `ToolChoice` but "function" and "allowed_tools".
HOSTED_CHOICE_TYPES = frozenset(
    {
        "apply_patch", "code_interpreter", "computer", "computer_use", "computer_use_preview",
        "custom", "file_search", "image_generation", "mcp", "programmatic_tool_calling",
        "shell", "web_search_preview", "web_search_preview_2025_03_11",
    }
)  # fmt: skip
TOOL_TYPES = ("function", *sorted(HOSTED_TOOL_TYPES))
CHOICE_TYPES = ("function", "allowed_tools", *sorted(HOSTED_CHOICE_TYPES))
_HOSTED_HINT = (
    "Hosted tools run only on models served by a Responses upstream; use function tools "
    '({"type": "function", "name", "parameters"}) with this model.'
)

Tool = dict[str, Any]


def parse_tools(value: Any, param: str, *, hosted: bool) -> list[Tool]:
    """The validated `tools` list; raises `InvalidRequestError` (400)."""
    tools: list[Tool] = []
    seen: dict[str, int] = {}
    for index, raw in enumerate(expect_array(value, param)):
        path = f"{param}[{index}]"
        tool = expect_object(raw, path, "a tool object")
        hint = 'Use "function" for a function tool.'
        tool_type = expect_str(require(tool, "type", path, hint), f"{path}.type")
        if tool_type == "function":
            tool = _function(tool, path, hosted)
            if tool["name"] in seen:
                raise InvalidRequestError(
                    f"Invalid '{path}.name': duplicate function name '{tool['name']}' (also "
                    f"{param}[{seen[tool['name']]}]). Give each function tool its own name.",
                    param=f"{path}.name",
                    code="invalid_value",
                )
            seen[tool["name"]] = index
        else:
            _hosted(tool_type, path, hosted)
        tools.append(tool)
    return tools


def parse_tool_choice(value: Any, param: str, tools: list[Tool], *, hosted: bool) -> str | Tool:
    """The validated `tool_choice`, checked against the validated `tools`."""
    if not isinstance(value, dict):
        expected = "one of 'none', 'auto', and 'required', or a tool choice object"
        if not isinstance(value, str):
            expect_object(value, param, expected)
        choice = expect_choice(value, param, ("none", "auto", "required"))
        if choice == "required" and not tools:
            raise InvalidRequestError(
                "Invalid value for 'tool_choice': \"required\" makes the model call a tool, but "
                "'tools' is empty. Add tools, or set 'tool_choice' to \"auto\" or \"none\".",
                param=param,
                code="invalid_value",
            )
        return choice
    hint = 'Use {"type": "function", "name": …}.'
    choice_type = expect_str(require(value, "type", param, hint), f"{param}.type")
    names = _function_names(tools)
    if choice_type == "function":
        return _named_function(value, param, names)
    if choice_type == "allowed_tools":
        return _allowed_tools(value, param, names, hosted)
    _hosted(choice_type, param, hosted, choice=True)
    return dict(value)


def _function(tool: Tool, path: str, hosted: bool) -> Tool:
    reject_unknown_keys(tool, FUNCTION_KEYS | UPSTREAM_KEYS.keys(), path)
    hint = "Name the function, e.g. 'get_weather'."
    name = expect_name(require(tool, "name", path, hint), f"{path}.name")
    result: Tool = {"type": "function", "name": name, "description": None}
    if tool.get("description") is not None:
        result["description"] = expect_str(tool["description"], f"{path}.description")
    strict = tool.get("strict")
    result["strict"] = None if strict is None else expect_bool(strict, f"{path}.strict")
    result["parameters"] = None
    if tool.get("parameters") is not None:
        schema = expect_object(tool["parameters"], f"{path}.parameters", "a JSON Schema object")
        problem = schema_problem(schema) or (strict_schema_problem(schema) if strict else None)
        if problem:
            raise InvalidRequestError(
                f"Invalid schema for function '{name}' in '{path}.parameters': {problem}. "
                + ("Fix the schema, or set 'strict' to false." if strict else "Fix the schema."),
                param=f"{path}.parameters",
                code="invalid_function_parameters",
            )
        result["parameters"] = schema
    result |= _upstream_keys(tool, path, hosted)
    return result


def _upstream_keys(tool: Tool, path: str, hosted: bool) -> Tool:
    """Check the keys only a Responses upstream acts on; keep them for `hosted` models."""
    given: Tool = {}
    if tool.get("allowed_callers") is not None:
        callers = expect_array(tool["allowed_callers"], f"{path}.allowed_callers")
        for index, caller in enumerate(callers):
            expect_choice(caller, f"{path}.allowed_callers[{index}]", ("direct", "programmatic"))
        given["allowed_callers"] = callers
    for key in ("async", "defer_loading"):
        if tool.get(key) is not None:
            given[key] = expect_bool(tool[key], f"{path}.{key}")
    if tool.get("output_schema") is not None:
        schema = expect_object(tool["output_schema"], f"{path}.output_schema")
        problem = schema_problem(schema)
        if problem:
            raise InvalidRequestError(
                f"Invalid 'output_schema' in '{path}': {problem}. Fix the schema.",
                param=f"{path}.output_schema",
                code="invalid_value",
            )
        given["output_schema"] = schema
    if hosted:
        return given
    for key, value in given.items():
        if key == "allowed_callers" and "programmatic" not in value:
            continue
        if value != UPSTREAM_KEYS[key]:
            raise unsupported(
                f"{path}.{key}",
                f"'{key}' on function tools is",
                "Only models served by a Responses upstream take it; leave it out.",
            )
    return {}


def _hosted(kind: str, param: str, hosted: bool, *, choice: bool = False) -> None:
    """Accept a hosted tool (or tool choice) type for `hosted` models; raise otherwise."""
    if kind not in (HOSTED_CHOICE_TYPES if choice else HOSTED_TOOL_TYPES):
        raise invalid_value(f"{param}.type", kind, CHOICE_TYPES if choice else TOOL_TYPES)
    if not hosted:
        raise unsupported(param, f"Hosted tools (type '{kind}') are", _HOSTED_HINT)


def _named_function(choice: Tool, param: str, names: Collection[str]) -> Tool:
    reject_unknown_keys(choice, ("type", "name"), param)
    hint = "Name one of the function tools in 'tools'."
    name = expect_str(require(choice, "name", param, hint), f"{param}.name")
    if not names:
        raise InvalidRequestError(
            f"Invalid '{param}.name': '{name}' names a function, but 'tools' has no function "
            "tools. Add the function to 'tools', or set 'tool_choice' to \"auto\".",
            param=f"{param}.name",
            code="invalid_value",
        )
    if name not in names:
        raise invalid_value(
            f"{param}.name", name, sorted(names), "Name one of the function tools in 'tools'."
        )
    return {"type": "function", "name": name}


def _allowed_tools(choice: Tool, param: str, names: Collection[str], hosted: bool) -> Tool:
    reject_unknown_keys(choice, ("type", "mode", "tools"), param)
    mode = expect_choice(require(choice, "mode", param), f"{param}.mode", ("auto", "required"))
    entries = expect_array(require(choice, "tools", param), f"{param}.tools")
    if not entries:
        raise InvalidRequestError(
            f"Invalid '{param}.tools': empty array. Expected an array with minimum length 1, "
            "but got an empty array instead. List the tools the model may call.",
            param=f"{param}.tools",
            code="empty_array",
        )
    allowed: list[Tool] = []
    for index, raw in enumerate(entries):
        path = f"{param}.tools[{index}]"
        entry = expect_object(raw, path, "a tool object")
        entry_type = expect_str(require(entry, "type", path), f"{path}.type")
        if entry_type == "function":
            allowed.append(_named_function(entry, path, names))
        else:
            _hosted(entry_type, path, hosted)
            allowed.append(dict(entry))
    return {"type": "allowed_tools", "mode": mode, "tools": allowed}


def _function_names(tools: list[Tool]) -> set[str]:
    """Names of the function tools, including those inside hosted `namespace` tools."""
    names: set[str] = set()
    for tool in tools:
        nested = tool.get("tools") if tool.get("type") == "namespace" else None
        for function in [tool, *(nested if isinstance(nested, list) else [])]:
            if isinstance(function, dict) and function.get("type") == "function":
                name = function.get("name")
                if isinstance(name, str):
                    names.add(name)
    return names

"""Validation of the `input` field: a string, or a list of input items.

Item types: `message` (the default when `type` is absent), `function_call`,
`function_call_output`, `reasoning` and `item_reference` (an item with only an `id`
is one too; the API layer resolves it against the stored context). Message roles take
these parts: `user` input_text / input_image / input_file; `system` and `developer`
input_text; `assistant` output_text / refusal (see `parts`).

The other item types of OpenAI's SDK belong to hosted tools (`web_search_call`,
`computer_call`, `mcp_call`, …): they are accepted as objects, unchanged, only for
models whose provider passes hosted tools through (`hosted=True`), and are
`unsupported_parameter` otherwise. Types OpenAI does not know are `invalid_value`.
Two items with the same `id` are refused, as OpenAI does.

`validate_input` returns a cleaned copy fit for `tether.domain.items.normalize_input`:
only known keys, nulls dropped.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tether.api.schemas.fields import (
    expect_array,
    expect_bool,
    expect_choice,
    expect_object,
    expect_str,
    invalid_type,
    invalid_value,
    missing,
    reject_unknown_keys,
    require,
    unsupported,
)
from tether.api.schemas.parts import INPUT_PARTS, validate_part
from tether.errors import InvalidRequestError

ROLES = ("user", "assistant", "system", "developer")
PHASES = ("commentary", "final_answer")
STATUSES = ("in_progress", "completed", "incomplete")
ITEM_TYPES = ("message", "function_call", "function_call_output", "reasoning", "item_reference")
ROLE_PARTS = {
    "user": INPUT_PARTS,
    "system": ("input_text",),
    "developer": ("input_text",),
    "assistant": ("output_text", "refusal"),
}
MESSAGE_KEYS = frozenset({"type", "role", "content", "phase", "id", "status"})
FUNCTION_CALL_KEYS = frozenset(
    {"type", "call_id", "name", "arguments", "id", "status", "namespace", "caller", "async"}
)
FUNCTION_OUTPUT_KEYS = frozenset(
    {"type", "call_id", "output", "id", "status", "caller", "name", "namespace"}
)
REASONING_KEYS = frozenset({"type", "id", "summary", "content", "encrypted_content", "status"})

# The other input item types of the OpenAI SDK (`ResponseInputItemParam`).
HOSTED_ITEMS = frozenset(
    {
        "additional_tools", "apply_patch_call", "apply_patch_call_output",
        "code_interpreter_call", "compaction", "compaction_trigger", "computer_call",
        "computer_call_output", "configuration_update", "custom_tool_call",
        "custom_tool_call_output", "file_search_call", "image_generation_call",
        "local_shell_call", "local_shell_call_output", "mcp_approval_request",
        "mcp_approval_response", "mcp_call", "mcp_list_tools", "program", "program_output",
        "shell_call", "shell_call_output", "tool_search_call", "tool_search_output",
        "web_search_call",
    }
)  # fmt: skip

Item = dict[str, Any]


def validate_input(value: Any, *, hosted: bool = False) -> str | list[Item]:
    """Check `input` and return a cleaned copy; raise `InvalidRequestError` (400).

    `hosted`: the model's provider takes hosted-tool items (a Responses upstream).
    """
    if isinstance(value, str):
        return value
    items = expect_array(value, "input", "a string or an array of input items")
    if not items:
        raise InvalidRequestError(
            "Invalid 'input': empty array. Expected an array with minimum length 1, but got an "
            "empty array instead. Send at least one message, or a string.",
            param="input",
            code="empty_array",
        )
    cleaned = [_item(item, f"input[{index}]", hosted) for index, item in enumerate(items)]
    _reject_duplicate_ids(cleaned)
    return cleaned


def _item(value: Any, path: str, hosted: bool) -> Item:
    item = expect_object(value, path, "an input item object")
    item_type = item.get("type")
    if item_type is None:
        is_reference = "id" in item and "role" not in item and "content" not in item
        item_type = "item_reference" if is_reference else "message"
    if not isinstance(item_type, str):
        raise invalid_type(f"{path}.type", "a string", item_type)
    check = _CHECKS.get(item_type)
    if check is not None:
        return check(item, path)
    if item_type not in HOSTED_ITEMS:
        raise invalid_value(f"{path}.type", item_type, ITEM_TYPES)
    if not hosted:
        raise unsupported(
            path,
            f"Input items of type '{item_type}' (hosted tools) are",
            "Only models served by a Responses upstream take them; send message, "
            "function_call, function_call_output, reasoning or item_reference items.",
        )
    return dict(item)


def _message(item: Item, path: str) -> Item:
    reject_unknown_keys(item, MESSAGE_KEYS, path)
    if item.get("role") is None:
        raise missing(f"{path}.role", f"Set it to one of {', '.join(ROLES)}.")
    role = expect_choice(item["role"], f"{path}.role", ROLES)
    content = require(item, "content", path, "Send a string or a list of content parts.")
    result: Item = {"type": "message", "role": role}
    if isinstance(content, str):
        result["content"] = content
    else:
        parts = expect_array(content, f"{path}.content", "a string or an array of content parts")
        hint = f"A message with role '{role}' takes only these part types."
        result["content"] = [
            validate_part(part, ROLE_PARTS[role], f"{path}.content[{index}]", hint)
            for index, part in enumerate(parts)
        ]
    if item.get("phase") is not None:
        result["phase"] = expect_choice(item["phase"], f"{path}.phase", PHASES)
    _common(item, path, result)
    return result


def _function_call(item: Item, path: str) -> Item:
    reject_unknown_keys(item, FUNCTION_CALL_KEYS, path)
    result: Item = {"type": "function_call"}
    for key in ("call_id", "name", "arguments"):
        result[key] = expect_str(require(item, key, path), f"{path}.{key}")
    if item.get("namespace") is not None:
        result["namespace"] = expect_str(item["namespace"], f"{path}.namespace")
    if item.get("async") is not None:
        result["async"] = expect_bool(item["async"], f"{path}.async")
    return _common(item, path, result)


def _function_call_output(item: Item, path: str) -> Item:
    reject_unknown_keys(item, FUNCTION_OUTPUT_KEYS, path)
    call_id = expect_str(require(item, "call_id", path), f"{path}.call_id")
    output = require(item, "output", path, "Send the function's result as a string.")
    result: Item = {"type": "function_call_output", "call_id": call_id}
    if isinstance(output, str):
        result["output"] = output
    else:
        parts = expect_array(output, f"{path}.output", "a string or an array of content parts")
        hint = "A function_call_output takes only these part types."
        result["output"] = [
            validate_part(part, INPUT_PARTS, f"{path}.output[{index}]", hint)
            for index, part in enumerate(parts)
        ]
    for key in ("name", "namespace"):
        if item.get(key) is not None:
            result[key] = expect_str(item[key], f"{path}.{key}")
    return _common(item, path, result)


def _reasoning(item: Item, path: str) -> Item:
    reject_unknown_keys(item, REASONING_KEYS, path)
    summary = require(item, "summary", path, 'Send a list of {"type": "summary_text", "text"}.')
    result: Item = {"type": "reasoning", "summary": _texts(summary, f"{path}.summary", "summary")}
    if item.get("content") is not None:
        result["content"] = _texts(item["content"], f"{path}.content", "reasoning")
    if item.get("encrypted_content") is not None:
        result["encrypted_content"] = expect_str(
            item["encrypted_content"], f"{path}.encrypted_content"
        )
    return _common(item, path, result)


def _item_reference(item: Item, path: str) -> Item:
    reject_unknown_keys(item, ("type", "id"), path)
    item_id = expect_str(require(item, "id", path, "Name the item to reference."), f"{path}.id")
    return {"type": "item_reference", "id": item_id}


def _common(item: Item, path: str, result: Item) -> Item:
    """`id`, `status` and `caller`, which several item types share."""
    if item.get("id") is not None:
        result["id"] = expect_str(item["id"], f"{path}.id")
    if item.get("status") is not None:
        status = expect_choice(item["status"], f"{path}.status", STATUSES)
        if result["type"] != "message":  # a message's status is always `completed`
            result["status"] = status
    if item.get("caller") is not None:
        result["caller"] = _caller(item["caller"], f"{path}.caller")
    return result


def _caller(value: Any, path: str) -> Item:
    caller = expect_object(value, path)
    kind = expect_choice(require(caller, "type", path), f"{path}.type", ("direct", "program"))
    if kind == "direct":
        reject_unknown_keys(caller, ("type",), path)
        return {"type": "direct"}
    reject_unknown_keys(caller, ("type", "caller_id"), path)
    caller_id = expect_str(require(caller, "caller_id", path), f"{path}.caller_id")
    return {"type": "program", "caller_id": caller_id}


def _texts(value: Any, path: str, kind: str) -> list[Item]:
    """A reasoning item's `summary` (`summary_text` parts) or `content` (`reasoning_text`)."""
    part_type = f"{kind}_text"
    result = []
    for index, raw in enumerate(expect_array(value, path)):
        part_path = f"{path}[{index}]"
        part = expect_object(raw, part_path, f"a {part_type} object")
        reject_unknown_keys(part, ("type", "text"), part_path)
        expect_choice(require(part, "type", part_path), f"{part_path}.type", (part_type,))
        text = expect_str(require(part, "text", part_path), f"{part_path}.text")
        result.append({"type": part_type, "text": text})
    return result


def _reject_duplicate_ids(items: list[Item]) -> None:
    seen: dict[str, int] = {}
    for index, item in enumerate(items):
        item_id = item.get("id")
        if item.get("type") == "item_reference" or not isinstance(item_id, str):
            continue
        if item_id in seen:
            raise InvalidRequestError(
                f"Duplicate item found with id '{item_id}' (input[{seen[item_id]}] and "
                f"input[{index}]). Remove duplicate items from your input and try again.",
                param=f"input[{index}].id",
                code="invalid_value",
            )
        seen[item_id] = index


_CHECKS: dict[str, Callable[[Item, str], Item]] = {
    "message": _message,
    "function_call": _function_call,
    "function_call_output": _function_call_output,
    "reasoning": _reasoning,
    "item_reference": _item_reference,
}

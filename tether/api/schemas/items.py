"""Validation of the `input` field: a string, or a list of message items.

Only messages with text are supported for now. Message parts `input_image`,
`input_file` and `input_audio`, and every OpenAI item type other than `message`
(`function_call`, `reasoning`, `item_reference`, …), are rejected as
`unsupported_parameter`; types OpenAI does not know are `invalid_value`.

`validate_input` returns a cleaned copy fit for `tether.domain.items.normalize_input`:
only known keys, nulls dropped, `output_text` parts given `annotations: []` if absent.
"""

from __future__ import annotations

from typing import Any

from tether.api.schemas.fields import (
    expect_array,
    expect_choice,
    expect_object,
    expect_str,
    invalid_type,
    invalid_value,
    missing,
    reject_unknown_keys,
    unsupported,
)
from tether.errors import InvalidRequestError

ROLES = ("user", "assistant", "system", "developer")
PHASES = ("commentary", "final_answer")
STATUSES = ("in_progress", "completed", "incomplete")
MESSAGE_KEYS = frozenset({"type", "role", "content", "phase", "id", "status"})

# Part types each role may send, and the keys each part type may carry.
ROLE_PARTS = {
    "user": ("input_text",),
    "system": ("input_text",),
    "developer": ("input_text",),
    "assistant": ("output_text", "refusal"),
}
PART_KEYS = {
    "input_text": frozenset({"type", "text", "prompt_cache_breakpoint"}),
    "output_text": frozenset({"type", "text", "annotations", "logprobs"}),
    "refusal": frozenset({"type", "refusal"}),
}
UNSUPPORTED_PARTS = frozenset({"input_image", "input_file", "input_audio"})

# Every non-message input item type of the OpenAI SDK (`ResponseInputItemParam`).
UNSUPPORTED_ITEMS = frozenset(
    {
        "additional_tools", "apply_patch_call", "apply_patch_call_output",
        "code_interpreter_call", "compaction", "compaction_trigger", "computer_call",
        "computer_call_output", "configuration_update", "custom_tool_call",
        "custom_tool_call_output", "file_search_call", "function_call",
        "function_call_output", "image_generation_call", "item_reference",
        "local_shell_call", "local_shell_call_output", "mcp_approval_request",
        "mcp_approval_response", "mcp_call", "mcp_list_tools", "program", "program_output",
        "reasoning", "shell_call", "shell_call_output", "tool_search_call",
        "tool_search_output", "web_search_call",
    }
)  # fmt: skip

_ONLY_TEXT = "Send messages whose content is a string or a list of text parts."


def validate_input(value: Any) -> str | list[dict[str, Any]]:
    """Check `input` and return a cleaned copy; raise `InvalidRequestError` (400)."""
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
    return [_item(item, f"input[{index}]") for index, item in enumerate(items)]


def _item(value: Any, path: str) -> dict[str, Any]:
    item = expect_object(value, path, "an input item object")
    item_type = item.get("type")
    if item_type is not None and item_type != "message":
        if not isinstance(item_type, str):
            raise invalid_type(f"{path}.type", "a string", item_type)
        if item_type in UNSUPPORTED_ITEMS:
            raise unsupported(
                path,
                f"Input items of type '{item_type}' are",
                "Send only message items ({role, content}).",
            )
        raise invalid_value(f"{path}.type", item_type, ("message",))
    return _message(item, path)


def _message(item: dict[str, Any], path: str) -> dict[str, Any]:
    reject_unknown_keys(item, MESSAGE_KEYS, path)
    if item.get("role") is None:
        raise missing(f"{path}.role", f"Set it to one of {', '.join(ROLES)}.")
    role = expect_choice(item["role"], f"{path}.role", ROLES)
    if item.get("content") is None:
        raise missing(f"{path}.content", "Send a string or a list of content parts.")
    content = item["content"]
    result: dict[str, Any] = {"type": "message", "role": role}
    if isinstance(content, str):
        result["content"] = content
    else:
        parts = expect_array(content, f"{path}.content", "a string or an array of content parts")
        result["content"] = [
            _part(part, role, f"{path}.content[{index}]") for index, part in enumerate(parts)
        ]
    if item.get("phase") is not None:
        result["phase"] = expect_choice(item["phase"], f"{path}.phase", PHASES)
    if item.get("id") is not None:
        result["id"] = expect_str(item["id"], f"{path}.id")
    if item.get("status") is not None:
        expect_choice(item["status"], f"{path}.status", STATUSES)
    return result


def _part(value: Any, role: str, path: str) -> dict[str, Any]:
    part = expect_object(value, path, "a content part object")
    if part.get("type") is None:
        raise missing(f"{path}.type", f"Use one of {', '.join(ROLE_PARTS[role])}.")
    part_type = expect_str(part["type"], f"{path}.type")
    if part_type in UNSUPPORTED_PARTS:
        raise unsupported(path, f"Content parts of type '{part_type}' are", _ONLY_TEXT)
    if part_type not in ROLE_PARTS[role]:
        raise invalid_value(
            f"{path}.type",
            part_type,
            ROLE_PARTS[role],
            f"A message with role '{role}' takes only these part types.",
        )
    reject_unknown_keys(part, PART_KEYS[part_type], path)
    field = "refusal" if part_type == "refusal" else "text"
    if part.get(field) is None:
        raise missing(f"{path}.{field}")
    result: dict[str, Any] = {"type": part_type, field: expect_str(part[field], f"{path}.{field}")}
    if part_type == "output_text":
        annotations = part.get("annotations")
        result["annotations"] = (
            [] if annotations is None else expect_array(annotations, f"{path}.annotations")
        )
        if part.get("logprobs") is not None:
            result["logprobs"] = expect_array(part["logprobs"], f"{path}.logprobs")
    elif part_type == "input_text" and part.get("prompt_cache_breakpoint") is not None:
        breakpoint_ = part["prompt_cache_breakpoint"]
        result["prompt_cache_breakpoint"] = expect_object(
            breakpoint_, f"{path}.prompt_cache_breakpoint"
        )
    return result

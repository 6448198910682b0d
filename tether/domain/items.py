"""Input items in one normalized shape, as stored and as listed by `input_items`.

Every input becomes a list of items, each with an `id`. A message item always has a
`role`, `status: "completed"` and `content` as a list of parts:

    "Hello"  →  [{"id": "msg_…", "type": "message", "role": "user", "status": "completed",
                  "content": [{"type": "input_text", "text": "Hello"}]}]

String content of assistant messages becomes `output_text` parts; of other roles,
`input_text` parts. Other items keep their fields and get an id when they come
without one (`fc_…` for `function_call`, `fco_…` for `function_call_output`, `rs_…`
for `reasoning`, `item_…` for the rest); `function_call` and `function_call_output`
get `status: "completed"` when they have none. An `item_reference` is kept as it is:
the API layer replaces it by the item it names. Validation of the raw shapes happens
in the API layer; this module assumes well-formed input.
"""

from __future__ import annotations

from collections.abc import Callable

from tether.domain.ids import (
    function_call_id,
    function_call_output_id,
    item_id,
    message_id,
    reasoning_id,
)
from tether.domain.types import JSONObject

# The id maker of each non-message item type; other types get `item_…` ids.
ITEM_IDS: dict[str, Callable[[], str]] = {
    "function_call": function_call_id,
    "function_call_output": function_call_output_id,
    "reasoning": reasoning_id,
}
# Item types that are `completed` unless they say otherwise.
COMPLETED_BY_DEFAULT = frozenset({"function_call", "function_call_output"})
# The part types whose `text` is message text.
TEXT_PARTS = frozenset({"input_text", "output_text", "text"})


def normalize_input(
    raw: str | list[JSONObject], new_id: Callable[[], str] = message_id
) -> list[JSONObject]:
    """The normalized items of a create request's `input`; `new_id` makes message ids."""
    if isinstance(raw, str):
        return [_message("user", [_text_part("user", raw)], new_id())]
    return [normalize_item(item, new_id) for item in raw]


def normalize_item(item: JSONObject, new_id: Callable[[], str] = message_id) -> JSONObject:
    """One item in its normalized shape (a new dict; `item` is not changed)."""
    item_type = item.get("type", "message")
    if item_type == "item_reference":
        return dict(item)
    if item_type != "message":
        result: JSONObject = {"id": item.get("id") or ITEM_IDS.get(item_type, item_id)(), **item}
        if item_type in COMPLETED_BY_DEFAULT and result.get("status") is None:
            result["status"] = "completed"
        return result
    role = item["role"]
    content = item["content"]
    parts = [_text_part(role, content)] if isinstance(content, str) else [dict(p) for p in content]
    message = _message(role, parts, item.get("id") or new_id())
    if "phase" in item:
        message["phase"] = item["phase"]
    return message


def message_text(item: JSONObject) -> str:
    """The concatenated text of a message item's text parts."""
    return "".join(
        part.get("text", "") for part in item.get("content", []) if part.get("type") in TEXT_PARTS
    )


def _message(role: str, parts: list[JSONObject], item_id: str) -> JSONObject:
    return {"id": item_id, "type": "message", "role": role, "status": "completed", "content": parts}


def _text_part(role: str, text: str) -> JSONObject:
    if role == "assistant":
        return {"type": "output_text", "text": text, "annotations": []}
    return {"type": "input_text", "text": text}

"""Input items in one normalized shape, as stored and as listed by `input_items`.

Every input becomes a list of items; a message item always has an `id`, a `role`,
`status: "completed"` and `content` as a list of parts:

    "Hello"  →  [{"id": "msg_…", "type": "message", "role": "user", "status": "completed",
                  "content": [{"type": "input_text", "text": "Hello"}]}]

String content of assistant messages becomes `output_text` parts; of other roles,
`input_text` parts. Validation of the raw shapes happens in the API layer; this
module assumes well-formed input.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tether.domain.ids import message_id
from tether.domain.types import JSONObject


def normalize_input(
    raw: str | list[Any], new_id: Callable[[], str] = message_id
) -> list[JSONObject]:
    if isinstance(raw, str):
        return [_message("user", [_text_part("user", raw)], new_id())]
    return [normalize_item(item, new_id) for item in raw]


def normalize_item(item: JSONObject, new_id: Callable[[], str] = message_id) -> JSONObject:
    item_type = item.get("type", "message")
    if item_type != "message":
        return {"id": item.get("id") or new_id(), **item}
    role = item["role"]
    content = item["content"]
    parts = [_text_part(role, content)] if isinstance(content, str) else [dict(p) for p in content]
    result = _message(role, parts, item.get("id") or new_id())
    if "phase" in item:
        result["phase"] = item["phase"]
    return result


def message_text(item: JSONObject) -> str:
    """The concatenated text of a message item's text parts."""
    return "".join(
        part.get("text", "")
        for part in item.get("content", [])
        if part.get("type") in ("input_text", "output_text", "text")
    )


def _message(role: str, parts: list[JSONObject], item_id: str) -> JSONObject:
    return {"id": item_id, "type": "message", "role": role, "status": "completed", "content": parts}


def _text_part(role: str, text: str) -> JSONObject:
    if role == "assistant":
        return {"type": "output_text", "text": text, "annotations": []}
    return {"type": "input_text", "text": text}

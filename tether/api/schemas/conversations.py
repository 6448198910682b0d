"""Validation of the `/v1/conversations` bodies and query strings.

* `parse_create_conversation` — `POST /v1/conversations`: optional `items` (at most
  20 input items, normalized with ids) and `metadata`.
* `parse_update_conversation` — `POST /v1/conversations/{id}`: `metadata`
  (required key; null clears it).
* `parse_add_items` — `POST /v1/conversations/{id}/items`: `items` (1 to 20).
* `parse_items_query` / `parse_include` — the query strings of the item routes:
  `after`, `limit` (1 to 100, default 20), `order` (asc|desc, default desc) and
  `include` (`include[]`), accepted and checked but with nothing extra to add, since
  items are returned as stored.

Items are checked by `schemas.items.validate_input`, the same rules as a response's
`input`. Errors are `InvalidRequestError` (400) with `param` in OpenAI's style.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from tether.api.schemas.fields import (
    describe,
    expect_array,
    expect_object,
    expect_str,
    invalid_value,
    missing,
    out_of_range,
    reject_unknown_keys,
    too_long,
    unsupported,
)
from tether.api.schemas.items import validate_input
from tether.domain.items import normalize_input
from tether.domain.types import JSONObject
from tether.errors import InvalidRequestError

MAX_ITEMS = 20
METADATA_MAX_PAIRS, METADATA_MAX_KEY, METADATA_MAX_VALUE = 16, 64, 512
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


@dataclass(frozen=True, slots=True)
class NewConversation:
    items: list[JSONObject]  # normalized, each with an id
    metadata: dict[str, str]


@dataclass(frozen=True, slots=True)
class ItemsQuery:
    after: str | None
    limit: int
    order: Literal["asc", "desc"]
    include: tuple[str, ...]


# --- bodies ---------------------------------------------------------------------


def parse_create_conversation(body: bytes) -> NewConversation:
    data = _load(body, 'Send a JSON object, e.g. {} or {"items": [...], "metadata": {...}}.')
    reject_unknown_keys(data, ("items", "metadata"), "")
    items = data.get("items")
    metadata = data.get("metadata")
    return NewConversation(
        items=[] if items is None else _items(items, allow_empty=True),
        metadata={} if metadata is None else _metadata(metadata),
    )


def parse_update_conversation(body: bytes) -> dict[str, str]:
    """The new metadata; null (`{"metadata": null}`) clears it."""
    data = _load(body, 'Send a JSON object with \'metadata\', e.g. {"metadata": {"k": "v"}}.')
    reject_unknown_keys(data, ("metadata",), "")
    if "metadata" not in data:
        raise missing("metadata", "Send the new metadata object, or null to clear it.")
    metadata = data["metadata"]
    return {} if metadata is None else _metadata(metadata)


def parse_add_items(body: bytes) -> list[JSONObject]:
    data = _load(body, "Send a JSON object with 'items', a list of 1 to 20 input items.")
    reject_unknown_keys(data, ("items",), "")
    if data.get("items") is None:
        raise missing("items", "Send a list of 1 to 20 input items.")
    return _items(data["items"], allow_empty=False)


def _load(body: bytes, hint: str) -> dict[str, Any]:
    if not body.strip():
        return {}
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise InvalidRequestError(
            f"We could not parse the JSON body of your request: it is not valid JSON. {hint}"
        ) from None
    if not isinstance(data, dict):
        raise InvalidRequestError(
            f"The JSON body of your request is {describe(data)}, not an object. {hint}"
        )
    return data


def _items(value: Any, *, allow_empty: bool) -> list[JSONObject]:
    items = expect_array(value, "items", "an array of input items")
    if len(items) > MAX_ITEMS:
        raise InvalidRequestError(
            f"Invalid 'items': array too long. Expected an array with maximum length "
            f"{MAX_ITEMS}, but got an array with length {len(items)} instead. Add the items in "
            f"several calls of at most {MAX_ITEMS}.",
            param="items",
            code="array_above_max_length",
        )
    if not items:
        if allow_empty:
            return []
        raise InvalidRequestError(
            "Invalid 'items': empty array. Expected an array with minimum length 1, but got an "
            "empty array instead. Send at least one item.",
            param="items",
            code="empty_array",
        )
    try:
        cleaned = validate_input(items)
    except InvalidRequestError as exc:
        raise _as_items_error(exc) from None
    for index, item in enumerate(cleaned):
        if isinstance(item, dict) and item.get("type") == "item_reference":
            raise unsupported(
                f"items[{index}]",
                f"'items[{index}]' is an item reference; item references in conversation items are",
                "Send the item itself, or leave it out if the conversation already holds it.",
            )
    return normalize_input(cleaned)


def _as_items_error(exc: InvalidRequestError) -> InvalidRequestError:
    """`validate_input` names the `input` field of a response create; here the same
    items come as `items`, so point the error at `items[…]` instead."""
    param = exc.param
    if param is None or not param.startswith("input"):
        return exc
    renamed = "items" + param[len("input") :]
    return InvalidRequestError(
        exc.message.replace(f"'{param}'", f"'{renamed}'"), param=renamed, code=exc.code
    )


def _metadata(value: Any) -> dict[str, str]:
    metadata = expect_object(value, "metadata")
    if len(metadata) > METADATA_MAX_PAIRS:
        raise InvalidRequestError(
            f"Invalid 'metadata': too many properties. Expected an object with at most "
            f"{METADATA_MAX_PAIRS} properties, but got an object with {len(metadata)} "
            "properties instead. Remove some keys.",
            param="metadata",
            code="object_above_max_properties",
        )
    for key, item in metadata.items():
        if len(key) > METADATA_MAX_KEY:
            raise InvalidRequestError(
                f"Invalid 'metadata': key '{key[:20]}…' is {len(key)} characters long. "
                f"Metadata keys may be at most {METADATA_MAX_KEY} characters; shorten it.",
                param="metadata",
                code="string_above_max_length",
            )
        text = expect_str(item, f"metadata.{key}")
        if len(text) > METADATA_MAX_VALUE:
            raise too_long(f"metadata.{key}", text, METADATA_MAX_VALUE)
    return dict(metadata)


# --- query strings ----------------------------------------------------------------


def parse_items_query(params: Sequence[tuple[str, str]]) -> ItemsQuery:
    """`after`, `limit`, `order`, `include`; unknown params are ignored; when a
    single-valued param repeats, the last value wins."""
    values = dict(params)
    order = values.get("order", "desc")
    if order not in ("asc", "desc"):
        raise invalid_value("order", order, ("asc", "desc"))
    return ItemsQuery(
        after=values.get("after") or None,
        limit=_limit(values.get("limit")),
        order="asc" if order == "asc" else "desc",
        include=parse_include(params),
    )


def parse_include(params: Sequence[tuple[str, str]]) -> tuple[str, ...]:
    """Every `include` / `include[]` value, each one of OpenAI's includable fields."""
    include = tuple(value for key, value in params if key in ("include", "include[]"))
    for value in include:
        if value not in INCLUDABLE:
            raise invalid_value("include", value, INCLUDABLE)
    return include


def _limit(raw: str | None) -> int:
    if raw is None:
        return 20
    text = raw.strip()
    digits = text[1:] if text[:1] in "+-" else text
    if not (digits.isdigit() and digits.isascii()):
        raise InvalidRequestError(
            f"Invalid 'limit': expected an integer between 1 and 100, but got '{raw}' instead.",
            param="limit",
            code="invalid_type",
        )
    # More digits than any limit: out of range (int() of a huge string is slow, and refused).
    value = int(text) if len(digits.lstrip("0")) <= 6 else (-1 if text.startswith("-") else 101)
    if value < 1:
        raise out_of_range("limit", "integer", value, 1, above=False)
    if value > 100:
        raise out_of_range(
            "limit", "integer", value, 100, above=True, hint="Page with 'after' to read more."
        )
    return value

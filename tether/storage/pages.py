"""Cursor pagination over an ordered list of items (`after`, `limit`, `order`)."""

from __future__ import annotations

from typing import Literal

from tether.domain.types import JSONObject
from tether.errors import InvalidRequestError
from tether.storage.base import ItemPage


def page_items(
    items: list[JSONObject], *, after: str | None, limit: int, order: Literal["asc", "desc"]
) -> ItemPage:
    ordered = items if order == "asc" else items[::-1]
    start = 0
    if after is not None:
        for index, item in enumerate(ordered):
            if item.get("id") == after:
                start = index + 1
                break
        else:
            raise InvalidRequestError(
                f"No input item with id '{after}' in this response; pass the id of an item "
                "from a previous page as 'after'.",
                param="after",
            )
    page = ordered[start : start + limit]
    return ItemPage(page, has_more=start + limit < len(ordered))

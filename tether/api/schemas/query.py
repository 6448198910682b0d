"""Query strings of `GET /v1/responses/{id}` and `GET /v1/responses/{id}/input_items`.

Params arrive as strings, as a mapping or as a list of (key, value) pairs; when a key
repeats, the last value wins. Unknown params are ignored, as are `include[]`/`include`
for now. Errors are `InvalidRequestError` (400) with `param` set to the query param.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from tether.api.schemas.fields import invalid_value, out_of_range
from tether.errors import InvalidRequestError

_TRUE, _FALSE = ("true", "1"), ("false", "0")


@dataclass(frozen=True, slots=True)
class RetrieveQuery:
    stream: bool
    starting_after: int | None
    include_obfuscation: bool


@dataclass(frozen=True, slots=True)
class ListQuery:
    after: str | None
    limit: int
    order: Literal["asc", "desc"]


def parse_retrieve_query(params: Mapping[str, str] | list[tuple[str, str]]) -> RetrieveQuery:
    """`stream` (default false), `starting_after` (integer ≥ 0), `include_obfuscation`
    (default true)."""
    values = _last_values(params)
    starting_after = values.get("starting_after")
    return RetrieveQuery(
        stream=_bool(values, "stream", default=False),
        starting_after=None if starting_after is None else _cursor(starting_after),
        include_obfuscation=_bool(values, "include_obfuscation", default=True),
    )


def parse_list_query(params: list[tuple[str, str]]) -> ListQuery:
    """`after` (an item id), `limit` (1 to 100, default 20), `order` (asc|desc, default desc)."""
    values = _last_values(params)
    order = values.get("order", "desc")
    if order == "asc":
        checked_order: Literal["asc", "desc"] = "asc"
    elif order == "desc":
        checked_order = "desc"
    else:
        raise invalid_value("order", order, ("asc", "desc"))
    return ListQuery(
        after=values.get("after") or None,
        limit=_limit(values.get("limit")),
        order=checked_order,
    )


def _last_values(params: Mapping[str, str] | list[tuple[str, str]]) -> dict[str, str]:
    return dict(params.items() if isinstance(params, Mapping) else params)


def _bool(values: dict[str, str], name: str, *, default: bool) -> bool:
    raw = values.get(name)
    if raw is None:
        return default
    if raw.lower() in _TRUE:
        return True
    if raw.lower() in _FALSE:
        return False
    raise invalid_value(name, raw, ("true", "false"))


MAX_DIGITS = 18  # beyond any sequence number or limit; keeps int() cheap and bounded
HUGE = 1_000_000_000_000_000_000  # 10**MAX_DIGITS


def _integer(raw: str) -> int | None:
    text = raw.strip()
    digits = text[1:] if text[:1] in "+-" else text
    if not (digits.isdigit() and digits.isascii()):
        return None
    if len(digits.lstrip("0")) > MAX_DIGITS:  # out of every range: the caller's bound says so
        return -HUGE if text.startswith("-") else HUGE
    return int(text)


def _cursor(raw: str) -> int:
    value = _integer(raw)
    if value is None:
        raise InvalidRequestError(
            f"Invalid 'starting_after': expected an integer, but got '{raw}' instead. Send the "
            "sequence_number of the last event you received, e.g. starting_after=42.",
            param="starting_after",
            code="invalid_type",
        )
    if value < 0:
        raise out_of_range(
            "starting_after",
            "integer",
            value,
            0,
            above=False,
            hint="Send the sequence_number of the last event you received, or leave "
            "starting_after out to replay the stream from the start.",
        )
    return value


def _limit(raw: str | None) -> int:
    if raw is None:
        return 20
    value = _integer(raw)
    if value is None:
        raise InvalidRequestError(
            f"Invalid 'limit': expected an integer between 1 and 100, but got '{raw}' instead.",
            param="limit",
            code="invalid_type",
        )
    if value < 1:
        raise out_of_range("limit", "integer", value, 1, above=False)
    if value > 100:
        raise out_of_range(
            "limit", "integer", value, 100, above=True, hint="Page with 'after' to read more."
        )
    return value

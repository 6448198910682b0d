"""Object ids in OpenAI's shape: a prefix and 50 hex characters (`resp_…`, `msg_…`)."""

from __future__ import annotations

import secrets


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(25)}"


def response_id() -> str:
    return new_id("resp")


def message_id() -> str:
    return new_id("msg")


def function_call_id() -> str:
    return new_id("fc")


def function_call_output_id() -> str:
    return new_id("fco")


def reasoning_id() -> str:
    return new_id("rs")


def item_id() -> str:
    """For input items of other types (hosted tool calls) sent without an id."""
    return new_id("item")

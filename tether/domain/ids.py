"""Object ids in OpenAI's shape: a prefix and 50 hex characters (`resp_…`, `msg_…`)."""

from __future__ import annotations

import secrets


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(25)}"


def response_id() -> str:
    return new_id("resp")


def message_id() -> str:
    return new_id("msg")

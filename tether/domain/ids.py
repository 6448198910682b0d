"""Object ids in OpenAI's shape: a prefix and 50 hex characters (`resp_…`, `msg_…`)."""

from __future__ import annotations

import os

ID_BYTES = 25
_POOL_BYTES = ID_BYTES * 160


class _RandomPool:
    """Random bytes from the OS (`os.urandom`), read a few kilobytes at a time: one
    `getrandom` call per id showed in the profile of creates. Each byte is used once,
    and a forked child starts with a fresh pool."""

    def __init__(self) -> None:
        self._buffer = b""
        self._at = 0

    def take(self, size: int) -> bytes:
        if self._at + size > len(self._buffer):
            self._buffer, self._at = os.urandom(max(_POOL_BYTES, size)), 0
        start = self._at
        self._at = start + size
        return self._buffer[start : self._at]

    def reset(self) -> None:
        self._buffer, self._at = b"", 0


_pool = _RandomPool()
os.register_at_fork(after_in_child=_pool.reset)


def new_id(prefix: str) -> str:
    return f"{prefix}_{_pool.take(ID_BYTES).hex()}"


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

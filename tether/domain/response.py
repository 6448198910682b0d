"""The Response aggregate: its status machine and the snapshot object clients see.

A snapshot is the plain JSON dict of OpenAI's `Response` object. Every field is
always present (null where it does not apply): clients in the wild break on
missing fields.

    queued ──► in_progress ──► completed | incomplete | failed
       └───────────┴─────────► cancelled
    failed is also reachable from queued (a job that could not start).
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from tether.domain.types import JSONObject


class ResponseStatus(StrEnum):
    QUEUED = "queued"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    INCOMPLETE = "incomplete"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES = frozenset(
    {
        ResponseStatus.COMPLETED,
        ResponseStatus.INCOMPLETE,
        ResponseStatus.FAILED,
        ResponseStatus.CANCELLED,
    }
)

# The request settings a Response echoes, with the value used when the request
# leaves them out.
ECHO_DEFAULTS: Mapping[str, Any] = {
    "instructions": None,
    "max_output_tokens": None,
    "max_tool_calls": None,
    "metadata": {},
    "parallel_tool_calls": True,
    "previous_response_id": None,
    "conversation": None,
    "prompt": None,
    "prompt_cache_key": None,
    "prompt_cache_retention": None,
    "prompt_cache_options": None,
    "reasoning": {"effort": None, "summary": None},
    "safety_identifier": None,
    "service_tier": "default",
    "temperature": 1.0,
    "text": {"format": {"type": "text"}, "verbosity": "medium"},
    "tool_choice": "auto",
    "tools": [],
    "top_logprobs": 0,
    "top_p": 1.0,
    "truncation": "disabled",
    "user": None,
    "frequency_penalty": 0.0,
    "presence_penalty": 0.0,
}


def build_response(
    *,
    response_id: str,
    model: str,
    created_at: int,
    background: bool,
    store: bool,
    settings: Mapping[str, Any],
) -> JSONObject:
    """The initial snapshot of a new response: `queued` when background, else `in_progress`."""
    status = ResponseStatus.QUEUED if background else ResponseStatus.IN_PROGRESS
    snapshot: JSONObject = {
        "id": response_id,
        "object": "response",
        "created_at": created_at,
        "status": status.value,
        "background": background,
        "completed_at": None,
        "error": None,
        "incomplete_details": None,
        "model": model,
        "output": [],
        "store": store,
        "usage": None,
    }
    for key, default in ECHO_DEFAULTS.items():
        value = settings.get(key)
        snapshot[key] = default if value is None else value
    return snapshot


def usage(
    input_tokens: int, output_tokens: int, reasoning_tokens: int = 0, cached_tokens: int = 0
) -> JSONObject:
    return {
        "input_tokens": input_tokens,
        "input_tokens_details": {"cached_tokens": cached_tokens, "cache_write_tokens": 0},
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": reasoning_tokens},
        "total_tokens": input_tokens + output_tokens,
    }

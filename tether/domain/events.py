"""Responses streaming events: their types, builders, and the encoded form we store.

An event is built as a plain dict, numbered where it is appended, and encoded to
JSON bytes exactly once (`encode`). Those bytes go to storage and, unchanged, to
every reader, so live and replayed streams are byte-identical.

Sections: event types · the encoded event · builders.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from tether.domain.types import JSONObject

# --- event types -------------------------------------------------------------

CREATED = "response.created"
QUEUED = "response.queued"
IN_PROGRESS = "response.in_progress"
COMPLETED = "response.completed"
INCOMPLETE = "response.incomplete"
FAILED = "response.failed"
CANCELLED = "response.cancelled"
ERROR = "error"
OUTPUT_ITEM_ADDED = "response.output_item.added"
OUTPUT_ITEM_DONE = "response.output_item.done"
CONTENT_PART_ADDED = "response.content_part.added"
CONTENT_PART_DONE = "response.content_part.done"
OUTPUT_TEXT_DELTA = "response.output_text.delta"
OUTPUT_TEXT_DONE = "response.output_text.done"
OUTPUT_TEXT_ANNOTATION_ADDED = "response.output_text.annotation.added"
REFUSAL_DELTA = "response.refusal.delta"
REFUSAL_DONE = "response.refusal.done"
FUNCTION_CALL_ARGUMENTS_DELTA = "response.function_call_arguments.delta"
FUNCTION_CALL_ARGUMENTS_DONE = "response.function_call_arguments.done"
REASONING_TEXT_DELTA = "response.reasoning_text.delta"
REASONING_TEXT_DONE = "response.reasoning_text.done"
REASONING_SUMMARY_PART_ADDED = "response.reasoning_summary_part.added"
REASONING_SUMMARY_PART_DONE = "response.reasoning_summary_part.done"
REASONING_SUMMARY_TEXT_DELTA = "response.reasoning_summary_text.delta"
REASONING_SUMMARY_TEXT_DONE = "response.reasoning_summary_text.done"

TERMINAL_TYPES = frozenset({COMPLETED, INCOMPLETE, FAILED, CANCELLED})
LIFECYCLE_TYPES = frozenset({CREATED, QUEUED, IN_PROGRESS}) | TERMINAL_TYPES


# --- the encoded event -------------------------------------------------------


_PREFIXES: dict[str, bytes] = {}


def _prefix(event_type: str) -> bytes:
    prefix = _PREFIXES.get(event_type)
    if prefix is None:
        prefix = _PREFIXES[event_type] = b"event: " + event_type.encode() + b"\ndata: "
    return prefix


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """One event of a response's log: its number, type, and its SSE frame — exactly
    `event: <type>\ndata: <json>\n\n`, built once and sent as is to every reader."""

    seq: int
    type: str
    frame: bytes

    @property
    def data(self) -> bytes:
        """The event's JSON, as stored."""
        return self.frame[len(_prefix(self.type)) : -2]

    @property
    def terminal(self) -> bool:
        return self.type in TERMINAL_TYPES

    def payload(self) -> JSONObject:
        result: JSONObject = orjson.loads(self.data)
        return result


def encode(event: JSONObject) -> StoredEvent:
    """Encode a numbered event dict once; the bytes are final.

    The concatenation also gives the frame its exact size: orjson's own result keeps a
    much larger buffer, which would multiply the memory of every event held."""
    event_type = event["type"]
    frame = _prefix(event_type) + orjson.dumps(event) + b"\n\n"
    return StoredEvent(event["sequence_number"], event_type, frame)


# --- builders ----------------------------------------------------------------
# Builders take the sequence number last; the appender assigns it.


def lifecycle(event_type: str, snapshot: JSONObject, seq: int) -> JSONObject:
    """`response.created`/`queued`/`in_progress`/terminal events carry a full snapshot."""
    return {"type": event_type, "sequence_number": seq, "response": snapshot}


def output_item_added(output_index: int, item: JSONObject, seq: int) -> JSONObject:
    return {
        "type": OUTPUT_ITEM_ADDED,
        "sequence_number": seq,
        "output_index": output_index,
        "item": item,
    }


def output_item_done(output_index: int, item: JSONObject, seq: int) -> JSONObject:
    return {
        "type": OUTPUT_ITEM_DONE,
        "sequence_number": seq,
        "output_index": output_index,
        "item": item,
    }


def content_part(
    event_type: str,
    item_id: str,
    output_index: int,
    content_index: int,
    part: JSONObject,
    seq: int,
) -> JSONObject:
    return {
        "type": event_type,
        "sequence_number": seq,
        "item_id": item_id,
        "output_index": output_index,
        "content_index": content_index,
        "part": part,
    }


def text_delta(
    item_id: str,
    output_index: int,
    content_index: int,
    delta: str,
    seq: int,
    logprobs: list[JSONObject] | None = None,
) -> JSONObject:
    return {
        "type": OUTPUT_TEXT_DELTA,
        "sequence_number": seq,
        "item_id": item_id,
        "output_index": output_index,
        "content_index": content_index,
        "delta": delta,
        "logprobs": logprobs or [],
    }


def text_done(
    item_id: str,
    output_index: int,
    content_index: int,
    text: str,
    seq: int,
    logprobs: list[JSONObject] | None = None,
) -> JSONObject:
    return {
        "type": OUTPUT_TEXT_DONE,
        "sequence_number": seq,
        "item_id": item_id,
        "output_index": output_index,
        "content_index": content_index,
        "text": text,
        "logprobs": logprobs or [],
    }


def annotation_added(
    item_id: str,
    output_index: int,
    content_index: int,
    annotation_index: int,
    annotation: JSONObject,
    seq: int,
) -> JSONObject:
    return {
        "type": OUTPUT_TEXT_ANNOTATION_ADDED,
        "sequence_number": seq,
        "item_id": item_id,
        "output_index": output_index,
        "content_index": content_index,
        "annotation_index": annotation_index,
        "annotation": annotation,
    }


def part_delta(
    event_type: str, item_id: str, output_index: int, content_index: int, delta: str, seq: int
) -> JSONObject:
    """`response.refusal.delta` or `response.reasoning_text.delta`."""
    return {
        "type": event_type,
        "sequence_number": seq,
        "item_id": item_id,
        "output_index": output_index,
        "content_index": content_index,
        "delta": delta,
    }


def refusal_done(
    item_id: str, output_index: int, content_index: int, refusal: str, seq: int
) -> JSONObject:
    return {
        "type": REFUSAL_DONE,
        "sequence_number": seq,
        "item_id": item_id,
        "output_index": output_index,
        "content_index": content_index,
        "refusal": refusal,
    }


def reasoning_text_done(
    item_id: str, output_index: int, content_index: int, text: str, seq: int
) -> JSONObject:
    return {
        "type": REASONING_TEXT_DONE,
        "sequence_number": seq,
        "item_id": item_id,
        "output_index": output_index,
        "content_index": content_index,
        "text": text,
    }


def arguments_delta(item_id: str, output_index: int, delta: str, seq: int) -> JSONObject:
    return {
        "type": FUNCTION_CALL_ARGUMENTS_DELTA,
        "sequence_number": seq,
        "item_id": item_id,
        "output_index": output_index,
        "delta": delta,
    }


def arguments_done(
    item_id: str, output_index: int, name: str, arguments: str, seq: int
) -> JSONObject:
    return {
        "type": FUNCTION_CALL_ARGUMENTS_DONE,
        "sequence_number": seq,
        "item_id": item_id,
        "output_index": output_index,
        "name": name,
        "arguments": arguments,
    }


def summary_part(
    event_type: str,
    item_id: str,
    output_index: int,
    summary_index: int,
    text: str,
    seq: int,
) -> JSONObject:
    """`response.reasoning_summary_part.added` / `.done`."""
    return {
        "type": event_type,
        "sequence_number": seq,
        "item_id": item_id,
        "output_index": output_index,
        "summary_index": summary_index,
        "part": {"type": "summary_text", "text": text},
    }


def summary_text_delta(
    item_id: str, output_index: int, summary_index: int, delta: str, seq: int
) -> JSONObject:
    return {
        "type": REASONING_SUMMARY_TEXT_DELTA,
        "sequence_number": seq,
        "item_id": item_id,
        "output_index": output_index,
        "summary_index": summary_index,
        "delta": delta,
    }


def summary_text_done(
    item_id: str, output_index: int, summary_index: int, text: str, seq: int
) -> JSONObject:
    return {
        "type": REASONING_SUMMARY_TEXT_DONE,
        "sequence_number": seq,
        "item_id": item_id,
        "output_index": output_index,
        "summary_index": summary_index,
        "text": text,
    }


def error(code: str, message: str, seq: int, param: str | None = None) -> JSONObject:
    """The hybrid error frame: flat fields for the documented shape, nested for SDKs.

    The nested `error` object makes the official Python SDK raise `APIError` on the
    stream; the flat fields serve clients written against the documented shape.
    """
    return {
        "type": ERROR,
        "sequence_number": seq,
        "code": code,
        "message": message,
        "param": param,
        "error": {"type": _error_type(code), "code": code, "message": message, "param": param},
    }


def _error_type(code: str) -> str:
    if code == "rate_limit_exceeded":
        return "rate_limit_error"
    return "server_error"


def message_item(item_id: str, status: str, content: list[JSONObject]) -> JSONObject:
    return {
        "id": item_id,
        "type": "message",
        "status": status,
        "role": "assistant",
        "content": content,
    }


def output_text_part(
    text: str = "",
    annotations: list[JSONObject] | None = None,
    logprobs: list[JSONObject] | None = None,
) -> JSONObject:
    return {
        "type": "output_text",
        "text": text,
        "annotations": annotations or [],
        "logprobs": logprobs or [],
    }


def refusal_part(refusal: str = "") -> JSONObject:
    return {"type": "refusal", "refusal": refusal}


def reasoning_text_part(text: str = "") -> JSONObject:
    return {"type": "reasoning_text", "text": text}


def function_call_item(
    item_id: str, call_id: str, name: str, arguments: str, status: str
) -> JSONObject:
    return {
        "id": item_id,
        "type": "function_call",
        "status": status,
        "arguments": arguments,
        "call_id": call_id,
        "name": name,
    }


def reasoning_item(
    item_id: str,
    status: str,
    summary: list[JSONObject],
    content: list[JSONObject],
    encrypted_content: str | None = None,
) -> JSONObject:
    item: JSONObject = {
        "id": item_id,
        "type": "reasoning",
        "status": status,
        "summary": summary,
        "content": content,
    }
    if encrypted_content is not None:
        item["encrypted_content"] = encrypted_content
    return item

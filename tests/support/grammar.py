"""Checks that a Responses event stream follows the wire rules of the reference.

`check_stream` takes the decoded events of one whole stream (from `response.created`
to the terminal event) and asserts the ordering grammar of `responses-api.md` 4.5:

    stream := created [queued] in_progress item* terminal
            | created [queued] [in_progress] item* error failed        (mid-stream failure)
    item   := output_item.added part+ output_item.done                 (message)
            | output_item.added arguments_delta* arguments_done output_item.done
            | output_item.added summary* reasoning_part? output_item.done  (reasoning)
            | output_item.added output_item.done                       (a passed-on item)
    part   := content_part.added (text_delta* annotation* text_done
                                  | refusal_delta* refusal_done) content_part.done
    summary := summary_part.added summary_text.delta* summary_text.done summary_part.done
    reasoning_part := content_part.added reasoning_text.delta* reasoning_text.done
                      content_part.done

with numbering from 0 without gaps (4.3), dense `output_index`/`content_index`, deltas
only into the open item/part, `.done` values equal to the accumulated deltas, and the
terminal snapshot's `output` equal to the `output_item.done` items. A stream may also
end with `response.cancelled` (Tether's extension); that one, like `error`, may cut an
item short. `check_frames` checks the SSE bytes themselves (4.1, 4.7) and decodes them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

Event = dict[str, Any]

TERMINAL_TYPES = frozenset(
    {"response.completed", "response.incomplete", "response.failed", "response.cancelled"}
)
TERMINAL_STATUS = {
    "response.completed": "completed",
    "response.incomplete": "incomplete",
    "response.failed": "failed",
    "response.cancelled": "cancelled",
}
ITEM_EVENT_TYPES = frozenset(
    {
        "response.output_item.added",
        "response.output_item.done",
        "response.content_part.added",
        "response.content_part.done",
        "response.output_text.delta",
        "response.output_text.annotation.added",
        "response.output_text.done",
        "response.refusal.delta",
        "response.refusal.done",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.reasoning_text.delta",
        "response.reasoning_text.done",
        "response.reasoning_summary_part.added",
        "response.reasoning_summary_part.done",
        "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.done",
    }
)
# Endings that may leave an item or a part open.
ABRUPT_ENDINGS = frozenset({"error", "response.cancelled"})
KEEPALIVE = b": keepalive"
DONE = b"data: [DONE]"


# --- SSE bytes --------------------------------------------------------------------


def check_frames(raw: bytes, *, ended: bool = True) -> list[Event]:
    """Assert `raw` is well-formed SSE as Tether sends it; return the decoded events.

    Every frame is exactly `event: <type>\\ndata: <one-line JSON>\\n\\n` with the
    event name equal to the JSON `type` and no `id:` (or other) lines; `: keepalive`
    comments may stand between frames. With `ended` (the default) the stream must end
    with `data: [DONE]\\n\\n`; pass `ended=False` for a stream the reader cut off at a
    frame boundary.
    """
    assert b"\r" not in raw, "SSE lines must end with LF only"
    assert raw.endswith(b"\n\n"), f"stream does not end at a frame boundary: {raw[-80:]!r}"
    blocks = raw[:-2].split(b"\n\n")
    if ended:
        assert blocks[-1] == DONE, f"stream does not end with `data: [DONE]`: {blocks[-1]!r}"
        blocks = blocks[:-1]
    events: list[Event] = []
    for block in blocks:
        if block == KEEPALIVE:
            continue
        assert block != DONE, "`data: [DONE]` before the end of the stream"
        lines = block.split(b"\n")
        assert not any(line.startswith(b"id:") for line in lines), f"`id:` line in {block!r}"
        assert len(lines) == 2, f"a frame must be one `event:` and one `data:` line: {block!r}"
        event_line, data_line = lines
        assert event_line.startswith(b"event: "), f"first line is not `event: `: {block!r}"
        assert data_line.startswith(b"data: "), f"second line is not `data: `: {block!r}"
        event = json.loads(data_line[len(b"data: ") :])
        assert isinstance(event, dict), f"data is not a JSON object: {data_line!r}"
        name = event_line[len(b"event: ") :].decode()
        assert name == event.get("type"), f"`event: {name}` but JSON type {event.get('type')!r}"
        events.append(event)
    return events


# --- the event grammar ------------------------------------------------------------


@dataclass
class _OpenItem:
    index: int
    item: Event
    done_parts: list[Event] = field(default_factory=list)
    part: Event | None = None  # the open content part
    pieces: list[str] = field(default_factory=list)  # deltas of the open part or arguments
    value_done: str | None = None  # text/refusal of the open part once its `.done` came
    done_summaries: list[Event] = field(default_factory=list)
    summary_open: bool = False

    @property
    def item_id(self) -> str:
        item_id: str = self.item["id"]
        return item_id


@dataclass
class _State:
    events: list[Event]
    background: bool = False
    position: int = 0
    done_items: list[Event] = field(default_factory=list)
    open: _OpenItem | None = None
    item_ids: set[str] = field(default_factory=set)

    def peek(self) -> Event | None:
        return self.events[self.position] if self.position < len(self.events) else None

    def take(self, expected: str | None = None) -> Event:
        event = self.peek()
        assert event is not None, f"stream ended early; expected {expected or 'a terminal event'}"
        if expected is not None:
            assert event["type"] == expected, _at(event, f"expected {expected}")
        self.position += 1
        return event


def check_stream(events: list[Event]) -> None:
    """Assert that `events` is one whole, well-ordered Responses stream (see module doc)."""
    assert events, "empty stream"
    for index, event in enumerate(events):
        assert event.get("sequence_number") == index, (
            f"event {index} ({event.get('type')}) has sequence_number "
            f"{event.get('sequence_number')}; numbers must run 0, 1, 2, … without gaps"
        )
    state = _State(events)
    response_id = _check_lifecycle_prefix(state)
    while (upcoming := state.peek()) is not None and upcoming["type"] in ITEM_EVENT_TYPES:
        _check_item_event(state, state.take())
    event = state.take()
    if event["type"] == "error":
        _check_error(event)
        event = state.take("response.failed")
    else:
        assert event["type"] in TERMINAL_TYPES, _at(event, "unexpected event")
        if event["type"] not in ABRUPT_ENDINGS:
            assert state.open is None, _at(event, f"item {state.open} is still open")
    _check_terminal(state, event, response_id)
    assert state.peek() is None, _at(state.events[state.position], "event after terminal")


def _check_lifecycle_prefix(state: _State) -> str:
    created = state.take("response.created")
    snapshot = created["response"]
    state.background = bool(snapshot.get("background"))
    first_status = "queued" if state.background else "in_progress"
    assert snapshot["status"] == first_status, _at(created, f"status must be {first_status}")
    assert snapshot["output"] == [], _at(created, "output must be []")
    assert snapshot.get("usage") is None, _at(created, "usage must be null")
    response_id: str = snapshot["id"]
    if state.background:
        queued = state.take("response.queued")
        assert queued["response"]["status"] == "queued", _at(queued, "status must be queued")
        assert queued["response"]["id"] == response_id, _at(queued, "other response id")
    following = state.peek()
    may_skip = following is not None and following["type"] in ABRUPT_ENDINGS
    if not may_skip:
        started = state.take("response.in_progress")
        assert started["response"]["status"] == "in_progress", _at(started, "bad status")
        assert started["response"]["id"] == response_id, _at(started, "other response id")
    return response_id


def _check_item_event(state: _State, event: Event) -> None:
    kind = event["type"]
    if kind == "response.output_item.added":
        assert state.open is None, _at(event, "an item is already open (items never interleave)")
        assert event["output_index"] == len(state.done_items), _at(event, "output_index gap")
        item = event["item"]
        assert item.get("id") and item["id"] not in state.item_ids, _at(event, "bad item id")
        assert item.get("status") == "in_progress", _at(event, "item must be in_progress")
        if item["type"] == "message":
            assert item["content"] == [], _at(event, "a new message has empty content")
        elif item["type"] == "function_call":
            assert item["arguments"] == "", _at(event, "a new call has empty arguments")
        state.item_ids.add(item["id"])
        state.open = _OpenItem(event["output_index"], item)
        return
    item = state.open
    assert item is not None, _at(event, "no output item is open")
    assert event["output_index"] == item.index, _at(event, f"open item is {item.index}")
    if kind == "response.output_item.done":
        _check_item_done(state, item, event)
    elif kind.startswith("response.function_call_arguments."):
        _check_arguments_event(item, event)
    elif kind.startswith("response.reasoning_summary_"):
        _check_summary_event(item, event)
    else:
        _check_part_event(item, event)


def _check_summary_event(item: _OpenItem, event: Event) -> None:
    kind = event["type"]
    assert item.item["type"] == "reasoning", _at(event, "summary events need a reasoning item")
    assert item.part is None, _at(event, "summaries come before the reasoning content")
    assert event["summary_index"] == len(item.done_summaries), _at(event, "summary_index")
    if kind == "response.reasoning_summary_part.added":
        assert item.value_done is None and not item.pieces, _at(event, "a summary is open")
        assert event["part"] == {"type": "summary_text", "text": ""}, _at(event, "not empty")
        item.pieces, item.value_done = [], None
        item.summary_open = True
        return
    assert item.summary_open, _at(event, "no summary part is open")
    if kind == "response.reasoning_summary_text.delta":
        assert item.value_done is None, _at(event, "delta after the summary's `.done`")
        item.pieces.append(event["delta"])
    elif kind == "response.reasoning_summary_text.done":
        assert item.value_done is None, _at(event, "second `.done` for one summary")
        item.value_done = event["text"]
        assert item.value_done == "".join(item.pieces), _at(event, "text != joined deltas")
    else:
        assert kind == "response.reasoning_summary_part.done", _at(event, "unknown")
        assert event["part"]["text"] == item.value_done, _at(event, "part text != `.done`")
        item.done_summaries.append(event["part"])
        item.pieces, item.value_done, item.summary_open = [], None, False


def _check_part_event(item: _OpenItem, event: Event) -> None:
    kind = event["type"]
    assert item.item["type"] in ("message", "reasoning"), _at(
        event, "content events need a message or reasoning item"
    )
    assert event.get("item_id") == item.item_id, _at(event, f"open item is {item.item_id}")
    if kind == "response.content_part.added":
        assert item.part is None, _at(event, "a content part is already open")
        assert event["content_index"] == len(item.done_parts), _at(event, "content_index gap")
        part = event["part"]
        assert part.get(_value_key(part), "") == "", _at(event, "a new part must be empty")
        item.part, item.pieces, item.value_done = part, [], None
        return
    part = item.part
    assert part is not None, _at(event, "no content part is open")
    assert event["content_index"] == len(item.done_parts), _at(event, "not the open part")
    key = _value_key(part)
    if kind in (
        "response.output_text.delta",
        "response.refusal.delta",
        "response.reasoning_text.delta",
    ):
        assert kind.split(".")[1] == part["type"], _at(event, f"the open part is {part['type']}")
        assert item.value_done is None, _at(event, "delta after the part's `.done`")
        assert isinstance(event["delta"], str), _at(event, "delta must be a string")
        item.pieces.append(event["delta"])
    elif kind == "response.output_text.annotation.added":
        assert part["type"] == "output_text", _at(event, "annotations need an output_text part")
        assert item.value_done is None, _at(event, "annotation after the text's `.done`")
    elif kind in (
        "response.output_text.done",
        "response.refusal.done",
        "response.reasoning_text.done",
    ):
        assert kind.split(".")[1] == part["type"], _at(event, f"the open part is {part['type']}")
        assert item.value_done is None, _at(event, "second `.done` for one part")
        item.value_done = event[key]
        assert item.value_done == "".join(item.pieces), _at(event, f"{key} != joined deltas")
    elif kind == "response.content_part.done":
        assert item.value_done is not None, _at(event, f"no {part['type']}.done before it")
        assert event["part"]["type"] == part["type"], _at(event, "part type changed")
        assert event["part"][key] == item.value_done, _at(event, f"part {key} != `.done` value")
        item.done_parts.append(event["part"])
        item.part = None
    else:
        raise AssertionError(_at(event, "unexpected event inside a message item"))


def _check_arguments_event(item: _OpenItem, event: Event) -> None:
    assert item.item["type"] == "function_call", _at(event, "arguments need a function_call")
    assert event.get("item_id") == item.item_id, _at(event, f"open item is {item.item_id}")
    assert item.value_done is None, _at(event, "arguments event after arguments `.done`")
    if event["type"] == "response.function_call_arguments.delta":
        item.pieces.append(event["delta"])
    else:
        assert event["type"] == "response.function_call_arguments.done", _at(event, "unknown")
        item.value_done = event["arguments"]
        assert item.value_done == "".join(item.pieces), _at(event, "arguments != joined deltas")


def _check_item_done(state: _State, item: _OpenItem, event: Event) -> None:
    final = event["item"]
    assert final["id"] == item.item_id, _at(event, f"item id is not {item.item_id}")
    assert final["type"] == item.item["type"], _at(event, "item type changed")
    assert final.get("status") in ("completed", "incomplete"), _at(event, "bad final status")
    if final["type"] == "message":
        assert item.part is None, _at(event, "a content part is still open")
        assert item.done_parts, _at(event, "a message needs at least one content part")
        assert final["content"] == item.done_parts, _at(event, "content != the done parts")
    elif final["type"] == "function_call":
        assert item.value_done is not None, _at(event, "no function_call_arguments.done")
        assert final["arguments"] == item.value_done, _at(event, "arguments != `.done` value")
    elif final["type"] == "reasoning":
        assert item.part is None, _at(event, "a content part is still open")
        assert final["summary"] == item.done_summaries, _at(event, "summary != the done parts")
        assert final.get("content", []) == item.done_parts, _at(event, "content != done parts")
    state.done_items.append(final)
    state.open = None


def _check_error(event: Event) -> None:
    assert isinstance(event.get("message"), str) or isinstance(event.get("error"), dict), _at(
        event, "an error event needs a message"
    )


def _check_terminal(state: _State, event: Event, response_id: str) -> None:
    snapshot = event["response"]
    assert snapshot["id"] == response_id, _at(event, "other response id")
    assert snapshot["status"] == TERMINAL_STATUS[event["type"]], _at(event, "status mismatch")
    if event["type"] in ("response.completed", "response.incomplete"):
        assert snapshot["output"] == state.done_items, _at(
            event, "response.output must equal the output_item.done items"
        )
    if event["type"] == "response.failed":
        assert snapshot.get("error"), _at(event, "a failed response carries its error")
    if any(item.get("status") == "incomplete" for item in state.done_items):
        assert state.done_items[-1].get("status") == "incomplete", "only the last item may be cut"
        assert event["type"] != "response.completed", _at(event, "an item ended incomplete")


def _value_key(part: Event) -> str:
    return "refusal" if part.get("type") == "refusal" else "text"


def _at(event: Event, problem: str) -> str:
    return f"#{event.get('sequence_number')} {event.get('type')}: {problem}"

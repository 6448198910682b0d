"""The fold: a response's events, applied in order, give its snapshot.

`Fold` is incremental (one `apply` per event) and cheap on the hot path: text
deltas are kept as lists of pieces and joined only when the snapshot is read.
The runner keeps one to maintain the stored snapshot; tests fold a whole log to
check it equals the final snapshot; terminal transitions by the store (cancel,
a swept job) start from a stored snapshot.
"""

from __future__ import annotations

from typing import Any

import orjson

from tether.domain import events as ev
from tether.domain.encoding import dumps
from tether.domain.response import ResponseStatus
from tether.domain.types import JSONObject


class FoldError(ValueError):
    """An event does not fit the log so far (gap, unknown item, delta after done)."""


# Where an open text lives in the snapshot, by the key's second number `slot`:
# slot >= 0 is content part `slot` (its `text`, or `refusal` for a refusal part);
# ARGUMENTS is a function call's `arguments`; slot <= SUMMARY is summary part
# SUMMARY - slot (its `text`).
ARGUMENTS = -1
SUMMARY = -2

# Deltas: event type → the slot field of the event (content_index / summary_index).
_DELTAS = {
    ev.OUTPUT_TEXT_DELTA: "content_index",
    ev.REFUSAL_DELTA: "content_index",
    ev.REASONING_TEXT_DELTA: "content_index",
}
_DONES = {
    ev.OUTPUT_TEXT_DONE: ("content_index", "text"),
    ev.REFUSAL_DONE: ("content_index", "refusal"),
    ev.REASONING_TEXT_DONE: ("content_index", "text"),
}


class Fold:
    """Folds the events of one response into its snapshot."""

    def __init__(self, snapshot: JSONObject | None = None, last_seq: int = -1) -> None:
        self._snapshot = snapshot
        self.last_seq = last_seq
        self._texts: dict[tuple[int, int], list[str]] = {}
        if snapshot is not None:
            self._open_texts(snapshot)

    def _open_texts(self, snapshot: JSONObject) -> None:
        """A stored snapshot may stop inside an item: its texts stay open."""
        for item_index, item in enumerate(snapshot.get("output", [])):
            if item.get("status") != "in_progress":
                continue
            if item.get("type") == "function_call":
                self._texts[(item_index, ARGUMENTS)] = [item.get("arguments", "")]
            for part_index, part in enumerate(item.get("content") or []):
                field = _text_field(part)
                if field in part:
                    self._texts[(item_index, part_index)] = [part[field]]
            for summary_index, part in enumerate(item.get("summary") or []):
                self._texts[(item_index, SUMMARY - summary_index)] = [part.get("text", "")]

    def __repr__(self) -> str:
        status = self._snapshot["status"] if self._snapshot else None
        return f"<Fold last_seq={self.last_seq} status={status} open_texts={len(self._texts)}>"

    def apply(self, event: JSONObject) -> None:
        """Apply the next event. Raises `FoldError` when it does not fit the log."""
        seq = event.get("sequence_number")
        if seq != self.last_seq + 1:
            raise FoldError(f"expected sequence_number {self.last_seq + 1}, got {seq}")
        try:
            self._apply(event)
        except (KeyError, IndexError, TypeError) as exc:
            raise FoldError(
                f"event {event.get('type')!r} #{seq} does not fit the log: {exc!r}"
            ) from exc
        self.last_seq = seq

    def _apply(self, event: JSONObject) -> None:
        event_type = event["type"]
        if event_type == ev.OUTPUT_TEXT_DELTA:  # the hot path first
            self._texts[(event["output_index"], event["content_index"])].append(event["delta"])
            if event["logprobs"]:
                part = self._part(event)
                part["logprobs"] = [*part.get("logprobs", []), *event["logprobs"]]
            return
        if event_type in ev.LIFECYCLE_TYPES:
            self._snapshot = event["response"]
            self._texts.clear()
            return
        if event_type == ev.ERROR:
            return
        output = self._require_snapshot()["output"]
        index: int = event.get("output_index", -1)
        if event_type in _DELTAS:
            self._texts[(index, event[_DELTAS[event_type]])].append(event["delta"])
        elif event_type == ev.FUNCTION_CALL_ARGUMENTS_DELTA:
            self._texts[(index, ARGUMENTS)].append(event["delta"])
        elif event_type == ev.REASONING_SUMMARY_TEXT_DELTA:
            self._texts[(index, SUMMARY - event["summary_index"])].append(event["delta"])
        elif event_type == ev.OUTPUT_ITEM_ADDED:
            if index != len(output):
                raise FoldError(f"output_index {index} is not {len(output)}")
            item = event["item"]
            output.append(item)
            if item.get("type") == "function_call":
                self._texts[(index, ARGUMENTS)] = [item.get("arguments", "")]
        elif event_type == ev.CONTENT_PART_ADDED:
            content = output[index]["content"]
            if event["content_index"] != len(content):
                raise FoldError(f"content_index {event['content_index']} is not {len(content)}")
            part = event["part"]
            content.append(part)
            self._texts[(index, event["content_index"])] = [part.get(_text_field(part), "")]
        elif event_type in _DONES:
            slot_field, value_field = _DONES[event_type]
            self._texts[(index, event[slot_field])] = [event[value_field]]
            if event.get("logprobs"):
                self._part(event)["logprobs"] = event["logprobs"]
        elif event_type == ev.FUNCTION_CALL_ARGUMENTS_DONE:
            self._texts[(index, ARGUMENTS)] = [event["arguments"]]
        elif event_type == ev.REASONING_SUMMARY_TEXT_DONE:
            self._texts[(index, SUMMARY - event["summary_index"])] = [event["text"]]
        elif event_type == ev.REASONING_SUMMARY_PART_ADDED:
            summary = output[index]["summary"]
            if event["summary_index"] != len(summary):
                raise FoldError(f"summary_index {event['summary_index']} is not {len(summary)}")
            summary.append(event["part"])
            self._texts[(index, SUMMARY - event["summary_index"])] = [event["part"]["text"]]
        elif event_type == ev.REASONING_SUMMARY_PART_DONE:
            self._texts.pop((index, SUMMARY - event["summary_index"]), None)
            output[index]["summary"][event["summary_index"]] = event["part"]
        elif event_type == ev.OUTPUT_TEXT_ANNOTATION_ADDED:
            annotations = self._part(event).setdefault("annotations", [])
            if event["annotation_index"] != len(annotations):
                raise FoldError(
                    f"annotation_index {event['annotation_index']} is not {len(annotations)}"
                )
            annotations.append(event["annotation"])
        elif event_type == ev.CONTENT_PART_DONE:
            self._texts.pop((index, event["content_index"]), None)
            output[index]["content"][event["content_index"]] = event["part"]
        elif event_type == ev.OUTPUT_ITEM_DONE:
            for key in [k for k in self._texts if k[0] == index]:
                del self._texts[key]
            output[index] = event["item"]
        # Event types this fold does not know leave the snapshot unchanged.

    def _part(self, event: JSONObject) -> JSONObject:
        part: JSONObject = self._require_snapshot()["output"][event["output_index"]]["content"][
            event["content_index"]
        ]
        return part

    def snapshot(self) -> JSONObject:
        """The current snapshot. It is the fold's own dict: encode it before the next apply."""
        snapshot = self._require_snapshot()
        output = snapshot["output"]
        for (item_index, slot), pieces in self._texts.items():
            if len(pieces) > 1:
                pieces[:] = ["".join(pieces)]
            item = output[item_index]
            if slot >= 0:
                part = item["content"][slot]
                part[_text_field(part)] = pieces[0]
            elif slot == ARGUMENTS:
                item["arguments"] = pieces[0]
            else:
                item["summary"][SUMMARY - slot]["text"] = pieces[0]
        return snapshot

    @property
    def status(self) -> ResponseStatus:
        return ResponseStatus(self._require_snapshot()["status"])

    def _require_snapshot(self) -> JSONObject:
        if self._snapshot is None:
            raise FoldError("the first event of a log must be response.created")
        return self._snapshot


def _text_field(part: JSONObject) -> str:
    return "refusal" if part.get("type") == "refusal" else "text"


def fold_all(events: list[JSONObject]) -> JSONObject:
    fold = Fold()
    for event in events:
        fold.apply(event)
    return fold.snapshot()


def terminal_transition(
    snapshot: JSONObject,
    last_seq: int,
    status: ResponseStatus,
    error: dict[str, Any] | None = None,
) -> tuple[list[JSONObject], JSONObject]:
    """End an in-flight response from its stored snapshot (cancel, lost worker).

    Returns the events to append (`error` + `response.failed`, or
    `response.cancelled`) and the final snapshot. Partial output stays as it is,
    with its items' status unchanged, as OpenAI shows for cancelled responses.
    """
    final = dict(snapshot)
    final["status"] = status.value
    final["completed_at"] = None
    final["usage"] = None
    events: list[JSONObject] = []
    seq = last_seq + 1
    if status is ResponseStatus.FAILED:
        if error is None:
            raise ValueError("a failed transition needs an error")
        final["error"] = {"code": error["code"], "message": error["message"]}
        events.append(ev.error(error["code"], error["message"], seq))
        seq += 1
        events.append(ev.lifecycle(ev.FAILED, final, seq))
    elif status is ResponseStatus.CANCELLED:
        events.append(ev.lifecycle(ev.CANCELLED, final, seq))
    else:
        raise ValueError(f"{status} is not a transition the store makes")
    return events, final


def advance(snapshot: bytes, snapshot_seq: int, payloads: list[JSONObject]) -> bytes:
    """A stored snapshot (as of `snapshot_seq`) brought up to date with the events after it."""
    if not payloads:
        return snapshot
    fold = Fold(orjson.loads(snapshot), snapshot_seq)
    for payload in payloads:
        fold.apply(payload)
    return dumps(fold.snapshot())

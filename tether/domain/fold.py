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
from tether.domain.response import ResponseStatus
from tether.domain.types import JSONObject


class FoldError(ValueError):
    """An event does not fit the log so far (gap, unknown item, delta after done)."""


class Fold:
    """Folds the events of one response into its snapshot."""

    def __init__(self, snapshot: JSONObject | None = None, last_seq: int = -1) -> None:
        self._snapshot = snapshot
        self.last_seq = last_seq
        self._texts: dict[tuple[int, int], list[str]] = {}
        if snapshot is not None:
            self._open_texts(snapshot)

    def _open_texts(self, snapshot: JSONObject) -> None:
        """A stored snapshot may stop inside an item: its text parts stay open."""
        for item_index, item in enumerate(snapshot.get("output", [])):
            if item.get("status") != "in_progress":
                continue
            for part_index, part in enumerate(item.get("content") or []):
                if "text" in part:
                    self._texts[(item_index, part_index)] = [part["text"]]

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
        if event_type in ev.LIFECYCLE_TYPES:
            self._snapshot = event["response"]
            self._texts.clear()
            return
        if event_type == ev.ERROR:
            return
        output = self._require_snapshot()["output"]
        if event_type == ev.OUTPUT_TEXT_DELTA:
            self._texts[(event["output_index"], event["content_index"])].append(event["delta"])
        elif event_type == ev.OUTPUT_ITEM_ADDED:
            if event["output_index"] != len(output):
                raise FoldError(f"output_index {event['output_index']} is not {len(output)}")
            output.append(event["item"])
        elif event_type == ev.CONTENT_PART_ADDED:
            content = output[event["output_index"]]["content"]
            if event["content_index"] != len(content):
                raise FoldError(f"content_index {event['content_index']} is not {len(content)}")
            content.append(event["part"])
            self._texts[(event["output_index"], event["content_index"])] = [
                event["part"].get("text", "")
            ]
        elif event_type == ev.OUTPUT_TEXT_DONE:
            self._texts[(event["output_index"], event["content_index"])] = [event["text"]]
        elif event_type == ev.CONTENT_PART_DONE:
            key = (event["output_index"], event["content_index"])
            self._texts.pop(key, None)
            output[event["output_index"]]["content"][event["content_index"]] = event["part"]
        elif event_type == ev.OUTPUT_ITEM_DONE:
            index = event["output_index"]
            for key in [k for k in self._texts if k[0] == index]:
                del self._texts[key]
            output[index] = event["item"]
        # Event types this fold does not know leave the snapshot unchanged.

    def snapshot(self) -> JSONObject:
        """The current snapshot. It is the fold's own dict: encode it before the next apply."""
        snapshot = self._require_snapshot()
        output = snapshot["output"]
        for (item_index, part_index), pieces in self._texts.items():
            if len(pieces) > 1:
                pieces[:] = ["".join(pieces)]
            output[item_index]["content"][part_index]["text"] = pieces[0]
        return snapshot

    @property
    def status(self) -> ResponseStatus:
        return ResponseStatus(self._require_snapshot()["status"])

    def _require_snapshot(self) -> JSONObject:
        if self._snapshot is None:
            raise FoldError("the first event of a log must be response.created")
        return self._snapshot


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
    return orjson.dumps(fold.snapshot())

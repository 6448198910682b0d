"""Output items from provider deltas: which item is open, and the events that open,
fill and close it.

One item is open at a time (OpenAI never interleaves items). A delta of another kind
(text or refusal → a `message`, reasoning → a `reasoning` item, a tool call → a
`function_call`) or a tool call of another index closes the open item first; so
does `EndItem`. Inside a message, text and refusal are separate content parts.

`Output` only builds events and hands them to `emit`, which numbers, folds and
appends them (the runner). It knows nothing of the log.
"""

from __future__ import annotations

from typing import Protocol

from tether.domain import events as ev
from tether.domain.ids import new_id
from tether.domain.types import JSONObject
from tether.providers.base import (
    Annotation,
    EndItem,
    OutputItem,
    ReasoningDelta,
    RefusalDelta,
    TextDelta,
    ToolCallDelta,
)


class Sink(Protocol):
    """Where events go: numbered by `next_seq`, handed over by `emit` at once."""

    def next_seq(self) -> int: ...

    def emit(self, event: JSONObject) -> None: ...


class Output:
    """The output items of one response, built from deltas."""

    def __init__(self, sink: Sink, first_index: int, *, max_calls: int | None = None) -> None:
        self._emit = sink.emit
        self._seq = sink.next_seq
        self._next_index = first_index
        self._open: _Message | _Reasoning | _Call | None = None
        self._max_calls = max_calls
        self._calls = 0
        self._ignored_calls: set[int] = set()

    @property
    def open(self) -> bool:
        return self._open is not None

    def resume_message(self, item: JSONObject) -> None:
        """Take up a message left open by a worker that died: text deltas go on in its
        last (open) output_text part; the item is `item`, the last of the output."""
        index = self._next_index - 1
        message = _Message(item["id"], index)
        content = item["content"]
        message.parts = [dict(part) for part in content[:-1]]
        message.part = len(content) - 1
        open_part = content[-1]
        message.pieces = [open_part.get("text", "")]
        message.logprobs = list(open_part.get("logprobs") or [])
        message.annotations = list(open_part.get("annotations") or [])
        self._open = message

    # --- deltas -------------------------------------------------------------------

    def text(self, delta: TextDelta) -> None:
        """The hot path: one call per streamed token."""
        message = self._open
        if type(message) is not _Message or message.kind != "output_text":
            message = self._message("output_text")
        message.pieces.append(delta.text)
        item_id, index, part = message.item_id, message.index, message.part
        if delta.logprobs:
            message.logprobs.extend(delta.logprobs)
        logprobs = delta.logprobs
        self._emit(ev.text_delta(item_id, index, part, delta.text, self._seq(), logprobs))

    def refusal(self, delta: RefusalDelta) -> None:
        message = self._open
        if type(message) is not _Message or message.kind != "refusal":
            message = self._message("refusal")
        message.pieces.append(delta.text)
        item_id, index, part = message.item_id, message.index, message.part
        self._emit(ev.part_delta(ev.REFUSAL_DELTA, item_id, index, part, delta.text, self._seq()))

    def annotation(self, delta: Annotation) -> None:
        message = self._open
        if type(message) is not _Message or message.kind != "output_text":
            message = self._message("output_text")
        position = len(message.annotations)
        message.annotations.append(delta.annotation)
        item_id, index, part = message.item_id, message.index, message.part
        self._emit(
            ev.annotation_added(item_id, index, part, position, delta.annotation, self._seq())
        )

    def reasoning(self, delta: ReasoningDelta) -> None:
        reasoning = self._open
        if type(reasoning) is not _Reasoning:
            self.close()
            reasoning = self._open = _Reasoning(new_id("rs"), self._take_index())
            item = ev.reasoning_item(reasoning.item_id, "in_progress", [], [])
            index = reasoning.index
            self._emit(ev.output_item_added(index, item, self._seq()))
        if delta.encrypted_content is not None:
            reasoning.encrypted_content = delta.encrypted_content
        if delta.text:
            if delta.summary_index is None:
                self._reasoning_text(reasoning, delta.text)
            else:
                self._summary_text(reasoning, delta.text, delta.summary_index)

    def tool_call(self, delta: ToolCallDelta) -> None:
        call = self._open
        if type(call) is _Call and call.tool_index == delta.index:
            self._arguments(call, delta.arguments)
            return
        if delta.index in self._ignored_calls:
            return
        if self._max_calls is not None and self._calls >= self._max_calls:
            # Beyond `max_tool_calls` (or a second call with parallel_tool_calls off):
            # further calls are ignored, as OpenAI documents.
            self._ignored_calls.add(delta.index)
            return
        self.close()
        self._calls += 1
        call_id = delta.call_id or new_id("call")
        call = self._open = _Call(
            new_id("fc"), self._take_index(), delta.index, call_id, delta.name or ""
        )
        item = ev.function_call_item(call.item_id, call_id, call.name, "", "in_progress")
        index = call.index
        self._emit(ev.output_item_added(index, item, self._seq()))
        if delta.arguments:
            self._arguments(call, delta.arguments)

    def item(self, delta: OutputItem) -> None:
        """A whole item passed on: added (in progress) and done at once."""
        self.close()
        index = self._take_index()
        added = dict(delta.item)
        if "status" in added:
            added["status"] = "in_progress"
        done = delta.item
        self._emit(ev.output_item_added(index, added, self._seq()))
        self._emit(ev.output_item_done(index, done, self._seq()))

    def end_item(self, delta: EndItem) -> None:
        self.close("incomplete" if delta.incomplete else "completed")

    # --- closing ------------------------------------------------------------------

    def close(self, status: str = "completed") -> None:
        """Close the open item (if any) with `status` (`completed` or `incomplete`)."""
        item, self._open = self._open, None
        if item is None:
            return
        if type(item) is _Message:
            self._close_message(item, status)
        elif type(item) is _Reasoning:
            self._close_reasoning(item, status)
        elif type(item) is _Call:
            arguments = "".join(item.pieces)
            item_id, index, name = item.item_id, item.index, item.name
            self._emit(ev.arguments_done(item_id, index, name, arguments, self._seq()))
            done = ev.function_call_item(item_id, item.call_id, name, arguments, status)
            self._emit(ev.output_item_done(index, done, self._seq()))

    # --- messages -----------------------------------------------------------------

    def _message(self, kind: str) -> _Message:
        """Open a content part of `kind` in the open message, or open a message."""
        message = self._open
        if type(message) is _Message:
            self._close_part(message)
            message.part += 1
        else:
            self.close()
            message = _Message(new_id("msg"), self._take_index())
            self._open = message
            item = ev.message_item(message.item_id, "in_progress", [])
            index = message.index
            self._emit(ev.output_item_added(index, item, self._seq()))
        message.kind = kind
        message.pieces, message.logprobs, message.annotations = [], [], []
        empty = ev.output_text_part() if kind == "output_text" else ev.refusal_part()
        item_id, index, part = message.item_id, message.index, message.part
        self._emit(ev.content_part(ev.CONTENT_PART_ADDED, item_id, index, part, empty, self._seq()))
        return message

    def _close_part(self, message: _Message) -> None:
        text = "".join(message.pieces)
        item_id, index, part_index = message.item_id, message.index, message.part
        if message.kind == "output_text":
            logprobs = message.logprobs
            self._emit(ev.text_done(item_id, index, part_index, text, self._seq(), logprobs))
            part = ev.output_text_part(text, message.annotations, logprobs)
        else:
            self._emit(ev.refusal_done(item_id, index, part_index, text, self._seq()))
            part = ev.refusal_part(text)
        message.parts.append(part)
        self._emit(
            ev.content_part(ev.CONTENT_PART_DONE, item_id, index, part_index, part, self._seq())
        )

    def _close_message(self, message: _Message, status: str) -> None:
        self._close_part(message)
        done = ev.message_item(message.item_id, status, message.parts)
        index = message.index
        self._emit(ev.output_item_done(index, done, self._seq()))

    # --- reasoning ----------------------------------------------------------------

    def _reasoning_text(self, reasoning: _Reasoning, text: str) -> None:
        self._close_summary(reasoning)
        item_id, index = reasoning.item_id, reasoning.index
        if reasoning.text is None:
            reasoning.text = []
            empty = ev.reasoning_text_part()
            self._emit(
                ev.content_part(ev.CONTENT_PART_ADDED, item_id, index, 0, empty, self._seq())
            )
        reasoning.text.append(text)
        self._emit(ev.part_delta(ev.REASONING_TEXT_DELTA, item_id, index, 0, text, self._seq()))

    def _summary_text(self, reasoning: _Reasoning, text: str, upstream_index: int) -> None:
        """Summary text; a new `summary_index` from the provider starts a new part."""
        item_id, index = reasoning.item_id, reasoning.index
        if reasoning.summary is not None and reasoning.summary_source != upstream_index:
            self._close_summary(reasoning)
        reasoning.summary_source = upstream_index
        if reasoning.summary is None:
            reasoning.summary = []
            position = len(reasoning.summaries)
            self._emit(
                ev.summary_part(
                    ev.REASONING_SUMMARY_PART_ADDED, item_id, index, position, "", self._seq()
                )
            )
        reasoning.summary.append(text)
        position = len(reasoning.summaries)
        self._emit(ev.summary_text_delta(item_id, index, position, text, self._seq()))

    def _close_summary(self, reasoning: _Reasoning) -> None:
        if reasoning.summary is None:
            return
        text = "".join(reasoning.summary)
        reasoning.summary = None
        item_id, index, position = reasoning.item_id, reasoning.index, len(reasoning.summaries)
        reasoning.summaries.append({"type": "summary_text", "text": text})
        self._emit(ev.summary_text_done(item_id, index, position, text, self._seq()))
        self._emit(
            ev.summary_part(
                ev.REASONING_SUMMARY_PART_DONE, item_id, index, position, text, self._seq()
            )
        )

    def _close_reasoning(self, reasoning: _Reasoning, status: str) -> None:
        self._close_summary(reasoning)
        item_id, index = reasoning.item_id, reasoning.index
        content: list[JSONObject] = []
        if reasoning.text is not None:
            text = "".join(reasoning.text)
            part = ev.reasoning_text_part(text)
            content.append(part)
            self._emit(ev.reasoning_text_done(item_id, index, 0, text, self._seq()))
            self._emit(ev.content_part(ev.CONTENT_PART_DONE, item_id, index, 0, part, self._seq()))
        done = ev.reasoning_item(
            item_id, status, reasoning.summaries, content, reasoning.encrypted_content
        )
        self._emit(ev.output_item_done(index, done, self._seq()))

    # --- function calls -----------------------------------------------------------

    def _arguments(self, call: _Call, piece: str) -> None:
        if not piece:
            return
        call.pieces.append(piece)
        item_id, index = call.item_id, call.index
        self._emit(ev.arguments_delta(item_id, index, piece, self._seq()))

    def _take_index(self) -> int:
        index = self._next_index
        self._next_index += 1
        return index


class _Message:
    __slots__ = ("annotations", "index", "item_id", "kind", "logprobs", "part", "parts", "pieces")

    def __init__(self, item_id: str, index: int) -> None:
        self.item_id = item_id
        self.index = index
        self.kind = "output_text"
        self.part = 0  # the open content part's index
        self.parts: list[JSONObject] = []  # the closed ones
        self.pieces: list[str] = []
        self.logprobs: list[JSONObject] = []
        self.annotations: list[JSONObject] = []


class _Reasoning:
    __slots__ = (
        "encrypted_content",
        "index",
        "item_id",
        "summaries",
        "summary",
        "summary_source",
        "text",
    )

    def __init__(self, item_id: str, index: int) -> None:
        self.item_id = item_id
        self.index = index
        self.text: list[str] | None = None  # the reasoning_text part, once opened
        self.summary: list[str] | None = None  # the open summary part
        self.summary_source = 0  # the provider's summary_index of the open part
        self.summaries: list[JSONObject] = []  # the closed ones
        self.encrypted_content: str | None = None


class _Call:
    __slots__ = ("call_id", "index", "item_id", "name", "pieces", "tool_index")

    def __init__(self, item_id: str, index: int, tool_index: int, call_id: str, name: str) -> None:
        self.item_id = item_id
        self.index = index
        self.tool_index = tool_index
        self.call_id = call_id
        self.name = name
        self.pieces: list[str] = []

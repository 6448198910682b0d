"""Reading a Responses API event stream (SSE) into provider deltas.

This is the per-token hot path of the `responses` provider: each `data:` line is
parsed once with orjson and an `response.output_text.delta` becomes one `TextDelta`
with no other work. The upstream's `sequence_number`s, item ids and output indexes
are not kept: the runner builds and numbers Tether's own events from the deltas.

    response.output_text.delta               TextDelta(delta, logprobs when non-empty)
    response.refusal.delta                   RefusalDelta(delta)
    response.reasoning_text.delta            ReasoningDelta(delta)
    response.reasoning_summary_text.delta    ReasoningDelta(delta, summary_index)
    response.output_text.annotation.added    Annotation(annotation)
    output_item.added (function_call)        ToolCallDelta(output_index, "", name, call_id)
    response.function_call_arguments.delta  ToolCallDelta(output_index, delta)
    output_item.done (message, reasoning,    EndItem(), after ReasoningDelta("",
      function_call)                           encrypted_content) for a reasoning item
                                               that carries it
    output_item.done (any other type)        OutputItem(item): hosted tool calls
    response.completed                       Usage, Finish("stop")
    response.incomplete                      Usage, Finish("length" for max_output_tokens,
                                               else "content_filter")
    response.failed, error                   ProviderError (`rate_limit_exceeded` kept,
                                               any other code is `server_error`)

Upstreams that do not stream a value send it whole in the `.done` events: arguments
only in `function_call_arguments.done` or `output_item.done`, or a message or
reasoning item with no deltas at all, are emitted once from there. Every other event
(`response.created`, `in_progress`, `queued`, `keepalive`, the `.done` events, the
intermediate events of hosted tools, types we do not know) carries nothing new.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import orjson

from tether.domain.types import JSONObject
from tether.errors import ProviderError
from tether.providers.base import (
    Annotation,
    Delta,
    EndItem,
    FinishReason,
    OutputItem,
    ReasoningDelta,
    RefusalDelta,
    TextDelta,
    ToolCallDelta,
    Usage,
)

MAX_LINE = 8 * 1024 * 1024
_KEPT_CODES = frozenset({"rate_limit_exceeded"})
_OWN_ITEMS = frozenset({"message", "reasoning", "function_call"})
_MALFORMED = (ValueError, TypeError, KeyError, AttributeError, IndexError)


class ErrorFactory(Protocol):
    """Makes a `ProviderError` naming the model (the provider's `error` method)."""

    def __call__(
        self, detail: str, *, code: str = "server_error", status: int | None = None
    ) -> ProviderError: ...


class ResponsesStreamReader:
    """Turns the bytes of one Responses SSE stream into deltas. `feed` is called once
    per network read; after the terminal event `done` is set with `usage` and
    `finish`, or `failure` (a `ProviderError` for the caller to raise after yielding
    the deltas that came before it)."""

    __slots__ = ("_buffer", "_calls", "_error", "_open", "done", "failure", "finish", "usage")

    def __init__(self, error: ErrorFactory) -> None:
        self._error = error
        self._buffer = b""
        self._open = False  # a delta of the current upstream item was emitted
        self._calls: dict[int, bool] = {}  # output_index → its arguments were emitted
        self.done = False
        self.failure: ProviderError | None = None
        self.finish: FinishReason | None = None
        self.usage: Usage | None = None

    def feed(self, chunk: bytes) -> list[Delta]:
        """The deltas of the complete `data:` lines in the stream so far."""
        if self.done:
            return []
        if self._buffer:
            chunk = self._buffer + chunk
        lines = chunk.splitlines()
        if chunk.endswith((b"\n", b"\r")):
            self._buffer = b""
        elif lines:
            self._buffer = lines.pop()
            if len(self._buffer) > MAX_LINE:
                self._fail(self._error(f"sent an SSE line longer than {MAX_LINE} bytes"))
                return []
        out: list[Delta] = []
        try:
            for line in lines:
                # Comments, `event:`, `id:` and blank lines carry nothing for us.
                if line.startswith(b"data:"):
                    self._line(line[5:], out)
                    if self.done:
                        break
        except ProviderError as exc:
            self._fail(exc)
        return out

    def _fail(self, error: ProviderError) -> None:
        self.failure = error
        self.done = True

    def _line(self, data: bytes, out: list[Delta]) -> None:
        try:
            event = orjson.loads(data)
            kind = event["type"]
            if kind == "response.output_text.delta":
                text = event["delta"]
                if type(text) is not str:
                    raise TypeError("'delta' is not a string")
                self._open = True
                out.append(TextDelta(text, event.get("logprobs") or None))
                return
            handler = _HANDLERS.get(kind)
            if handler is not None:
                handler(self, event, out)
        except orjson.JSONDecodeError:
            if data.strip() == b"[DONE]":  # Open Responses ends with it, after the terminal
                self.done = True
                return
            detail = data[:200].decode("utf-8", errors="replace").strip()
            raise self._error(f"sent a malformed stream event (not JSON): {detail}") from None
        except _MALFORMED as exc:
            detail = data[:200].decode("utf-8", errors="replace").strip()
            raise self._error(f"sent a malformed stream event ({exc!r}): {detail}") from None

    # --- content --------------------------------------------------------------------------

    def _refusal(self, event: JSONObject, out: list[Delta]) -> None:
        self._open = True
        out.append(RefusalDelta(_string(event, "delta")))

    def _reasoning_text(self, event: JSONObject, out: list[Delta]) -> None:
        self._open = True
        out.append(ReasoningDelta(_string(event, "delta")))

    def _summary_text(self, event: JSONObject, out: list[Delta]) -> None:
        self._open = True
        out.append(ReasoningDelta(_string(event, "delta"), summary_index=event["summary_index"]))

    def _annotation(self, event: JSONObject, out: list[Delta]) -> None:
        self._open = True
        out.append(Annotation(event["annotation"]))

    # --- function calls ---------------------------------------------------------------------

    def _arguments(self, event: JSONObject, out: list[Delta]) -> None:
        index = event["output_index"]
        self._calls[index] = True
        self._open = True
        out.append(ToolCallDelta(index, _string(event, "delta")))

    def _arguments_done(self, event: JSONObject, out: list[Delta]) -> None:
        index = event["output_index"]
        if self._calls.get(index) is False and (arguments := _string(event, "arguments")):
            self._calls[index] = True
            out.append(ToolCallDelta(index, arguments))

    def _call(self, index: int, item: JSONObject, out: list[Delta], *, done: bool) -> None:
        arguments = _string(item, "arguments") if "arguments" in item else ""
        sent = self._calls.get(index)
        if sent is None:  # the call's first appearance: name, call id and what it has
            self._calls[index] = bool(arguments)
            self._open = True
            name, call_id = _string(item, "name"), item.get("call_id")
            out.append(ToolCallDelta(index, arguments, name, call_id))
        elif done and not sent and arguments:
            self._calls[index] = True
            out.append(ToolCallDelta(index, arguments))

    # --- items ------------------------------------------------------------------------------

    def _item_added(self, event: JSONObject, out: list[Delta]) -> None:
        item = event["item"]
        if item["type"] == "function_call":
            self._call(event["output_index"], item, out, done=False)

    def _item_done(self, event: JSONObject, out: list[Delta]) -> None:
        item = event["item"]
        kind = item["type"]
        if kind not in _OWN_ITEMS:
            out.append(OutputItem(item))
            return
        if kind == "function_call":
            self._call(event["output_index"], item, out, done=True)
        elif kind == "message" and not self._open:
            self._open = _message_content(item, out)
        elif kind == "reasoning":
            if not self._open:
                self._open = _reasoning_content(item, out)
            if encrypted := item.get("encrypted_content"):
                out.append(ReasoningDelta("", encrypted_content=encrypted))
                self._open = True
        if self._open:
            out.append(EndItem(incomplete=item.get("status") == "incomplete"))
            self._open = False

    # --- the end ----------------------------------------------------------------------------

    def _completed(self, event: JSONObject, out: list[Delta]) -> None:
        self.usage = _usage(event["response"])
        self.finish = "stop"
        self.done = True

    def _incomplete(self, event: JSONObject, out: list[Delta]) -> None:
        response = event["response"]
        reason = (response.get("incomplete_details") or {}).get("reason")
        self.usage = _usage(response)
        self.finish = "length" if reason == "max_output_tokens" else "content_filter"
        self.done = True

    def _failed(self, event: JSONObject, out: list[Delta]) -> None:
        error = event["response"].get("error") or {}
        raise self._failure("failed", error.get("code"), error.get("message"))

    def _error_event(self, event: JSONObject, out: list[Delta]) -> None:
        error = event.get("error")
        if isinstance(error, dict):  # the nested shape OpenAI sends in practice
            raise self._failure("failed mid-stream", error.get("code"), error.get("message"))
        if isinstance(error, str):
            raise self._failure("failed mid-stream", event.get("code"), error)
        raise self._failure("failed mid-stream", event.get("code"), event.get("message"))

    def _failure(self, what: str, code: object, message: object) -> ProviderError:
        text = message if isinstance(message, str) and message else "(no error message)"
        if code in _KEPT_CODES:
            return self._error(f"{what}: {text}", code=str(code))
        named = isinstance(code, str) and code and code != "server_error"
        suffix = f" (upstream code '{code}')" if named else ""
        return self._error(f"{what}: {text}{suffix}")


_Handler = Callable[[ResponsesStreamReader, JSONObject, list[Delta]], None]
_HANDLERS: dict[str, _Handler] = {
    "response.refusal.delta": ResponsesStreamReader._refusal,
    "response.reasoning_text.delta": ResponsesStreamReader._reasoning_text,
    "response.reasoning_summary_text.delta": ResponsesStreamReader._summary_text,
    "response.output_text.annotation.added": ResponsesStreamReader._annotation,
    "response.function_call_arguments.delta": ResponsesStreamReader._arguments,
    "response.function_call_arguments.done": ResponsesStreamReader._arguments_done,
    "response.output_item.added": ResponsesStreamReader._item_added,
    "response.output_item.done": ResponsesStreamReader._item_done,
    "response.completed": ResponsesStreamReader._completed,
    "response.incomplete": ResponsesStreamReader._incomplete,
    "response.failed": ResponsesStreamReader._failed,
    "error": ResponsesStreamReader._error_event,
}


def _string(obj: JSONObject, key: str) -> str:
    value = obj[key]
    if type(value) is not str:
        raise TypeError(f"{key!r} is not a string")
    return value


def _message_content(item: JSONObject, out: list[Delta]) -> bool:
    """The parts of a message that came whole in `output_item.done`; True if any."""
    start = len(out)
    for part in item.get("content") or ():
        kind = part.get("type")
        if kind == "output_text" and (text := _string(part, "text")):
            out.append(TextDelta(text, part.get("logprobs") or None))
            out.extend(Annotation(a) for a in part.get("annotations") or ())
        elif kind == "refusal" and (refusal := _string(part, "refusal")):
            out.append(RefusalDelta(refusal))
    return len(out) > start


def _reasoning_content(item: JSONObject, out: list[Delta]) -> bool:
    """The summary and text of a reasoning item that came whole; True if any."""
    start = len(out)
    for index, part in enumerate(item.get("summary") or ()):
        if text := _string(part, "text"):
            out.append(ReasoningDelta(text, summary_index=index))
    for part in item.get("content") or ():
        if part.get("type") == "reasoning_text" and (text := _string(part, "text")):
            out.append(ReasoningDelta(text))
    return len(out) > start


def _usage(response: JSONObject) -> Usage | None:
    usage = response.get("usage")
    if not usage:
        return None
    output_details = usage.get("output_tokens_details") or {}
    input_details = usage.get("input_tokens_details") or {}
    return Usage(
        int(usage.get("input_tokens") or 0),
        int(usage.get("output_tokens") or 0),
        int(output_details.get("reasoning_tokens") or 0),
        int(input_details.get("cached_tokens") or 0),
    )

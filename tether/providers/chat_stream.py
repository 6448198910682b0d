"""The stream side of the `chat` provider: the bytes of a Chat Completions SSE stream
turned into provider deltas.

What becomes what, per chunk (`choices[0]`):

    delta.content                         TextDelta, with `logprobs.content` in the
                                          Responses shape when the chunk has them
    delta.reasoning_content (vLLM, DeepSeek) or delta.reasoning (newer vLLM, Ollama)
                                          ReasoningDelta
    delta.refusal                         RefusalDelta
    delta.tool_calls / delta.function_call
                                          ToolCallDelta, one call at a time (see
                                          `_ToolCalls`)
    finish_reason                         remembered; `tool_calls` and `function_call`
                                          mean `stop`
    usage                                 remembered as `Usage`, cached and reasoning
                                          tokens included

A plain text chunk is the per-token hot path: it costs one JSON parse and a few dict
lookups, and everything else is looked at only when the delta holds more than text.

Sections: the reader, tool calls, small mappers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from tether.domain.types import JSONObject
from tether.errors import ProviderError
from tether.providers.base import (
    Delta,
    ReasoningDelta,
    RefusalDelta,
    TextDelta,
    ToolCallDelta,
    Usage,
)

ErrorFactory = Callable[[str], ProviderError]
MAX_LINE = 8 * 1024 * 1024


# --- the reader ------------------------------------------------------------------------


class ChatStreamReader:
    """Turns the bytes of a Chat Completions SSE stream into deltas; remembers the
    finish reason and usage. One `feed` call per network read; `close` at the end.

    `error` makes the `ProviderError` raised for a malformed stream, an `error` chunk
    or an over-long line."""

    __slots__ = ("_buffer", "_calls", "_error", "done", "finish_reason", "usage")

    def __init__(self, error: ErrorFactory) -> None:
        self._error = error
        self._buffer = b""
        self._calls: _ToolCalls | None = None
        self.done = False
        self.finish_reason: str | None = None
        self.usage: Usage | None = None

    def feed(self, chunk: bytes) -> list[Delta]:
        """The deltas of the complete `data:` lines so far; sets `done` at `data: [DONE]`."""
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
                raise self._error(f"sent an SSE line longer than {MAX_LINE} bytes")
        out: list[Delta] = []
        for line in lines:
            # Comments, `event:`, `id:` and blank lines carry nothing for us.
            if not line.startswith(b"data:"):
                continue
            data = line[5:].strip()
            if data == b"[DONE]":
                self.done = True
                break
            self._event(data, out)
        return out

    def close(self) -> list[Delta]:
        """The tool calls still held back, at the end of the stream."""
        if self._calls is None:
            return []
        try:
            return self._calls.flush()
        except ValueError as exc:
            raise self._error(f"sent a malformed stream ({exc})") from None

    def _event(self, data: bytes, out: list[Delta]) -> None:
        try:
            event = orjson.loads(data)
            if error := event.get("error"):
                message = error.get("message") if isinstance(error, dict) else error
                raise self._error(f"failed mid-stream: {message}")
            if choices := event.get("choices"):
                choice = choices[0]
                if delta := choice.get("delta"):
                    content = delta.get("content")
                    if (
                        content
                        and content.__class__ is str
                        and (len(delta) == 1 or (len(delta) == 2 and "role" in delta))
                    ):
                        # The hot path: a chunk of plain text (Ollama repeats the role).
                        if self._calls is not None:
                            self._calls.interrupt()
                        logprobs = choice.get("logprobs")
                        out.append(TextDelta(content, _logprobs(logprobs) if logprobs else None))
                    else:
                        self._delta(delta, choice, out)
                if (reason := choice.get("finish_reason")) is not None:
                    self.finish_reason = reason
            if usage := event.get("usage"):
                self.usage = _usage(usage)
        except (ValueError, TypeError, AttributeError, KeyError, IndexError) as exc:
            detail = data[:200].decode("utf-8", errors="replace")
            raise self._error(f"sent a malformed stream chunk ({exc}): {detail}") from None

    def _delta(self, delta: JSONObject, choice: JSONObject, out: list[Delta]) -> None:
        """A delta with more than plain text, taken in the order a model writes it."""
        start = len(out)
        if reasoning := delta.get("reasoning_content") or delta.get("reasoning"):
            out.append(ReasoningDelta(self._string(reasoning, "reasoning")))
        if refusal := delta.get("refusal"):
            out.append(RefusalDelta(self._string(refusal, "refusal")))
        if content := delta.get("content"):
            logprobs = choice.get("logprobs")
            text = self._string(content, "content")
            out.append(TextDelta(text, _logprobs(logprobs) if logprobs else None))
        pieces = delta.get("tool_calls")
        if not pieces and (legacy := delta.get("function_call")):
            pieces = [{"index": 0, "function": legacy}]  # the deprecated `functions` API
        if len(out) > start and self._calls is not None:
            self._calls.interrupt()
        if pieces:
            if self._calls is None:
                self._calls = _ToolCalls()
            for piece in pieces:
                self._calls.add(piece, out)

    def _string(self, value: Any, name: str) -> str:
        if not isinstance(value, str):
            raise self._error(f"sent a non-string delta {name}")
        return value


# --- tool calls ------------------------------------------------------------------------


@dataclass(slots=True)
class _Call:
    name: str | None = None
    call_id: str | None = None
    pending: list[str] = field(default_factory=list)
    started: bool = False


class _ToolCalls:
    """The tool-call pieces of one stream → `ToolCallDelta`s, each call's together.

    Upstreams split calls arbitrarily: the name in a first piece, arguments in many;
    several indices for parallel calls; some send every call's first piece before any
    arguments. The call being streamed (`current`) goes out live; pieces of other calls
    are held back. When another call's arguments begin, the current call is over: the
    held-back pieces of the new one go out, and it becomes current. Calls never made
    current go out at the end of the stream. Arguments for a call that is over cannot
    be placed and raise `ValueError`; so does a call that never got a name.
    """

    __slots__ = ("_calls", "_current", "_last", "_over")

    def __init__(self) -> None:
        self._calls: dict[int, _Call] = {}
        self._current: int | None = None
        self._last = 0
        self._over: set[int] = set()

    def add(self, piece: JSONObject, out: list[Delta]) -> None:
        index = self._index(piece)
        function = piece.get("function") or {}
        name, call_id = function.get("name"), piece.get("id")
        arguments = function.get("arguments") or ""
        if not isinstance(arguments, str) or not isinstance(name, str | None):
            raise ValueError(f"tool call {index} has a non-string name or arguments")
        self._last = index
        if index in self._over:
            if arguments:
                raise ValueError(f"arguments of tool call {index} came after another call's")
            return
        call = self._calls.get(index)
        if call is None:
            call = self._calls[index] = _Call()
        if name and call.name is None:
            call.name = name
        if isinstance(call_id, str) and call_id and call.call_id is None:
            call.call_id = call_id
        if index == self._current and call.started:
            if arguments:
                out.append(ToolCallDelta(index, arguments))
            return
        if arguments:
            call.pending.append(arguments)
        if self._current is None:
            self._current = index
        elif index != self._current and arguments and self._calls[self._current].started:
            self._over.add(self._current)
            self._current = index
        if index == self._current:
            self._start(index, call, out)

    def interrupt(self) -> None:
        """Output of another kind came: the current call is over."""
        if self._current is not None and self._calls[self._current].started:
            self._over.add(self._current)
            self._current = None

    def flush(self) -> list[Delta]:
        """The calls not yet sent, in index order."""
        out: list[Delta] = []
        for index in sorted(self._calls):
            call = self._calls[index]
            if not call.started:
                self._start(index, call, out)
                if not call.started:
                    raise ValueError(f"tool call {index} has no function name")
        return out

    def _index(self, piece: JSONObject) -> int:
        index = piece.get("index")
        if index is None:  # some upstreams leave it out: tell calls apart by id
            call_id = piece.get("id")
            if not call_id:
                return self._last
            for known, call in self._calls.items():
                if call.call_id == call_id:
                    return known
            return max(self._calls, default=-1) + 1
        if not isinstance(index, int) or isinstance(index, bool):
            raise ValueError(f"tool call index {index!r} is not an integer")
        return index

    @staticmethod
    def _start(index: int, call: _Call, out: list[Delta]) -> None:
        if call.name is None:
            return  # its first delta must carry the name: wait for it
        call_id = call.call_id if call.call_id and call.call_id.startswith("call_") else None
        out.append(ToolCallDelta(index, "".join(call.pending), name=call.name, call_id=call_id))
        call.pending.clear()
        call.started = True


# --- small mappers ---------------------------------------------------------------------


def _logprobs(logprobs: JSONObject) -> list[JSONObject] | None:
    """`choice.logprobs.content` in the Responses shape; missing `bytes` are made from
    the token's UTF-8."""
    entries = logprobs.get("content")
    if not entries:
        return None
    return [
        {
            "token": entry["token"],
            "logprob": entry["logprob"],
            "bytes": _bytes(entry),
            "top_logprobs": [
                {"token": top["token"], "logprob": top["logprob"], "bytes": _bytes(top)}
                for top in entry.get("top_logprobs") or ()
            ],
        }
        for entry in entries
    ]


def _bytes(entry: JSONObject) -> list[int]:
    value = entry.get("bytes")
    if value is None:
        return list(entry["token"].encode())
    return list(value)


def _usage(usage: JSONObject) -> Usage:
    completion = usage.get("completion_tokens_details") or {}
    prompt = usage.get("prompt_tokens_details") or {}
    return Usage(
        int(usage.get("prompt_tokens") or 0),
        int(usage.get("completion_tokens") or 0),
        int(completion.get("reasoning_tokens") or 0),
        int(prompt.get("cached_tokens") or 0),
    )

"""The scripted event streams of the mock Responses upstream (`tests.support.mock_responses`).

`script(model, body)` builds every frame of one response up front, as OpenAI would
send them: `event:` + `data:` lines, `sequence_number` from 0, output items numbered
in order, `.done` events carrying the accumulated values, and a final snapshot whose
`output` is the list of done items. The models are listed in `mock_responses`.

Sections: the event stream builder, the scripts, the input's text.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

_MODEL = re.compile(r"(text|slow|drop-after|status|failed)-(\w+)")
Event = dict[str, Any]


# --- the event stream ---------------------------------------------------------------------


class _Stream:
    """Builds the frames of one response, numbering events and items as OpenAI does."""

    def __init__(self, body: dict[str, Any]) -> None:
        self.body = body
        self.frames: list[bytes] = []
        self.deltas: list[int] = []  # frame indexes of output_text.delta events
        self.output: list[Event] = []
        self.output_tokens = 0
        self.reasoning_tokens = 0
        self.emit("response.created", response=self.snapshot("in_progress"))
        self.emit("response.in_progress", response=self.snapshot("in_progress"))

    def emit(self, kind: str, **fields: Any) -> None:
        event = {"type": kind, **fields, "sequence_number": len(self.frames)}
        self.frames.append(f"event: {kind}\ndata: ".encode() + orjson.dumps(event) + b"\n\n")

    def snapshot(self, status: str, **fields: Any) -> Event:
        return {
            "id": "resp_mock",
            "object": "response",
            "created_at": 1700000000,
            "status": status,
            "model": self.body["model"],
            "output": list(self.output) if status != "in_progress" else [],
            "usage": None,
            "error": None,
            "incomplete_details": None,
            "instructions": self.body.get("instructions"),
            "metadata": self.body.get("metadata") or {},
            "parallel_tool_calls": self.body.get("parallel_tool_calls", True),
            "temperature": self.body.get("temperature", 1.0),
            "top_p": self.body.get("top_p", 1.0),
            "tool_choice": self.body.get("tool_choice", "auto"),
            "tools": self.body.get("tools", []),
            "store": self.body.get("store", True),
            **fields,
        }

    def _add(self, item: Event) -> tuple[str, int]:
        index = len(self.output)
        self.emit("response.output_item.added", output_index=index, item=item)
        return item["id"], index

    def _done(self, item: Event) -> None:
        self.emit("response.output_item.done", output_index=len(self.output), item=item)
        self.output.append(item)

    def message(self, deltas: list[str], annotations: list[Event] | None = None) -> None:
        item = {"id": f"msg_mock{len(self.output)}", "type": "message", "role": "assistant"}
        item_id, index = self._add({**item, "status": "in_progress", "content": []})
        at = {"item_id": item_id, "output_index": index, "content_index": 0}
        part: Event = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        self.emit("response.content_part.added", **at, part=part)
        logprobs = "message.output_text.logprobs" in self.body.get("include", [])
        for delta in deltas:
            entries = [{"token": delta, "logprob": -0.25, "top_logprobs": []}] if logprobs else []
            self.deltas.append(len(self.frames))
            self.emit("response.output_text.delta", **at, delta=delta, logprobs=entries)
            self.output_tokens += 1
        for i, annotation in enumerate(annotations or []):
            self.emit(
                "response.output_text.annotation.added",
                **at,
                annotation_index=i,
                annotation=annotation,
            )
        text = "".join(deltas)
        part = {**part, "text": text, "annotations": annotations or []}
        self.emit("response.output_text.done", **at, text=text, logprobs=[])
        self.emit("response.content_part.done", **at, part=part)
        self._done({**item, "status": "completed", "content": [part]})

    def refusal(self, deltas: list[str]) -> None:
        item = {"id": f"msg_mock{len(self.output)}", "type": "message", "role": "assistant"}
        item_id, index = self._add({**item, "status": "in_progress", "content": []})
        at = {"item_id": item_id, "output_index": index, "content_index": 0}
        self.emit("response.content_part.added", **at, part={"type": "refusal", "refusal": ""})
        for delta in deltas:
            self.emit("response.refusal.delta", **at, delta=delta)
        part = {"type": "refusal", "refusal": "".join(deltas)}
        self.emit("response.refusal.done", **at, refusal=part["refusal"])
        self.emit("response.content_part.done", **at, part=part)
        self._done({**item, "status": "completed", "content": [part]})

    def reasoning(self, summaries: list[list[str]], text: list[str] | None = None) -> None:
        item_id = f"rs_mock{len(self.output)}"
        _, index = self._add({"id": item_id, "type": "reasoning", "summary": []})
        at = {"item_id": item_id, "output_index": index}
        summary = []
        for s, deltas in enumerate(summaries):
            self.emit(
                "response.reasoning_summary_part.added",
                **at,
                summary_index=s,
                part={"type": "summary_text", "text": ""},
            )
            for delta in deltas:
                self.emit(
                    "response.reasoning_summary_text.delta", **at, summary_index=s, delta=delta
                )
            part = {"type": "summary_text", "text": "".join(deltas)}
            self.emit(
                "response.reasoning_summary_text.done", **at, summary_index=s, text=part["text"]
            )
            self.emit("response.reasoning_summary_part.done", **at, summary_index=s, part=part)
            summary.append(part)
        item: Event = {"id": item_id, "type": "reasoning", "summary": summary}
        if text:
            part = {"type": "reasoning_text", "text": ""}
            self.emit("response.content_part.added", **at, content_index=0, part=part)
            for delta in text:
                self.emit("response.reasoning_text.delta", **at, content_index=0, delta=delta)
            part = {"type": "reasoning_text", "text": "".join(text)}
            self.emit("response.reasoning_text.done", **at, content_index=0, text=part["text"])
            self.emit("response.content_part.done", **at, content_index=0, part=part)
            item["content"] = [part]
        if "reasoning.encrypted_content" in self.body.get("include", []):
            item["encrypted_content"] = f"enc:{item_id}"
        self.reasoning_tokens += sum(map(len, summaries)) + len(text or [])
        self._done(item)

    def function_call(self, name: str, pieces: list[str], *, stream: bool = True) -> None:
        index = len(self.output)
        item = {"id": f"fc_mock{index}", "type": "function_call", "call_id": f"call_mock{index}"}
        item["name"] = name
        item_id, _ = self._add({**item, "arguments": "", "status": "in_progress"})
        at = {"item_id": item_id, "output_index": index}
        for piece in pieces if stream else []:
            self.emit("response.function_call_arguments.delta", **at, delta=piece)
        arguments = "".join(pieces)
        self.emit("response.function_call_arguments.done", **at, name=name, arguments=arguments)
        self._done({**item, "arguments": arguments, "status": "completed"})
        self.output_tokens += len(pieces)

    def web_search(self, query: str) -> None:
        index = len(self.output)
        action = {"type": "search", "query": query}
        item: Event = {"id": f"ws_mock{index}", "type": "web_search_call", "action": action}
        item_id, _ = self._add({**item, "status": "in_progress"})
        for state in ("in_progress", "searching", "completed"):
            self.emit(f"response.web_search_call.{state}", item_id=item_id, output_index=index)
        self._done({**item, "status": "completed"})

    def usage(self) -> Event:
        words = input_words(self.body)
        cached = words // 2 if self.body.get("prompt_cache_key") else 0
        output = self.output_tokens + self.reasoning_tokens
        return {
            "input_tokens": words,
            "input_tokens_details": {"cached_tokens": cached, "cache_write_tokens": 0},
            "output_tokens": output,
            "output_tokens_details": {"reasoning_tokens": self.reasoning_tokens},
            "total_tokens": words + output,
        }

    def completed(self) -> None:
        response = self.snapshot("completed", usage=self.usage())
        self.emit("response.completed", response=response)

    def incomplete(self, reason: str) -> None:
        details = {"reason": reason}
        response = self.snapshot("incomplete", usage=self.usage(), incomplete_details=details)
        self.emit("response.incomplete", response=response)

    def failed(self, code: str, message: str) -> None:
        error = {"code": code, "message": message}
        self.emit("response.failed", response=self.snapshot("failed", error=error))


# --- scripts --------------------------------------------------------------------------------


def script(model: str, body: dict[str, Any]) -> tuple[list[bytes], float, bool] | None:
    """The frames for `model`, the delay between them, and whether to drop at their end."""
    s = _Stream(body)
    kind, arg = model, ""
    if match := _MODEL.fullmatch(model):
        kind, arg = match.group(1), match.group(2)
    if kind in ("text", "slow") and arg.isdigit():
        words = [f"w{i} " for i in range(int(arg))]
        limit = body.get("max_output_tokens")
        s.message(words[:limit])
        if limit is not None and limit < len(words):
            s.incomplete("max_output_tokens")
        else:
            s.completed()
        return s.frames, 0.05 if kind == "slow" else 0.0, False
    if kind == "drop-after" and arg.isdigit():
        s.message([f"w{i} " for i in range(int(arg) + 3)])
        return s.frames[: s.deltas[int(arg) - 1] + 1], 0.0, True
    if kind == "failed":
        s.message(["w0 "])
        s.failed(arg, f"mock upstream failure ({arg})")
        return s.frames, 0.0, False
    builder = _BUILDERS.get(kind)
    if builder is None:
        return None
    builder(s)
    return s.frames, 0.0, False


def _echo(s: _Stream) -> None:
    words = _last_user_text(input_items(s.body)).split()
    s.message([w if i == len(words) - 1 else f"{w} " for i, w in enumerate(words)])
    s.completed()


def _two_messages(s: _Stream) -> None:
    s.message(["a1 ", "a2"])
    s.message(["b1 ", "b2"])
    s.completed()


def _refusal(s: _Stream) -> None:
    s.refusal(["I can't ", "help with that."])
    s.completed()


def _reasoning(s: _Stream) -> None:
    s.reasoning([["Think ", "first."], ["Then ", "answer."]])
    s.message(["42"])
    s.completed()


def _reasoning_raw(s: _Stream) -> None:
    s.reasoning([], text=["raw ", "thought"])
    s.message(["done"])
    s.completed()


def _tool_call(s: _Stream) -> None:
    s.function_call("get_weather", ['{"city":', ' "Paris"', "}"])
    s.completed()


def _tool_calls_2(s: _Stream) -> None:
    s.function_call("get_weather", ['{"city": "Paris"}'])
    s.function_call("get_time", ['{"tz":', ' "CET"}'])
    s.completed()


def _args_at_done(s: _Stream) -> None:
    s.function_call("get_weather", ['{"city": ', '"Oslo"}'], stream=False)
    s.completed()


def _whole_items(s: _Stream) -> None:
    summary = [{"type": "summary_text", "text": "whole thought"}]
    reasoning: Event = {"id": "rs_mock0", "type": "reasoning", "summary": summary}
    s.emit("response.output_item.added", output_index=0, item={**reasoning, "summary": []})
    s.emit("response.output_item.done", output_index=0, item=reasoning)
    part = {"type": "output_text", "text": "whole answer", "annotations": []}
    message = {"id": "msg_mock1", "type": "message", "role": "assistant", "content": [part]}
    added = {**message, "status": "in_progress", "content": []}
    s.emit("response.output_item.added", output_index=1, item=added)
    s.emit("response.output_item.done", output_index=1, item={**message, "status": "completed"})
    s.output += [reasoning, message]
    s.completed()


def _web_search(s: _Stream) -> None:
    s.web_search("tether responses api")
    citation = {
        "type": "url_citation",
        "url": "https://example.com/tether",
        "title": "Tether",
        "start_index": 0,
        "end_index": 6,
    }
    s.message(["Tether ", "is durable."], annotations=[citation])
    s.completed()


def _filtered(s: _Stream) -> None:
    s.message(["w0 "])
    s.incomplete("content_filter")


def _error_event(s: _Stream) -> None:
    s.message(["w0 "])
    error = {"type": "tokens", "code": "rate_limit_exceeded", "message": "Rate limit reached"}
    s.emit("error", error=error)
    s.failed("rate_limit_exceeded", "Rate limit reached")


def _error_flat(s: _Stream) -> None:
    s.message(["w0 "])
    s.emit("error", code="server_error", message="mock flat error", param=None)


def _no_terminal(s: _Stream) -> None:
    s.message(["w0 ", "w1 ", "w2 "])
    del s.frames[s.deltas[1] + 1 :]


def _malformed(s: _Stream) -> None:
    s.message(["w0 ", "w1 "])
    s.frames.insert(s.deltas[1], b"data: {not json\n\n")


def _noisy(s: _Stream) -> None:
    s.emit("keepalive")
    s.frames.insert(0, s.frames.pop())  # the keepalive before response.created
    s.frames.append(b": a comment\n\n")
    s.emit("response.some_future_event", detail="ignored")
    s.message(["w0 ", "w1"])
    s.completed()
    s.frames = [frame.replace(b"\n", b"\r\n") for frame in s.frames]
    s.frames.append(b"data: [DONE]\n\n")


_BUILDERS = {
    "echo": _echo,
    "two-messages": _two_messages,
    "refusal": _refusal,
    "reasoning": _reasoning,
    "reasoning-raw": _reasoning_raw,
    "tool-call": _tool_call,
    "tool-calls-2": _tool_calls_2,
    "args-at-done": _args_at_done,
    "whole-items": _whole_items,
    "web-search": _web_search,
    "filtered": _filtered,
    "error-event": _error_event,
    "error-flat": _error_flat,
    "no-terminal": _no_terminal,
    "malformed": _malformed,
    "noisy": _noisy,
}


# --- the input's text -----------------------------------------------------------------------


def input_items(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The request's input as a list of items (a string is one user message)."""
    items = body.get("input", [])
    if isinstance(items, str):
        return [{"type": "message", "role": "user", "content": items}]
    return list(items)


def _texts(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [t for part in value if isinstance(part, dict) for t in _texts(part.get("text"))]
    return []


def input_words(body: dict[str, Any]) -> int:
    """The mock's token count: words of the instructions and of the input's text."""
    texts = _texts(body.get("instructions"))
    for item in input_items(body):
        texts += _texts(item.get("content")) + _texts(item.get("output"))
    return sum(len(text.split()) for text in texts)


def _last_user_text(items: list[dict[str, Any]]) -> str:
    for item in reversed(items):
        if item.get("role") == "user":
            return " ".join(_texts(item.get("content")))
    return ""

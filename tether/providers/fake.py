"""`fake`: the built-in development model. Deterministic, no weights, no network.

It is for trying Tether out, for tests and for benchmarks — not a language model —
and lets apps exercise text, tool calls, structured output and reasoning without one.
The same request and options always give the same output.

Options (`[[models]]` entries with `provider = "fake"`), with their defaults:
`mode = "lorem"`, `text = ""`, `output_tokens = 32`, `tokens_per_second = 0`,
`first_token_delay_ms = 0`, `fail_after_tokens` (unset), `auto_tool_calls = true`,
`parallel_calls = 1`, `reasoning = false`, `continuation = true`.

Text, by `mode`:
- `lorem`: `output_tokens` words cycled from a fixed lorem-ipsum list;
- `text`: the words of the `text` option;
- `echo`: the words of the last user message — or, when the latest input item is a
  `function_call_output`, the words of that output (its text parts, if it is a list).
Each word (with its following space) is one token.

Tool calls (only `function` tools count; other tools are ignored). The model calls:
- with `tool_choice` `required`: the first function tool;
- with `{"type": "function", "name": N}`: the function N (a provider error when no
  function tool has that name);
- with `auto` (the default): the first function tool when the latest input item is a
  user message, else (e.g. after a `function_call_output`) it answers in text; with
  the option `auto_tool_calls = false` it always answers in text;
- with `{"type": "allowed_tools", "mode", "tools"}`: as `mode`, among those functions.
`none` and choices of other tool types answer in text. With `parallel_tool_calls` on
(the default), a `required` or `auto` turn makes `parallel_calls` calls, cycling over
the function tools, as indices 0, 1, …; a named function is called once. Arguments
are the JSON object `tether.providers.jsonschema_instance` builds from the tool's
`parameters` (`{}` without them), serialized compactly (no spaces), so they validate
against the schema; their strings are the words of the mode's text, one per string, in
turn (lorem words when that text is empty). A call streams its arguments in 3 to 8
nearly equal pieces (one per 16 characters; fewer when shorter than 3 characters);
the first piece carries the function name. The turn finishes with `stop`.

Structured output, when answering in text: `text.format` `json_schema` makes the text
a compact JSON instance of its `schema` (built as arguments are); `json_object` makes
it `{"answer": "<the mode's text>"}`. JSON text streams in pieces cut after each `,`,
`:` and space; each piece is one token.

Reasoning: with `reasoning = true`, a fixed sentence of reasoning (one token per word)
comes before the answer or the tool calls — as reasoning summary text (`summary_index`
0) when the request sets `reasoning.summary` (`auto`, `concise`, `detailed`), else as
raw reasoning text. A request's `reasoning.effort` of `none` leaves it out; other
efforts change nothing, and without the option the model never reasons.

Tokens and usage: reasoning words, text words, JSON pieces and argument pieces are
each one output token. `max_output_tokens` cuts the output (reasoning included) after
that many tokens and finishes with `length`; cut JSON does not parse, as with a real
model. `Usage.output_tokens` counts the emitted tokens, `reasoning_tokens` the
reasoning ones among them; `input_tokens` counts the words of the instructions,
messages, function call arguments and function call outputs: an estimate, not a
tokenizer.

Continuation (crash recovery): the model continues a partial answer exactly, since it
gives the same answer to the same request; `continuation = false` makes it a model
that cannot continue (a response whose worker died then fails).

Pacing and failures: `tokens_per_second` paces the stream (0 = as fast as possible),
`first_token_delay_ms` delays the first token, and `fail_after_tokens` raises a
provider error after that many tokens, to exercise failure paths. A schema the
builder cannot satisfy also raises a provider error saying which part failed.

Sections: `FakeConfig`; `FakeProvider` (`plan` builds the whole output as one delta
per token, `stream` cuts and paces it); helpers for input items, JSON and usage.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, fields
from itertools import pairwise
from typing import Any

import orjson

from tether.domain.items import message_text
from tether.domain.types import JSON, JSONObject
from tether.errors import ConfigError, ProviderError
from tether.providers.base import (
    Delta,
    Finish,
    GenerationRequest,
    ReasoningDelta,
    TextDelta,
    ToolCallDelta,
    Usage,
)
from tether.providers.jsonschema_instance import UnsatisfiableSchemaError, build_instance

LOREM = (
    "lorem",
    "ipsum",
    "dolor",
    "sit",
    "amet",
    "consectetur",
    "adipiscing",
    "elit",
    "sed",
    "do",
    "eiusmod",
    "tempor",
    "incididunt",
    "ut",
    "labore",
    "et",
    "dolore",
    "magna",
    "aliqua",
    "ut",
    "enim",
    "ad",
    "minim",
    "veniam",
    "quis",
    "nostrud",
)
# Lorem tokens and their deltas are shared by every response (frozen values): a
# thousand open streams of the fake model then cost no more than one.
LOREM_TOKENS = tuple(w + " " for w in LOREM)
LOREM_DELTAS = {token: TextDelta(token) for token in (*LOREM, *LOREM_TOKENS)}
REASONING = "The fake model thinks the request over before it answers."
YIELD_EVERY = 32  # tokens between cooperative yields when unpaced
ARGUMENT_CHARS_PER_PIECE = 16
SUMMARY_SETTINGS = ("auto", "concise", "detailed")


@dataclass(frozen=True, slots=True)
class FakeConfig:
    mode: str = "lorem"
    text: str = ""
    output_tokens: int = 32
    tokens_per_second: float = 0.0
    first_token_delay_ms: float = 0.0
    fail_after_tokens: int | None = None
    auto_tool_calls: bool = True
    parallel_calls: int = 1
    reasoning: bool = False
    continuation: bool = True


class FakeProvider:
    def __init__(self, config: FakeConfig) -> None:
        self.config = config
        self.supports_continuation = config.continuation

    def __repr__(self) -> str:
        return f"<FakeProvider {self.config}>"

    @classmethod
    def from_options(cls, model_name: str, options: Mapping[str, Any]) -> FakeProvider:
        known = {f.name: f for f in fields(FakeConfig)}
        values: dict[str, Any] = {}
        for key, value in options.items():
            if key not in known:
                raise ConfigError(
                    f"Model {model_name!r}: unknown option {key!r} for the fake provider "
                    f"(known: {', '.join(sorted(known))})"
                )
            values[key] = value
        config = FakeConfig(**values)
        if config.mode not in ("lorem", "text", "echo"):
            raise ConfigError(f"Model {model_name!r}: mode must be lorem, text or echo")
        if config.mode == "text" and not config.text:
            raise ConfigError(f"Model {model_name!r}: mode 'text' needs a non-empty 'text'")
        for name in ("auto_tool_calls", "reasoning", "continuation"):
            if not isinstance(getattr(config, name), bool):
                raise ConfigError(f"Model {model_name!r}: {name} must be true or false")
        calls = config.parallel_calls
        if isinstance(calls, bool) or not isinstance(calls, int) or calls < 1:
            raise ConfigError(f"Model {model_name!r}: parallel_calls must be an integer >= 1")
        return cls(config)

    def tokens(self, request: GenerationRequest) -> list[str]:
        """The words of the mode's text, each with its following space."""
        config = self.config
        if config.mode == "text":
            words = config.text.split(" ")
        elif config.mode == "echo":
            words = _echo_text(request.input_items).split(" ")
        else:
            count = config.output_tokens
            if count <= 0:
                return []
            tokens = [LOREM_TOKENS[i % len(LOREM)] for i in range(count - 1)]
            return [*tokens, LOREM[(count - 1) % len(LOREM)]]
        return [w + " " for w in words[:-1]] + words[-1:]

    def plan(self, request: GenerationRequest) -> list[Delta]:
        """The whole output, one delta per token (before `max_output_tokens`).

        Raises `ProviderError` when a tool choice names a missing function or a schema
        cannot be satisfied."""
        tokens = self.tokens(request)
        words = [w for w in (t.strip() for t in tokens) if w] or list(LOREM)
        deltas: list[Delta] = list(self.reasoning(request))
        calls = self.calls(request)
        for index, tool in enumerate(calls):
            pieces = _split_evenly(_arguments(tool, words), ARGUMENT_CHARS_PER_PIECE)
            deltas.append(ToolCallDelta(index, pieces[0], name=tool.get("name")))
            deltas += [ToolCallDelta(index, piece) for piece in pieces[1:]]
        if not calls:
            pieces = self.text(request, tokens, words)
            deltas += [LOREM_DELTAS.get(piece) or TextDelta(piece) for piece in pieces]
        return deltas

    def reasoning(self, request: GenerationRequest) -> list[ReasoningDelta]:
        settings = request.reasoning or {}
        if not self.config.reasoning or settings.get("effort") == "none":
            return []
        summary = settings.get("summary") or settings.get("generate_summary")
        index = 0 if summary in SUMMARY_SETTINGS else None
        words = REASONING.split(" ")
        return [ReasoningDelta(w + " ", index) for w in words[:-1]] + [
            ReasoningDelta(words[-1], index)
        ]

    def calls(self, request: GenerationRequest) -> list[JSONObject]:
        """The function tools to call, in order (empty: answer in text)."""
        tools = [t for t in request.tools if t.get("type") == "function"]
        choice = request.tool_choice
        if isinstance(choice, dict) and choice.get("type") == "function":
            named = [t for t in tools if t.get("name") == choice.get("name")]
            if not named:
                raise ProviderError(
                    f"tool_choice names the function {choice.get('name')!r}, but no function "
                    "tool of the request has that name."
                )
            return named[:1]
        if isinstance(choice, dict) and choice.get("type") == "allowed_tools":
            allowed = {
                t.get("name") for t in choice.get("tools", []) if t.get("type") == "function"
            }
            tools = [t for t in tools if t.get("name") in allowed]
            choice = choice.get("mode", "auto")
        if not tools or choice not in ("auto", "required"):
            return []
        if choice == "auto" and not (self.config.auto_tool_calls and _user_spoke_last(request)):
            return []
        count = self.config.parallel_calls if request.parallel_tool_calls else 1
        return [tools[i % len(tools)] for i in range(count)]

    def text(self, request: GenerationRequest, tokens: list[str], words: list[str]) -> list[str]:
        """The text answer's tokens: the mode's words, or JSON pieces."""
        text_format = request.text_format or {}
        if text_format.get("type") == "json_schema":
            schema = text_format.get("schema", {})
            what = f"output for the json_schema format {text_format.get('name')!r}"
            return _json_pieces(_dumps(_instance(schema, words, root=schema, what=what)))
        if text_format.get("type") == "json_object":
            return _json_pieces(_dumps({"answer": "".join(tokens)}))
        return tokens

    async def stream(self, request: GenerationRequest) -> AsyncIterator[Delta]:
        config = self.config
        deltas = self.plan(request)
        limit = request.max_output_tokens
        cut = limit is not None and len(deltas) > limit
        if cut:
            deltas = deltas[:limit]
        if request.continuation is not None:
            deltas = _after(deltas, request.continuation)
        loop = asyncio.get_running_loop()
        if config.first_token_delay_ms:
            await asyncio.sleep(config.first_token_delay_ms / 1000)
        start = loop.time()
        for index, delta in enumerate(deltas):
            if config.fail_after_tokens is not None and index >= config.fail_after_tokens:
                raise ProviderError(
                    f"The fake model failed after {index} tokens, as configured "
                    "(fail_after_tokens)."
                )
            if config.tokens_per_second > 0:
                delay = start + index / config.tokens_per_second - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
            elif index % YIELD_EVERY == YIELD_EVERY - 1:
                await asyncio.sleep(0)
            yield delta
        reasoning = sum(isinstance(d, ReasoningDelta) for d in deltas)
        yield Usage(
            input_tokens=_count_words(request),
            output_tokens=len(deltas),
            reasoning_tokens=reasoning,
        )
        yield Finish("length" if cut else "stop")

    async def aclose(self) -> None:
        return None


def _after(deltas: list[Delta], partial: str) -> list[Delta]:
    """The deltas that follow `partial`, the text of the answer so far (continuation:
    the same request gives the same answer, so it goes on where the text stops)."""
    text_at = next((i for i, d in enumerate(deltas) if isinstance(d, TextDelta)), len(deltas))
    position, index = 0, text_at
    while index < len(deltas) and position < len(partial):
        delta = deltas[index]
        if not isinstance(delta, TextDelta) or not partial.startswith(delta.text, position):
            break
        position += len(delta.text)
        index += 1
    if position != len(partial):
        raise ProviderError(
            "The fake model cannot continue this response: its partial text is not a prefix "
            "of the answer it gives to this request."
        )
    return deltas[index:]


def _user_spoke_last(request: GenerationRequest) -> bool:
    if not request.input_items:
        return False
    latest = request.input_items[-1]
    return latest.get("type", "message") == "message" and latest.get("role") == "user"


def _echo_text(items: Sequence[JSONObject]) -> str:
    if items and items[-1].get("type") == "function_call_output":
        return _output_text(items[-1])
    users = [i for i in items if i.get("role") == "user"]
    return message_text(users[-1]) if users else ""


def _output_text(item: JSONObject) -> str:
    output = item.get("output", "")
    if isinstance(output, str):
        return output
    return "".join(p.get("text", "") for p in output if p.get("type") == "input_text")


def _arguments(tool: JSONObject, words: list[str]) -> str:
    """The JSON arguments of a call: an object valid against the tool's parameters."""
    parameters = tool.get("parameters") or {}
    schema = {"allOf": [{"type": "object"}, parameters]}
    what = f"arguments for the function {tool.get('name')!r}"
    return _dumps(_instance(schema, words, root=parameters, what=what))


def _instance(schema: JSON, words: list[str], *, root: JSON, what: str) -> JSON:
    try:
        return build_instance(schema, words=words, root=root)
    except UnsatisfiableSchemaError as exc:
        raise ProviderError(
            f"The fake model cannot write {what}: {exc}. Simplify that part of the schema "
            "or use a real model."
        ) from None


def _dumps(value: JSON) -> str:
    return orjson.dumps(value).decode()


def _json_pieces(text: str) -> list[str]:
    """`text` cut after each `,`, `:` and space."""
    return [piece for piece in re.split(r"(?<=[,: ])", text) if piece]


def _split_evenly(text: str, chars_per_piece: int) -> list[str]:
    """`text` in 3 to 8 nearly equal pieces (one per `chars_per_piece`; at most `len(text)`)."""
    count = min(len(text), max(3, min(8, math.ceil(len(text) / chars_per_piece))))
    bounds = [len(text) * i // count for i in range(count + 1)]
    return [text[start:end] for start, end in pairwise(bounds)]


def _count_words(request: GenerationRequest) -> int:
    texts = [request.instructions or ""]
    for item in request.input_items:
        if item.get("type") == "function_call":
            texts.append(str(item.get("arguments", "")))
        elif item.get("type") == "function_call_output":
            texts.append(_output_text(item))
        else:
            texts.append(message_text(item))
    return sum(len(text.split()) for text in texts)

"""The model-provider seam: what the runner asks of a model, and what it gets back.

A provider turns one `GenerationRequest` into an async stream of deltas. It raises
`tether.errors.ProviderError` for every upstream failure (HTTP error, dropped
connection, malformed stream); no httpx or other library exception escapes it.
The stream ends after a `Finish` delta; a provider must not end it silently.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypeAlias, runtime_checkable

from tether.domain.types import JSONObject


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    """What to generate.

    `input_items` are the normalized Responses input items of the whole context (see
    `tether.domain.items`): messages, `function_call`, `function_call_output` and
    `reasoning` items, in order. `tools` are Responses function tool definitions
    (`{"type": "function", "name", "description", "parameters", "strict"}`);
    `tool_choice` is `"auto"`, `"none"`, `"required"` or
    `{"type": "function", "name": …}`. `text_format` is the `text.format` object when
    it asks for JSON (`json_schema` / `json_object`), else None. `reasoning` is the
    request's `reasoning` object when set. `include` holds the request's `include`
    values. `extra` carries Responses settings a Responses upstream can take as they
    are (`user`, `safety_identifier`, `prompt_cache_key`, `service_tier`, `metadata`).

    `continuation` is set when a runner picks up a response whose worker died inside
    an assistant message: the message's text so far. The provider then yields only
    what comes after it (the deltas of that same message first). Only providers
    whose `supports_continuation` attribute is true get such requests.
    """

    model: str
    input_items: list[JSONObject]
    instructions: str | None = None
    max_output_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    tools: list[JSONObject] = field(default_factory=list)
    tool_choice: str | JSONObject = "auto"
    parallel_tool_calls: bool = True
    max_tool_calls: int | None = None
    text_format: JSONObject | None = None
    reasoning: JSONObject | None = None
    top_logprobs: int | None = None
    include: tuple[str, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)
    continuation: str | None = None

    @property
    def logprobs(self) -> bool:
        """Whether the client asked for the logprobs of output text."""
        return "message.output_text.logprobs" in self.include


@dataclass(frozen=True, slots=True)
class TextDelta:
    """Output text. `logprobs` are OpenAI-shaped entries
    (`{"token", "logprob", "bytes", "top_logprobs": [...]}`) for this text, when asked for."""

    text: str
    logprobs: list[JSONObject] | None = None


@dataclass(frozen=True, slots=True)
class RefusalDelta:
    """The model refused; the text says why (becomes a `refusal` content part)."""

    text: str


@dataclass(frozen=True, slots=True)
class ReasoningDelta:
    """Reasoning. `summary_index` None: raw reasoning text (a `reasoning_text` content
    part); an index: text of that reasoning summary part. `encrypted_content`, when a
    Responses upstream gives it, is kept on the reasoning item (text may then be "")."""

    text: str
    summary_index: int | None = None
    encrypted_content: str | None = None


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    """A piece of a function call. `index` tells the calls of one turn apart; the first
    delta of an index carries the function's `name` (and the upstream's `call_id`, if
    it has one worth keeping; else Tether makes a `call_…` id). `arguments` is the next
    piece of the JSON arguments string."""

    index: int
    arguments: str
    name: str | None = None
    call_id: str | None = None


@dataclass(frozen=True, slots=True)
class Annotation:
    """An annotation (e.g. `url_citation`) of the output text so far."""

    annotation: JSONObject


@dataclass(frozen=True, slots=True)
class OutputItem:
    """A whole output item Tether passes on as it is (a hosted tool call from a
    Responses upstream): emitted as `output_item.added` then `output_item.done`."""

    item: JSONObject


@dataclass(frozen=True, slots=True)
class Started:
    """Generation has begun (a provider with a queue got a slot). Only providers whose
    `reports_start` attribute is true yield it, first; until then the response stays
    `queued`. For the others the runner starts the response at once."""


@dataclass(frozen=True, slots=True)
class EndItem:
    """Ends the open output item. Needed only where two items of the same kind follow
    each other (two messages from a Responses upstream); a change of kind ends the
    item by itself. `incomplete`: the upstream cut the item short (token limit)."""

    incomplete: bool = False


@dataclass(frozen=True, slots=True)
class Usage:
    input_tokens: int
    output_tokens: int
    reasoning_tokens: int = 0
    cached_tokens: int = 0


FinishReason: TypeAlias = Literal["stop", "length", "content_filter"]


@dataclass(frozen=True, slots=True)
class Finish:
    """The last delta. `length` means the token limit cut the output (→ `incomplete`)."""

    reason: FinishReason


Delta: TypeAlias = (
    Started
    | TextDelta
    | RefusalDelta
    | ReasoningDelta
    | ToolCallDelta
    | Annotation
    | OutputItem
    | EndItem
    | Usage
    | Finish
)


class ModelProvider(Protocol):
    """One configured model behind Tether."""

    def stream(self, request: GenerationRequest) -> AsyncIterator[Delta]:
        """Generate; yields content deltas, then optionally `Usage`, then one `Finish`.

        Deltas of one output item come together: a delta of another kind (or a tool
        call of another index) ends the item before it.

        Raises `ProviderError` on any upstream failure, also mid-stream.
        """
        ...

    async def aclose(self) -> None:
        """Release connections; called once at shutdown."""
        ...


@runtime_checkable
class TokenCounter(Protocol):
    """A provider that can count the input tokens of a request with the model's own
    tokenizer (else Tether estimates; see `tether.providers.tokens`)."""

    async def count_tokens(self, request: GenerationRequest) -> int:
        """Raises `ProviderError` when the upstream cannot count."""
        ...

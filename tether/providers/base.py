"""The model-provider seam: what the runner asks of a model, and what it gets back.

A provider turns one `GenerationRequest` into an async stream of deltas. It raises
`tether.errors.ProviderError` for every upstream failure (HTTP error, dropped
connection, malformed stream); no httpx or other library exception escapes it.
The stream ends after a `Finish` delta; a provider must not end it silently.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypeAlias

from tether.domain.types import JSONObject


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    """What to generate. `input_items` are normalized Responses input items (see
    `tether.domain.items`): messages with `role` and a list of content parts."""

    model: str
    input_items: list[JSONObject]
    instructions: str | None = None
    max_output_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TextDelta:
    text: str


@dataclass(frozen=True, slots=True)
class Usage:
    input_tokens: int
    output_tokens: int
    reasoning_tokens: int = 0


FinishReason: TypeAlias = Literal["stop", "length", "content_filter"]


@dataclass(frozen=True, slots=True)
class Finish:
    """The last delta. `length` means the token limit cut the output (→ `incomplete`)."""

    reason: FinishReason


Delta: TypeAlias = TextDelta | Usage | Finish


class ModelProvider(Protocol):
    """One configured model behind Tether."""

    def stream(self, request: GenerationRequest) -> AsyncIterator[Delta]:
        """Generate; yields text deltas, then optionally `Usage`, then one `Finish`.

        Raises `ProviderError` on any upstream failure, also mid-stream.
        """
        ...

    async def aclose(self) -> None:
        """Release connections; called once at shutdown."""
        ...

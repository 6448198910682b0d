"""Counting input tokens: the model's tokenizer when its provider has one, else an
estimate.

The estimate (documented in the README) is what Tether uses for `truncation` and
`POST /v1/responses/input_tokens` when the provider cannot count: about four bytes
of UTF-8 text per token, plus 4 tokens per input item for its framing, plus the
tool definitions and the JSON schema of `text.format` counted the same way as text.
It is meant to be within a few tens of percent of real tokenizers on English text,
not exact.
"""

from __future__ import annotations

import orjson

from tether.domain.types import JSONObject
from tether.providers.base import GenerationRequest, ModelProvider, TokenCounter

BYTES_PER_TOKEN = 4
TOKENS_PER_ITEM = 4


async def count_tokens(provider: ModelProvider, request: GenerationRequest) -> int:
    """Input tokens of `request`: the provider's own count, or the estimate.

    Raises `ProviderError` when the provider can count but its upstream failed."""
    if isinstance(provider, TokenCounter):
        return await provider.count_tokens(request)
    return estimate_tokens(request)


def estimate_tokens(request: GenerationRequest) -> int:
    total = sum(estimate_item(item) for item in request.input_items)
    if request.instructions:
        total += _text_tokens(request.instructions) + TOKENS_PER_ITEM
    if request.tools:
        total += _text_tokens(orjson.dumps(request.tools).decode())
    if request.text_format is not None:
        total += _text_tokens(orjson.dumps(request.text_format).decode())
    return total


def estimate_item(item: JSONObject) -> int:
    """The estimated tokens of one input item: the text it carries, plus framing."""
    return _text_tokens("".join(_texts(item))) + TOKENS_PER_ITEM


def _texts(value: object) -> list[str]:
    """The strings of an item that a model reads (text, arguments, outputs…), not its
    ids or type names."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [text for entry in value for text in _texts(entry)]
    if isinstance(value, dict):
        return [
            text
            for key, entry in value.items()
            if key not in ("id", "type", "status", "call_id", "role")
            for text in _texts(entry)
        ]
    return []


def _text_tokens(text: str) -> int:
    size = len(text.encode())
    return -(-size // BYTES_PER_TOKEN)
